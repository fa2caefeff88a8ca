"""EfficientViT-SAM: upstream's five segment-anything models, rebuilt export-friendly.

    build_sam(name) -> EfficientViTSam        random weights, train mode; upstream's state-dict names
    get_sam_spec(name) -> ZooSpec             eps, checkpoint file, encoder size, sizes (variants.SAM_SPECS)
    EfficientViTSam                           .image_encoder, .prompt_encoder, .mask_decoder, .decode(...)

Torch side (this package imports torch). The models are not in zoo.names() yet.
"""

from __future__ import annotations

from ..variants import SAM_SPECS
from .image_encoder import EfficientViTSamImageEncoder, SamNeck
from .layer_norm import LayerNorm2d
from .mask_decoder import MaskDecoder
from .model import EfficientViTSam, build_sam, get_sam_spec
from .prompt_encoder import PositionEmbeddingRandom, PromptEncoder
from .transformer import TwoWayTransformer

__all__ = [
    "SAM_SPECS",
    "EfficientViTSam",
    "EfficientViTSamImageEncoder",
    "LayerNorm2d",
    "MaskDecoder",
    "PositionEmbeddingRandom",
    "PromptEncoder",
    "SamNeck",
    "TwoWayTransformer",
    "build_sam",
    "get_sam_spec",
]
