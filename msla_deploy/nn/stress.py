"""Stress weights: LiteMLA activations at trained-model magnitudes, and heads that never attend.

Random initialisation gives small activations, so an fp16 export that would overflow on real
checkpoints passes its parity check on random weights. These weights make the hazards real:
keys are scaled up (token sums of k and v*k beyond fp16's 65504 at 1024x2048), values moderately,
and in every LiteMLA the queries of head 0 are zero (ReLU(q) = 0 everywhere, as in trained,
ReLU-sparse models), so 0/0 appears wherever eps is lost.
"""

from __future__ import annotations

from typing import List

import torch
from torch import nn

from .litemla import LiteMLA

# chosen on b1 at 1024x2048 with seeded random weights: the largest token sums of k and of v*k
# reach ~1.5e5 (fp16 max: 65504) while the attention output stays O(10)
QUERY_SCALE = 4.0
KEY_SCALE = 64.0
VALUE_SCALE = 8.0


def _qkv_conv(module: LiteMLA) -> nn.Conv2d:
    convs = [m for m in module.qkv.modules() if isinstance(m, nn.Conv2d)]
    if len(convs) != 1:
        raise ValueError("expected exactly one Conv2d in LiteMLA.qkv")
    return convs[0]


@torch.no_grad()
def apply_stress_weights(model: nn.Module) -> List[str]:
    """Rescale every LiteMLA's qkv conv in place; returns the names of the modules changed."""
    changed = []
    for name, module in model.named_modules():
        if not isinstance(module, LiteMLA):
            continue
        conv = _qkv_conv(module)
        d = module.dim
        for head in range(module.heads):
            base = 3 * d * head  # head-major: q, k, v of one head are contiguous
            conv.weight[base : base + d] *= 0.0 if head == 0 else QUERY_SCALE
            conv.weight[base + d : base + 2 * d] *= KEY_SCALE
            conv.weight[base + 2 * d : base + 3 * d] *= VALUE_SCALE
            if conv.bias is not None:
                conv.bias[base : base + d] = 0.0
        changed.append(name)
    return changed
