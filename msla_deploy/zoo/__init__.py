"""The EfficientViT model zoo: upstream's 11 segmentation models and 21 classifiers, rebuilt from the spec.

    names() -> list[str]                      public names, upstream's registry order
    get_spec(name) -> ZooSpec                 classes, BN eps, checkpoint file, eval resolution
    build(name) -> nn.Module                  random weights, train mode; EfficientViTSeg or EfficientViTCls
    with_model_defaults(options)              a zoo model's task and resolution filled in
    load_checkpoint(model, path) -> sha256    weights-only, strict, one-line mismatch errors
    find_checkpoint(name, models_dir)         models_dir / <official file name>, if present
    count_params(model), count_macs(name, (H, W))

`names`, `get_spec` and `find_checkpoint` need no torch (listing models must work on a runtime-only install); the
rest is imported on first use.
"""

from __future__ import annotations

from .variants import ZooSpec, find_checkpoint, get_spec, names, with_model_defaults

# name -> submodule that defines it; loaded lazily because those submodules import torch
_TORCH_SIDE = {
    "build": "model",
    "EfficientViTSeg": "model",
    "load_checkpoint": "checkpoints",
    "count_params": "complexity",
    "count_macs": "complexity",
}

__all__ = ["ZooSpec", "find_checkpoint", "get_spec", "names", "with_model_defaults", *_TORCH_SIDE]


def __getattr__(attr: str):
    module_name = _TORCH_SIDE.get(attr)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module_name}", __name__), attr)
    globals()[attr] = value  # later lookups skip this hook
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
