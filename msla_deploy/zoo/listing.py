"""One row per zoo model for `msla-deploy models`: size, cost, and whether its checkpoint is present.

Torch-free and instant: the sizes are data of each variant (variants.SIZES, recounted on the built
models by tests/zoo/test_zoo.py), not counted by building eleven models at every listing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Union

from .variants import find_checkpoint, get_spec, names


def zoo_rows(models_dir: Union[str, Path]) -> List[Dict[str, Any]]:
    """JSON-able rows, in registry order."""
    rows = []
    for name in names():
        spec = get_spec(name)
        checkpoint = find_checkpoint(name, models_dir)
        rows.append(
            {
                "name": name,
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
