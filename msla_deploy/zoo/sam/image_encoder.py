"""EfficientViT-SAM's image encoder: an L-type EfficientViT backbone, the SAM neck, a LayerNorm2d.

Image [B, 3, S, S] (S = 512 for the L variants, 1024 for XL; preprocessed as
architecture.PIXEL_MEAN / PIXEL_STD say) -> image embeddings [B, 256, 64, 64]. The neck reads three
backbone features (strides 32, 16, 8 for L; 64, 32, 16 for XL), resizes each to 64x64, sums them
and refines; at the model's own S the shallowest feature is already 64x64 and is not resized.

Module names are upstream's state-dict names (`backbone`, `neck.{input_ops,middle,output_ops}`,
`norm`), so the official checkpoints load strictly.
"""

from __future__ import annotations

from typing import Dict

import torch
from torch import nn

from ...nn.blocks import FusedMBConv
from ...nn.layers import ConvLayer, DAGBlock, IdentityLayer, OpSequential, ResidualBlock, UpSampleLayer
from ..backbone import L_LAYOUT, EfficientViTLargeBackbone
from .architecture import EMBED_DIM, EMBEDDING_SIZE, SamEncoderDims, SamNeckDims
from .layer_norm import LayerNorm2d

NORM = "bn2d"
ACT = "gelu"  # tanh-approximated, as the L backbones
#: the neck's only output, under upstream's key
OUTPUT_KEY = "sam_encoder"


class SamNeck(DAGBlock):
    """Backbone features -> [B, EMBED_DIM, 64, 64], before the final LayerNorm2d."""

    def __init__(self, dims: SamNeckDims, out_channels: int = EMBED_DIM) -> None:
        w = dims.width
        inputs = {
            key: OpSequential(
                [
                    ConvLayer(channels, w, 1, use_bias=False, norm=NORM, act_func=None),
                    # upstream always calls the resize; at the target size that is an exact copy,
                    # which our layer skips
                    UpSampleLayer(mode="bicubic", size=EMBEDDING_SIZE, align_corners=False),
                ]
            )
            for key, channels in dims.features
        }
        middle = OpSequential(
            [
                ResidualBlock(
                    FusedMBConv(
                        w, w, 3, 1, expand_ratio=dims.expand_ratio, use_bias=False, norm=NORM, act_func=(ACT, None)
                    ),
                    IdentityLayer(),
                )
                for _ in range(dims.depth)
            ]
        )
        project = OpSequential([ConvLayer(w, out_channels, 1, use_bias=True, norm=None, act_func=None)])
        super().__init__(inputs, merge="add", post_input=None, middle=middle, outputs={OUTPUT_KEY: project})


class EfficientViTSamImageEncoder(nn.Module):
    def __init__(self, dims: SamEncoderDims, eps: float) -> None:
        super().__init__()
        self.backbone = EfficientViTLargeBackbone(dims.backbone, act=ACT, layout=dims.layout or L_LAYOUT)
        self.neck = SamNeck(dims.neck)
        self.norm = LayerNorm2d(EMBED_DIM, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features: Dict[str, torch.Tensor] = self.neck(self.backbone(x))
        return self.norm(features[OUTPUT_KEY])
