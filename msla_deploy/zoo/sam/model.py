"""EfficientViTSam (image encoder + prompt encoder + mask decoder) and `build_sam(name)`."""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import nn

from ...errors import BadInput
from ..model import set_norm_eps
from ..variants import SAM_SPECS, SAM_STANDIN_SPECS, ZooSpec
from .architecture import (
    EMBED_DIM,
    ENCODERS,
    IOU_HEAD_DEPTH,
    IOU_HEAD_HIDDEN_DIM,
    MASK_THRESHOLD,
    NUM_MULTIMASK_OUTPUTS,
    PROMPT_FRAME,
    transformer_dims,
)
from .image_encoder import EfficientViTSamImageEncoder
from .layer_norm import LayerNorm2d
from .mask_decoder import MaskDecoder
from .prompt_encoder import PromptEncoder
from .transformer import TwoWayTransformer


class EfficientViTSam(nn.Module):
    """The three parts under upstream's names, so that `state_dict()` is the checkpoint's.

    The parts run separately (one image encoding, then any number of prompt rounds):
    `image_encoder(images)` -> embeddings [N, 256, 64, 64]; `decode(...)` for one image's prompts.
    Images are `image_size` square (resized longest side, padded bottom-right, normalised); prompt
    coordinates are in the `prompt_frame` square (the original image's longest side scaled to 1024).
    """

    mask_threshold = MASK_THRESHOLD

    def __init__(
        self,
        image_encoder: EfficientViTSamImageEncoder,
        prompt_encoder: PromptEncoder,
        mask_decoder: MaskDecoder,
        image_size: int,
        prompt_frame: int = PROMPT_FRAME,
    ) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.image_size = image_size
        self.prompt_frame = prompt_frame

    def decode(
        self,
        image_embeddings: torch.Tensor,
        points: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
        boxes: Optional[torch.Tensor] = None,
        masks: Optional[torch.Tensor] = None,
        multimask_output: bool = True,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """One image's embeddings [1, 256, 64, 64] and B prompts (segment-anything's predict_torch
        inputs, in the prompt frame) -> (low-res mask logits [B, M, 256, 256], iou predictions [B, M])."""
        sparse, dense = self.prompt_encoder(points=points, boxes=boxes, masks=masks)
        return self.mask_decoder(
            image_embeddings=image_embeddings,
            image_pe=self.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
        )


def get_sam_spec(name: str) -> ZooSpec:
    spec = SAM_SPECS.get(name) or SAM_STANDIN_SPECS.get(name)
    if spec is None:
        valid = ", ".join([*SAM_SPECS, *SAM_STANDIN_SPECS])
        raise BadInput(f"unknown EfficientViT-SAM model {name!r}; valid names: {valid}")
    return spec


def build_sam(name: str) -> EfficientViTSam:
    """Build an EfficientViT-SAM zoo model with random weights, in train mode (as upstream: no .eval()).

    Honours an enclosing `torch.device(...)` context (`with torch.device("meta"):` gives a
    weightless model for shape and cost analysis)."""
    spec = get_sam_spec(name)
    eps = spec.norm_eps
    dims = transformer_dims(name)
    transformer = TwoWayTransformer(
        depth=dims.depth,
        embedding_dim=EMBED_DIM,
        num_heads=dims.heads,
        mlp_dim=dims.mlp_dim,
        attention_downsample_rate=dims.attention_downsample,
    )
    model = EfficientViTSam(
        image_encoder=EfficientViTSamImageEncoder(ENCODERS[name], eps=eps),
        prompt_encoder=PromptEncoder(eps=eps),
        mask_decoder=MaskDecoder(
            transformer_dim=EMBED_DIM,
            transformer=transformer,
            num_multimask_outputs=NUM_MULTIMASK_OUTPUTS,
            iou_head_depth=IOU_HEAD_DEPTH,
            iou_head_hidden_dim=IOU_HEAD_HIDDEN_DIM,
            eps=eps,
        ),
        image_size=spec.default_resolution[0],
    )
    # upstream's zoo sets the eps on every BatchNorm and nn.LayerNorm after construction (the
    # transformer's LayerNorms too: segment-anything's own default there is 1e-5)
    set_norm_eps(model, eps)
    assert all(m.eps == eps for m in model.modules() if isinstance(m, LayerNorm2d))
    return model
