"""Parameter and multiply-accumulate counts of the zoo models.

MACs are counted on a `meta`-device model (no weights are allocated, no arithmetic is done), so
even L2 at 1024x2048 costs a fraction of a second. Counted: every Conv2d (including LiteMLA's
aggregation convs), every Linear (the classifier head) and LiteMLA's attention matmuls. Ignored:
BatchNorm, LayerNorm, activations, pooling, residual adds, the bicubic upsampling and the
attention division, which is the usual convention of published MAC figures.

Against upstream's published Cityscapes figures at 1024x2048 (docs/facts/upstream.md#reference-figures) this gives
B0 4.39G (published 4.4G), B1 25.09G (25G), B2 73.62G (74G), B3 179.18G (179G), L1 282.47G
(282G) and L2 396.11G (396G): all within 0.6%, about the rounding of the published figures,
which confirms the counting convention. tests/zoo/test_zoo.py holds them within 10%. The
classifiers' counts (Linear layers included) round to every figure of upstream's ImageNet table
(docs/facts/upstream.md#classification), which tests/zoo/test_cls_zoo.py checks digit for digit.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import nn

from ..errors import BadInput
from ..nn.litemla import AttentionPlan, LiteMLA
from .model import build
from .variants import get_spec

#: every stride-2 stage halves the sides and the head upsamples exactly: sides must divide by 32
SIDE_MULTIPLE = 32


def count_params(model: nn.Module) -> int:
    """Number of parameter elements (buffers such as BN running stats are not parameters)."""
    return sum(p.numel() for p in model.parameters())


def _conv_macs(conv: nn.Conv2d, output: torch.Tensor) -> int:
    k_h, k_w = conv.kernel_size
    return output.numel() * (conv.in_channels // conv.groups) * k_h * k_w


def attention_macs(plan: AttentionPlan) -> int:
    """Matmul MACs of one LiteMLA call (the q/k/v convs are counted as convs)."""
    d, n = plan.dim, plan.tokens
    if plan.linear:
        # per group: v k^T (d x d over N tokens), (v k^T) q, and the normaliser (sum_m k_m) . q_n
        per_group = d * d * n + d * d * n + d * n
    else:
        # per group: k^T q (N x N over d), then v A
        per_group = n * n * d + d * n * n
    return plan.batch * plan.groups * per_group


def _check_resolution(height: int, width: int) -> None:
    if height <= 0 or width <= 0 or height % SIDE_MULTIPLE or width % SIDE_MULTIPLE:
        raise BadInput(
            f"resolution {height}x{width} is not usable: both sides must be positive multiples of {SIDE_MULTIPLE}",
            f"round the sides to a multiple of {SIDE_MULTIPLE}",
        )


def count_model_macs(model: nn.Module, resolution: Tuple[int, int]) -> int:
    """MACs of one batch-1 forward of `model` (best built on the meta device) at (H, W)."""
    height, width = resolution
    _check_resolution(height, width)
    device = next(model.parameters()).device
    total = 0

    def on_conv(module: nn.Module, args, output: torch.Tensor) -> None:
        nonlocal total
        total += _conv_macs(module, output)

    def on_linear(module: nn.Linear, args, output: torch.Tensor) -> None:
        nonlocal total
        total += output.numel() * module.in_features

    def on_attention(module: LiteMLA, args) -> None:
        nonlocal total
        total += attention_macs(module.plan_for(tuple(args[0].shape)))

    hooks = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            hooks.append(module.register_forward_hook(on_conv))
        elif isinstance(module, nn.Linear):
            hooks.append(module.register_forward_hook(on_linear))
        elif isinstance(module, LiteMLA):
            hooks.append(module.register_forward_pre_hook(on_attention))
    try:
        with torch.no_grad():
            model(torch.empty(1, 3, height, width, device=device))
    finally:
        for hook in hooks:
            hook.remove()
    return int(total)


def count_macs(name: str, resolution: Optional[Tuple[int, int]] = None) -> int:
    """MACs of one batch-1 forward of zoo model `name` at (H, W) (default: its evaluation size)."""
    resolution = tuple(resolution) if resolution is not None else get_spec(name).default_resolution
    _check_resolution(*resolution)  # before building anything
    with torch.device("meta"):
        model = build(name)
    return count_model_macs(model, resolution)
