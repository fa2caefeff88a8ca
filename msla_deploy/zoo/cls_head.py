"""The classifier of the EfficientViT classification models: backbone + ClsHead -> [N, classes] logits.

The head reads the backbone's `stage_final` (stride 32): 1x1 conv + BN + activation to a wide
feature, global average pool, linear (no bias) + LayerNorm + activation, linear to the classes.
Module indices are upstream's state-dict names (`head.op_list.{0,2,3}`; the pool at index 1 has no
weights), so the official checkpoints load strictly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..nn.layers import ConvLayer, OpSequential, build_act
from .variants import ClsHeadDims

FEATURE = "stage_final"


class GlobalAvgPool(nn.Module):
    """Mean over the spatial dims, as an average pool over the whole (static) feature map.

    Upstream's AdaptiveAvgPool2d(1) computes the same; exported by the dynamo exporter it becomes an
    opset-18 ReduceMean whose axes are an input, which ONNX's version converter cannot bring down to
    opset 17 (TensorRT 8.5/8.6): a plain AveragePool exports the same at every opset, with both
    exporters, and every TensorRT runs it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, kernel_size=(int(x.shape[-2]), int(x.shape[-1])))


class LinearLayer(nn.Module):
    """Flatten to [N, features] -> Linear -> optional LayerNorm -> optional activation."""

    def __init__(self, in_features: int, out_features: int, use_bias: bool, norm: bool, act: str = None) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, use_bias)
        self.norm = nn.LayerNorm(out_features) if norm else None
        self.act = build_act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.linear(torch.flatten(x, start_dim=1))
        if self.norm is not None:
            x = self.norm(x)
        return self.act(x) if self.act is not None else x


class ClsHead(OpSequential):
    def __init__(self, in_channels: int, dims: ClsHeadDims, num_classes: int, act: str) -> None:
        wide, hidden = dims.widths
        super().__init__(
            [
                ConvLayer(in_channels, wide, 1, norm="bn2d", act_func=act),
                GlobalAvgPool(),
                LinearLayer(wide, hidden, use_bias=False, norm=True, act=act),
                LinearLayer(hidden, num_classes, use_bias=True, norm=False),
            ]
        )


class EfficientViTCls(nn.Module):
    """Image [B, 3, H, W] -> logits [B, classes] (H, W multiples of 32)."""

    def __init__(self, backbone: nn.Module, head: ClsHead) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x)[FEATURE])
