"""EfficientViT-SAM's architecture as data: the image encoder of each variant, and the prompt encoder
and mask decoder every variant shares (segment-anything's, in its 1024-pixel frame).

The numbers are upstream's (`efficientvit/models/efficientvit/sam.py`, docs/facts/upstream.md#sam);
tests/data/upstream/sam/state_dict_keys/ pins them down key for key. The public facts of each model
(name, eps, checkpoint file, resolution, sizes) are variants.SAM_SPECS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

from ...artifact.sam_io import LOW_RES_SIDE, MASK_THRESHOLD, PIXEL_MEAN, PIXEL_STD, PROMPT_FRAME  # noqa: F401
from ..backbone import LargeLayout
from ..variants import BACKBONES, SAM_SPECS, SAM_STANDIN, SAM_STANDIN_SPECS, BackboneDims

# --- what every variant shares ---------------------------------------------------------------

#: channels of the image embeddings and of every prompt token
EMBED_DIM = 256
#: (H, W) of the image embeddings, whatever the encoder's input size (the neck resizes to it)
EMBEDDING_SIZE = (64, 64)
#: side of the mask_input the prompt encoder takes, and of the low-res masks the decoder gives
LOW_RES_MASK_SIDE = LOW_RES_SIDE
assert LOW_RES_MASK_SIDE == 4 * EMBEDDING_SIZE[0]
#: hidden channels of the mask-input downscaler
MASK_IN_CHANS = 16
#: multimask outputs; the decoder has one more mask token (the single-mask output)
NUM_MULTIMASK_OUTPUTS = 3
#: the two-way transformer: depth, heads, MLP width; the IoU head: depth and width
TRANSFORMER_DEPTH, TRANSFORMER_HEADS, TRANSFORMER_MLP_DIM = 2, 8, 2048
IOU_HEAD_DEPTH, IOU_HEAD_HIDDEN_DIM = 3, 256
#: segment-anything's: the attention of tokens and image narrows the width by this
ATTENTION_DOWNSAMPLE = 2


@dataclass(frozen=True)
class SamTransformerDims:
    """The mask decoder's two-way transformer; everything else of the decoder is fixed by EMBED_DIM."""

    depth: int
    heads: int
    mlp_dim: int
    attention_downsample: int


#: segment-anything's, in every upstream variant
SAM_TRANSFORMER = SamTransformerDims(TRANSFORMER_DEPTH, TRANSFORMER_HEADS, TRANSFORMER_MLP_DIM, ATTENTION_DOWNSAMPLE)

# --- the image encoders ------------------------------------------------------------------------


@dataclass(frozen=True)
class SamNeckDims:
    """The neck: a 1x1 conv + BN per input feature (deepest first), each resized to the embedding
    size (bicubic) and summed; `depth` residual FusedMBConvs; a 1x1 conv with bias to EMBED_DIM."""

    features: Tuple[Tuple[str, int], ...]  # (feature key, channels)
    width: int
    depth: int
    expand_ratio: float


@dataclass(frozen=True)
class SamEncoderDims:
    backbone: BackboneDims
    layout: Optional[LargeLayout]  # None: the L series' own (backbone.L_LAYOUT)
    neck: SamNeckDims


#: EfficientViT-SAM-XL's six-stage backbone: a stem without blocks, three FusedMBConv stages, two
#: LiteMLA stages with 3x3 aggregation (at strides 32 and 64)
XL_LAYOUT = LargeLayout(
    blocks=("res", "fmb", "fmb", "fmb", "att@3", "att@3"),
    expand_ratios=(1, 4, 4, 4, 4, 6),
    fewer_norm=(False, False, False, False, True, True),
)

_L_FEATURES = (("stage4", 512), ("stage3", 256), ("stage2", 128))
_XL_FEATURES = (("stage5", 1024), ("stage4", 512), ("stage3", 256))
_XL_WIDTHS = (32, 64, 128, 256, 512, 1024)

ENCODERS: Dict[str, SamEncoderDims] = {
    # upstream's backbone_l0 has no classifier or segmentation model: it exists for SAM only
    "efficientvit-sam-l0": SamEncoderDims(
        BackboneDims("l", widths=(32, 64, 128, 256, 512), depths=(1, 1, 1, 4, 4), attention_dim=32),
        None,
        SamNeckDims(_L_FEATURES, width=256, depth=4, expand_ratio=1),
    ),
    "efficientvit-sam-l1": SamEncoderDims(BACKBONES["l1"], None, SamNeckDims(_L_FEATURES, 256, 8, 1)),
    "efficientvit-sam-l2": SamEncoderDims(BACKBONES["l2"], None, SamNeckDims(_L_FEATURES, 256, 12, 1)),
    "efficientvit-sam-xl0": SamEncoderDims(
        BackboneDims("l", widths=_XL_WIDTHS, depths=(0, 1, 1, 2, 3, 3), attention_dim=32),
        XL_LAYOUT,
        SamNeckDims(_XL_FEATURES, 256, 6, 4),
    ),
    "efficientvit-sam-xl1": SamEncoderDims(
        BackboneDims("l", widths=_XL_WIDTHS, depths=(1, 2, 2, 4, 6, 6), attention_dim=32),
        XL_LAYOUT,
        SamNeckDims(_XL_FEATURES, 256, 12, 4),
    ),
    # the project's stand-in (variants.SAM_STANDIN): L0's layout, half its widths, about half its depth
    SAM_STANDIN: SamEncoderDims(
        BackboneDims("l", widths=(16, 32, 64, 128, 256), depths=(1, 1, 1, 2, 2), attention_dim=16),
        None,
        SamNeckDims((("stage4", 256), ("stage3", 128), ("stage2", 64)), width=64, depth=2, expand_ratio=1),
    ),
}

assert set(ENCODERS) == set(SAM_SPECS) | set(SAM_STANDIN_SPECS), "variants' SAM specs and ENCODERS name the same models"

#: the stand-in's transformer: one block, attention 8x narrower, a quarter of the MLP (a training
#: step on the CPU is mostly the decoder's, once per prompt); the prompt encoder, the upscaling, the
#: hypernetworks and the IoU head are SAM's, so both graphs' inputs and outputs are every variant's
TRANSFORMERS: Dict[str, SamTransformerDims] = {
    SAM_STANDIN: SamTransformerDims(depth=1, heads=4, mlp_dim=512, attention_downsample=8)
}


def transformer_dims(name: str) -> SamTransformerDims:
    return TRANSFORMERS.get(name, SAM_TRANSFORMER)
