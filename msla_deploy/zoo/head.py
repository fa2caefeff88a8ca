"""The segmentation head: fuse stride-32/16/8 features at stride 8, refine, classify.

It is a DAGBlock reading `stage4`, `stage3`, `stage2` from the backbone's feature dict and
writing the logits under `segout`. Index layout = state-dict names (docs/facts/upstream.md#seg-head).
"""

from __future__ import annotations

from typing import Optional, Sequence

from torch import nn

from ..nn.blocks import FusedMBConv, MBConv
from ..nn.layers import ConvLayer, DAGBlock, IdentityLayer, OpSequential, ResidualBlock, UpSampleLayer
from .variants import HeadDims

NORM = "bn2d"
HEAD_STRIDE = 8
#: features the head reads, deepest first, with their strides
INPUT_FEATURES = (("stage4", 32), ("stage3", 16), ("stage2", 8))
OUTPUT_KEY = "segout"


def _input_op(in_channels: int, width: int, stride: int) -> nn.Module:
    """1x1 conv to the head width, then bicubic upsampling to the head stride if needed."""
    reduce = ConvLayer(in_channels, width, 1, use_bias=False, norm=NORM, act_func=None)
    factor = stride // HEAD_STRIDE
    if factor == 1:
        # a bare ConvLayer (no OpSequential wrapper): that is the checkpoints' key layout
        return reduce
    return OpSequential([reduce, UpSampleLayer(mode="bicubic", factor=factor, align_corners=False)])


def _middle_block(dims: HeadDims, act: str) -> nn.Module:
    w = dims.width
    if dims.middle_op == "mbconv":
        return MBConv(w, w, 3, 1, expand_ratio=dims.expand_ratio, use_bias=False, norm=NORM, act_func=(act, act, None))
    if dims.middle_op == "fmbconv":
        return FusedMBConv(w, w, 3, 1, expand_ratio=dims.expand_ratio, use_bias=False, norm=NORM, act_func=(act, None))
    raise ValueError(f"unknown middle_op {dims.middle_op!r}")


def _classifier(dims: HeadDims, num_classes: int, act: str, dropout: float) -> nn.Module:
    expand: Optional[nn.Module] = None
    width = dims.width
    if dims.final_expand is not None:
        width = round(dims.width * dims.final_expand)
        expand = ConvLayer(dims.width, width, 1, use_bias=False, norm=NORM, act_func=act)
    # OpSequential drops the None, so without expand the classifier is op_list.0
    logits = ConvLayer(width, num_classes, 1, use_bias=True, dropout=dropout, norm=None, act_func=None)
    return OpSequential([expand, logits])


class SegHead(DAGBlock):
    def __init__(
        self,
        in_channels: Sequence[int],
        dims: HeadDims,
        num_classes: int,
        act: str,
        dropout: float = 0.0,
    ) -> None:
        """`in_channels`: widths of `stage4`, `stage3`, `stage2`, in that order."""
        inputs = {key: _input_op(c, dims.width, stride) for (key, stride), c in zip(INPUT_FEATURES, in_channels)}
        middle = OpSequential([ResidualBlock(_middle_block(dims, act), IdentityLayer()) for _ in range(dims.depth)])
        super().__init__(
            inputs,
            merge="add",
            post_input=None,
            middle=middle,
            outputs={OUTPUT_KEY: _classifier(dims, num_classes, act, dropout)},
        )
