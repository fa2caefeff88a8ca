"""Convolution blocks of the EfficientViT family, and the EfficientViT (attention + MBConv) block.

Each block is a short chain of `ConvLayer`s. The attribute names (`depth_conv`, `point_conv`,
`inverted_conv`, `spatial_conv`, `conv1`, `conv2`, `context_module`, `local_module`) are the
state-dict names of the official checkpoints, so they must not change.

Per-sub-conv arguments (`use_bias`, `norm`, `act_func`) accept a scalar or a tuple; a short tuple
is completed by repeating its last item, so a scalar applies to every sub-conv.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from .layers import ConvLayer, IdentityLayer, ResidualBlock, repeat_last
from .litemla import LiteMLA


def _mid_channels(in_channels: int, expand_ratio: float, mid_channels: Optional[int]) -> int:
    return mid_channels if mid_channels else round(in_channels * expand_ratio)


class DSConv(nn.Module):
    """Depthwise-separable conv: depthwise k x k (carries the stride), then pointwise 1 x 1."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        use_bias=False,
        norm=("bn2d", "bn2d"),
        act_func=("relu6", None),
    ) -> None:
        super().__init__()
        use_bias, norm, act_func = (repeat_last(v, 2) for v in (use_bias, norm, act_func))
        self.depth_conv = ConvLayer(
            in_channels,
            in_channels,
            kernel_size,
            stride,
            groups=in_channels,
            use_bias=use_bias[0],
            norm=norm[0],
            act_func=act_func[0],
        )
        self.point_conv = ConvLayer(
            in_channels, out_channels, 1, use_bias=use_bias[1], norm=norm[1], act_func=act_func[1]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.point_conv(self.depth_conv(x))


class MBConv(nn.Module):
    """Inverted bottleneck: expand 1 x 1, depthwise k x k (carries the stride), project 1 x 1."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        mid_channels: Optional[int] = None,
        expand_ratio: float = 6,
        use_bias=False,
        norm=("bn2d", "bn2d", "bn2d"),
        act_func=("relu6", "relu6", None),
    ) -> None:
        super().__init__()
        use_bias, norm, act_func = (repeat_last(v, 3) for v in (use_bias, norm, act_func))
        mid = _mid_channels(in_channels, expand_ratio, mid_channels)
        self.inverted_conv = ConvLayer(in_channels, mid, 1, use_bias=use_bias[0], norm=norm[0], act_func=act_func[0])
        self.depth_conv = ConvLayer(
            mid, mid, kernel_size, stride, groups=mid, use_bias=use_bias[1], norm=norm[1], act_func=act_func[1]
        )
        self.point_conv = ConvLayer(mid, out_channels, 1, use_bias=use_bias[2], norm=norm[2], act_func=act_func[2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.point_conv(self.depth_conv(self.inverted_conv(x)))


class FusedMBConv(nn.Module):
    """MBConv with the expand and depthwise convs fused into one full k x k conv."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        mid_channels: Optional[int] = None,
        expand_ratio: float = 6,
        groups: int = 1,
        use_bias=False,
        norm=("bn2d", "bn2d"),
        act_func=("relu6", None),
    ) -> None:
        super().__init__()
        use_bias, norm, act_func = (repeat_last(v, 2) for v in (use_bias, norm, act_func))
        mid = _mid_channels(in_channels, expand_ratio, mid_channels)
        self.spatial_conv = ConvLayer(
            in_channels,
            mid,
            kernel_size,
            stride,
            groups=groups,
            use_bias=use_bias[0],
            norm=norm[0],
            act_func=act_func[0],
        )
        self.point_conv = ConvLayer(mid, out_channels, 1, use_bias=use_bias[1], norm=norm[1], act_func=act_func[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.point_conv(self.spatial_conv(x))


class ResBlock(nn.Module):
    """Two k x k convs (the first carries the stride); the residual add is the caller's job."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        mid_channels: Optional[int] = None,
        expand_ratio: float = 1,
        use_bias=False,
        norm=("bn2d", "bn2d"),
        act_func=("relu6", None),
    ) -> None:
        super().__init__()
        use_bias, norm, act_func = (repeat_last(v, 2) for v in (use_bias, norm, act_func))
        mid = _mid_channels(in_channels, expand_ratio, mid_channels)
        self.conv1 = ConvLayer(
            in_channels, mid, kernel_size, stride, use_bias=use_bias[0], norm=norm[0], act_func=act_func[0]
        )
        # the second conv never strides: the block downsamples once, in conv1
        self.conv2 = ConvLayer(
            mid, out_channels, kernel_size, 1, use_bias=use_bias[1], norm=norm[1], act_func=act_func[1]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x))


class EfficientViTBlock(nn.Module):
    """x + LiteMLA(x) (global context), then x + MBConv(x) (local mixing); channels unchanged."""

    def __init__(
        self,
        in_channels: int,
        heads_ratio: float = 1.0,
        dim: int = 32,
        expand_ratio: float = 4,
        scales: Sequence[int] = (5,),
        norm: str = "bn2d",
        act_func: str = "hswish",
    ) -> None:
        super().__init__()
        attention = LiteMLA(
            in_channels, in_channels, heads_ratio=heads_ratio, dim=dim, norm=(None, norm), scales=tuple(scales)
        )
        self.context_module = ResidualBlock(attention, IdentityLayer())
        # biases instead of BN on the first two convs: the "fewer norm" MBConv of the checkpoints
        local = MBConv(
            in_channels,
            in_channels,
            3,
            1,
            expand_ratio=expand_ratio,
            use_bias=(True, True, False),
            norm=(None, None, norm),
            act_func=(act_func, act_func, None),
        )
        self.local_module = ResidualBlock(local, IdentityLayer())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.local_module(self.context_module(x))
