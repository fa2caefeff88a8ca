"""The two EfficientViT backbones of the segmentation models (B series and L series).

Both return a dict of features: `input`, `stage0` ... `stage4` at strides 2 ... 32, and
`stage_final` (= `stage4`), which is what the seg head reads. The L backbone takes its per-stage
layout as data (`LargeLayout`), which is how EfficientViT-SAM-XL's six-stage variant (`stage5` at
stride 64) is built from it.

Module indices are state-dict names, so the stage layout below mirrors the official checkpoints
exactly, including two quirks: the B backbone's `stages.i` produces feature `stage{i+1}` (the
stem produces `stage0`), and depth counts the downsampling block in the conv stages but not in
the attention stages (B) -- see docs/facts/upstream.md#backbones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

from ..nn.blocks import DSConv, EfficientViTBlock, FusedMBConv, MBConv, ResBlock
from ..nn.layers import ConvLayer, IdentityLayer, OpSequential, ResidualBlock
from .variants import BackboneDims

NORM = "bn2d"


def _residual(block: nn.Module, stride: int, in_channels: int, out_channels: int) -> ResidualBlock:
    # a shape-changing block cannot have an identity shortcut
    keeps_shape = stride == 1 and in_channels == out_channels
    return ResidualBlock(block, IdentityLayer() if keeps_shape else None)


def _mbconv(in_c: int, out_c: int, stride: int, expand_ratio: float, act: str, fewer_norm: bool) -> MBConv:
    if fewer_norm:
        # biases replace BN on the expand and depthwise convs (stride-16/32 stages)
        return MBConv(
            in_c,
            out_c,
            3,
            stride,
            expand_ratio=expand_ratio,
            use_bias=(True, True, False),
            norm=(None, None, NORM),
            act_func=(act, act, None),
        )
    return MBConv(
        in_c, out_c, 3, stride, expand_ratio=expand_ratio, use_bias=False, norm=NORM, act_func=(act, act, None)
    )


def _fused_mbconv(in_c: int, out_c: int, stride: int, expand_ratio: float, act: str) -> FusedMBConv:
    return FusedMBConv(
        in_c, out_c, 3, stride, expand_ratio=expand_ratio, use_bias=False, norm=NORM, act_func=(act, None)
    )


def _features(x: torch.Tensor, stages: List[nn.Module]) -> Dict[str, torch.Tensor]:
    out = {"input": x}
    for i, stage in enumerate(stages):
        x = out[f"stage{i}"] = stage(x)
    out["stage_final"] = x
    return out


class EfficientViTBackbone(nn.Module):
    """B series: conv stem + DSConv, two MBConv stages, two LiteMLA stages."""

    EXPAND_RATIO = 4

    def __init__(self, dims: BackboneDims, act: str = "hswish", in_channels: int = 3) -> None:
        super().__init__()
        w, d = dims.widths, dims.depths
        stem: List[Optional[nn.Module]] = [ConvLayer(in_channels, w[0], 3, 2, norm=NORM, act_func=act)]
        stem += [
            ResidualBlock(DSConv(w[0], w[0], 3, 1, use_bias=False, norm=NORM, act_func=(act, None)), IdentityLayer())
            for _ in range(d[0])
        ]
        self.input_stem = OpSequential(stem)

        stages = []
        for i in (1, 2):  # d[i] counts the downsampling MBConv
            ops = []
            for j in range(d[i]):
                in_c, stride = (w[i - 1], 2) if j == 0 else (w[i], 1)
                block = _mbconv(in_c, w[i], stride, self.EXPAND_RATIO, act, fewer_norm=False)
                ops.append(_residual(block, stride, in_c, w[i]))
            stages.append(OpSequential(ops))
        for i in (3, 4):  # d[i] counts only the attention blocks
            down = _mbconv(w[i - 1], w[i], 2, self.EXPAND_RATIO, act, fewer_norm=True)
            ops = [_residual(down, 2, w[i - 1], w[i])]
            ops += [
                EfficientViTBlock(w[i], dim=dims.attention_dim, expand_ratio=self.EXPAND_RATIO, norm=NORM, act_func=act)
                for _ in range(d[i])
            ]
            stages.append(OpSequential(ops))
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        return _features(x, [self.input_stem, *self.stages])


@dataclass(frozen=True)
class LargeLayout:
    """Per stage of an L-type backbone: block type, expand ratio of the repeated blocks, and whether
    its MBConvs are "fewer norm" (biases instead of BN on the first two convs).

    Block types: "res" (ResBlock, stage 0 only), "fmb" (FusedMBConv), "mb" (MBConv), "att"
    (EfficientViTBlocks with LiteMLA scales (5,)) and "att@3" (scales (3,), EfficientViT-SAM-XL).
    """

    blocks: Tuple[str, ...]
    expand_ratios: Tuple[float, ...]
    fewer_norm: Tuple[bool, ...]

    def attention_scales(self, i: int) -> Tuple[int, ...]:
        return (3,) if self.blocks[i] == "att@3" else (5,)


#: the L series of the segmentation models and classifiers (and EfficientViT-SAM-L's backbone)
L_LAYOUT = LargeLayout(
    blocks=("res", "fmb", "fmb", "mb", "att"),
    expand_ratios=(1, 4, 4, 4, 6),
    fewer_norm=(False, False, False, True, True),
)


class EfficientViTLargeBackbone(nn.Module):
    """L series: a ResBlock stem stage, then one stage per further width; by default (L_LAYOUT) two
    FusedMBConv stages, one MBConv stage and one LiteMLA stage. Stage i produces `stage{i}`."""

    # the downsampling block of a stage expands this much more than the stage's repeated blocks
    DOWNSAMPLE_EXPAND = 4

    def __init__(self, dims: BackboneDims, act: str = "gelu", in_channels: int = 3, layout: LargeLayout = L_LAYOUT):
        super().__init__()
        w, d = dims.widths, dims.depths
        if not len(w) == len(d) == len(layout.blocks) == len(layout.expand_ratios) == len(layout.fewer_norm):
            raise ValueError(f"{len(w)} widths, {len(d)} depths and a layout of {len(layout.blocks)} stages")
        self.layout = layout
        stem: List[nn.Module] = [ConvLayer(in_channels, w[0], 3, 2, norm=NORM, act_func=act)]
        stem += [
            ResidualBlock(
                ResBlock(
                    w[0],
                    w[0],
                    3,
                    1,
                    expand_ratio=layout.expand_ratios[0],
                    use_bias=False,
                    norm=NORM,
                    act_func=(act, None),
                ),
                IdentityLayer(),
            )
            for _ in range(d[0])
        ]
        stages = [OpSequential(stem)]
        for i in range(1, len(w)):
            ops = [ResidualBlock(self._downsample(i, w[i - 1], w[i], act), None)]
            ops += [self._block(i, w[i], act, dims.attention_dim) for _ in range(d[i])]
            stages.append(OpSequential(ops))
        self.stages = nn.ModuleList(stages)

    def _downsample(self, i: int, in_c: int, out_c: int, act: str) -> nn.Module:
        block, fewer_norm = self.layout.blocks[i], self.layout.fewer_norm[i]
        expand = self.layout.expand_ratios[i] * self.DOWNSAMPLE_EXPAND
        if block == "fmb":
            if fewer_norm:
                raise ValueError("a fewer-norm FusedMBConv stage is not part of any zoo model")
            return _fused_mbconv(in_c, out_c, 2, expand, act)
        # "mb" stages and the attention stages downsample with an MBConv
        return _mbconv(in_c, out_c, 2, expand, act, fewer_norm=fewer_norm)

    def _block(self, i: int, channels: int, act: str, attention_dim: int) -> nn.Module:
        """One shape-keeping block of stage i, residual included."""
        block, expand = self.layout.blocks[i], self.layout.expand_ratios[i]
        if block.startswith("att"):
            return EfficientViTBlock(
                channels,
                dim=attention_dim,
                expand_ratio=expand,
                scales=self.layout.attention_scales(i),
                norm=NORM,
                act_func=act,
            )
        if block == "fmb":
            local = _fused_mbconv(channels, channels, 1, expand, act)
        elif block == "mb":
            local = _mbconv(channels, channels, 1, expand, act, fewer_norm=self.layout.fewer_norm[i])
        else:
            raise ValueError(f"stage {i}: unknown block type {block!r}")
        return ResidualBlock(local, IdentityLayer())

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        return _features(x, list(self.stages))


def build_backbone(dims: BackboneDims, act: str) -> nn.Module:
    if dims.family == "b":
        return EfficientViTBackbone(dims, act)
    if dims.family == "l":
        return EfficientViTLargeBackbone(dims, act)
    raise ValueError(f"unknown backbone family {dims.family!r}")
