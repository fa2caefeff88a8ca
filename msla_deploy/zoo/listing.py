"""One row per zoo model for `msla-deploy models`: task, size, cost, and whether its checkpoint is present.

Torch-free and instant: the sizes are data of each model (variants.SIZES and CLS_SIZES, recounted
on the built models by tests/zoo/test_zoo.py and test_cls_zoo.py), not counted by building 32
models at every listing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from .variants import checkpoint_pattern, find_checkpoint, get_spec, names


def zoo_rows(models_dir: Union[str, Path], task: Optional[str] = None) -> List[Dict[str, Any]]:
    """JSON-able rows, in registry order; only `task`'s models when given."""
    rows = []
    for name in names():
        spec = get_spec(name)
        if task is not None and spec.task != task:
            continue
        checkpoint = find_checkpoint(name, models_dir)
        rows.append(
            {
                "name": name,
                "task": spec.task,
                "variant": spec.variant,
                "dataset": spec.dataset,
                "num_classes": spec.num_classes,
                "params": spec.params,
                "gmacs": spec.macs / 1e9,
                "resolution": list(spec.default_resolution),
                "checkpoint_file": spec.checkpoint_file,
                "present": checkpoint is not None,
                "checkpoint_path": str(checkpoint) if checkpoint is not None else None,
            }
        )
    return rows


def checkpoint_patterns(task: Optional[str] = None) -> List[str]:
    """The official file-name patterns of the tasks listed, in registry order."""
    tasks = dict.fromkeys(get_spec(name).task for name in names())
    return [checkpoint_pattern(t) for t in tasks if task in (None, t)]
