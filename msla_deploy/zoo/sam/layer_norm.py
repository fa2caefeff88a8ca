"""LayerNorm over the channels of an NCHW tensor: the norm that ends EfficientViT-SAM's image encoder
and sits inside SAM's mask-input downscaler and mask upscaler.

The same arithmetic as upstream's two hand-written versions (EfficientViT's and segment-anything's,
identical up to operand order): mean over channels, centred values, mean of their squares, divide
by sqrt(that + eps), then the per-channel affine. State-dict names `weight` and `bias`.

Export-friendly on purpose: plain elementwise ops and two ReduceSums (times 1/C), no autocast, no dtype branch
at run time. `island_dtype` is the one precision knob: None computes in the input's dtype (the
fp32 graph gets no Cast at all); torch.float32 computes the statistics and the normalisation in
fp32 whatever the activations are, entered and left through explicit casts. That matters in fp16:
the squares of centred values above 256 overflow fp16's 65504, and eps 1e-6 is subnormal there
(docs/facts/upstream.md#sam).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

#: upstream's eps for every EfficientViT-SAM norm (segment-anything's default, and the zoo's setting)
DEFAULT_EPS = 1e-6


class LayerNorm2d(nn.Module):
    def __init__(self, channels: int, eps: float = DEFAULT_EPS) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps
        self.channels = channels
        #: None: compute in the input's dtype; a dtype: compute in that one and cast back
        self.island_dtype: Optional[torch.dtype] = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        if self.island_dtype is not None and dtype != self.island_dtype:
            x = x.to(self.island_dtype)
        # channel means as sums times 1/C: ReduceSum keeps its opset-13 form up to opset 17, while
        # ReduceMean's changed at 18, and onnx's 18 -> 17 converter (which the dynamo exporter runs)
        # fails on it
        inverse = 1.0 / self.channels  # a Python number: no shape read in the graph
        centred = x - x.sum(dim=1, keepdim=True) * inverse
        variance = (centred * centred).sum(dim=1, keepdim=True) * inverse
        out = centred / torch.sqrt(variance + self.eps)
        weight, bias = self.weight.to(out.dtype), self.bias.to(out.dtype)
        out = out * weight.view(1, -1, 1, 1) + bias.view(1, -1, 1, 1)
        return out if out.dtype == dtype else out.to(dtype)

    def extra_repr(self) -> str:
        island = "" if self.island_dtype is None else f", island_dtype={self.island_dtype}"
        return f"{self.weight.shape[0]}, eps={self.eps}{island}"
