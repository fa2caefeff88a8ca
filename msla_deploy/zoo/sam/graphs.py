"""SAM's two graphs as PyTorch modules a session runs: the prompt decoder for one image's B prompts
(`SamDecoderGraph`, what export traces into decoder.onnx and the torch backend runs) and the image
encoder planned for one input size in fp32 (`fp32_encoder`, the torch backend's; export plans its
own with probes, export/sam_graphs.py). Below export and runtime, so both import it."""

from __future__ import annotations

import copy
from typing import Tuple

import torch
from torch import nn

from ...nn import plan_static
from ...nn.precision import PrecisionPolicy, apply_policy
from .architecture import EMBED_DIM, NUM_MULTIMASK_OUTPUTS
from .model import EfficientViTSam


def fp32_encoder(sam: EfficientViTSam, side: int) -> nn.Module:
    """A copy of `sam`'s image encoder, eval mode, every LiteMLA planned for [1, 3, side, side],
    fp32: what the fp32 encoder graph computes."""
    encoder = copy.deepcopy(sam.image_encoder).eval()
    with torch.no_grad():
        plan_static(encoder, torch.zeros(1, 3, side, side))
    return apply_policy(encoder, PrecisionPolicy())


class SamDecoderGraph(nn.Module):
    """Prompt encoder + mask decoder for one image's B prompts, as the decoder graph computes them.

    A mask input counts where has_mask_input is 1 (segment-anything's ONNX decoder's blend, per
    prompt here); the dense positional encoding is a constant."""

    def __init__(self, sam: EfficientViTSam, multimask: bool = True) -> None:
        super().__init__()
        self.prompt_encoder = sam.prompt_encoder
        self.mask_decoder = sam.mask_decoder
        self.multimask = multimask
        with torch.no_grad():
            self.register_buffer("image_pe", sam.prompt_encoder.get_dense_pe().detach().clone(), persistent=False)
        # mask token 0 is the single-mask output, tokens 1-3 the multimask ones: the multimask graph
        # gives all four, so one graph answers both of segment-anything's modes (sam_io.select_masks)
        self.first, self.count = (0, 1 + NUM_MULTIMASK_OUTPUTS) if multimask else (0, 1)

    def forward(
        self,
        image_embeddings: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        sparse = self.prompt_encoder.embed_points(point_coords, point_labels)
        has = has_mask_input.reshape(-1, 1, 1, 1)
        no_mask = self.prompt_encoder.no_mask_embed.weight.reshape(1, EMBED_DIM, 1, 1)
        dense = self.prompt_encoder.embed_masks(mask_input) * has + no_mask * (1 - has)
        masks, iou = self.mask_decoder.predict_masks(image_embeddings, self.image_pe, sparse, dense)
        chosen = slice(self.first, self.first + self.count)
        return masks[:, chosen], iou[:, chosen]
