"""One row per zoo model for `msla-deploy models`: size, cost, and whether its checkpoint is present."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Union

import torch

from .checkpoints import find_checkpoint
from .complexity import count_model_macs, count_params
from .model import build
from .variants import get_spec, names


def zoo_rows(models_dir: Union[str, Path]) -> List[Dict[str, Any]]:
    """JSON-able rows, in registry order; sizes come from weightless (meta-device) models."""
    rows = []
    for name in names():
        spec = get_spec(name)
        with torch.device("meta"):
            model = build(name)
        checkpoint = find_checkpoint(name, models_dir)
        rows.append({
            "name": name,
            "variant": spec.variant,
            "dataset": spec.dataset,
            "num_classes": spec.num_classes,
            "params": count_params(model),
            "gmacs": count_model_macs(model, spec.default_resolution) / 1e9,
            "resolution": list(spec.default_resolution),
            "checkpoint_file": spec.checkpoint_file,
            "present": checkpoint is not None,
            "checkpoint_path": str(checkpoint) if checkpoint is not None else None,
        })
    return rows
