"""Module outputs recorded with forward hooks: the PyTorch side of probes (export records which
tensors to keep; localize compares them with the ONNX's)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, List, Sequence, Tuple

import torch
from torch import nn


@contextmanager
def capture(model: nn.Module, names: Sequence[str]) -> Iterator[List[Tuple[str, torch.Tensor]]]:
    """Record (name, output) of the named modules in call order; a tensor seen before, or a second
    call of the same module, is skipped: one ONNX tensor carries one probe name and vice versa."""
    modules = dict(model.named_modules())
    captured: List[Tuple[str, torch.Tensor]] = []

    def hook(name):
        def record(module, args, output):
            # a module called twice (shared weights) keeps its first output: one name, one tensor
            seen = any(output is t or name == n for n, t in captured)
            if isinstance(output, torch.Tensor) and not seen:
                captured.append((name, output))

        return record

    handles = [modules[name].register_forward_hook(hook(name)) for name in names]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()
