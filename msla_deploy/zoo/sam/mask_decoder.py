"""SAM's mask decoder, rebuilt for export with segment-anything's state-dict names.

Image embeddings + prompt embeddings -> low-res mask logits [B, M, 256, 256] and predicted IoUs
[B, M]. An IoU token and four mask tokens are prepended to the prompt tokens; the two-way
transformer mixes them with the image tokens; the image tokens are upscaled 4x by two transposed
convs; each mask token goes through its own MLP ("hypernetwork") to 32 weights, whose dot product
with the upscaled features at every pixel is that mask's logit. Mask token 0 is the single-mask
output, tokens 1-3 the multimask outputs.

Export notes: one image's embeddings [1, C, H, W] serve B prompts by broadcasting (segment-anything
repeats them B times with repeat_interleave, which exports as a Tile that TensorRT rejects); every
reshape names its sizes as Python ints except the prompt batch.
"""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .architecture import EMBEDDING_SIZE
from .layer_norm import DEFAULT_EPS, LayerNorm2d


class MLP(nn.Module):
    """`num_layers` Linear layers with ReLU between them (state-dict `layers.i`)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int) -> None:
        super().__init__()
        widths = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(n, k) for n, k in zip(widths[:-1], widths[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == last else F.relu(layer(x))
        return x


class MaskDecoder(nn.Module):
    def __init__(
        self,
        *,
        transformer_dim: int,
        transformer: nn.Module,
        num_multimask_outputs: int = 3,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
        image_embedding_size: Tuple[int, int] = EMBEDDING_SIZE,
        eps: float = DEFAULT_EPS,
    ) -> None:
        super().__init__()
        self.transformer_dim = transformer_dim
        self.transformer = transformer
        self.num_multimask_outputs = num_multimask_outputs
        self.num_mask_tokens = num_multimask_outputs + 1
        self.image_embedding_size = tuple(image_embedding_size)
        # construction order = segment-anything's = state-dict order
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        # activations exact GELU (segment-anything's)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(transformer_dim // 4, eps=eps),
            nn.GELU(),
            nn.ConvTranspose2d(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3) for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(transformer_dim, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth)

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """segment-anything's call: image_embeddings [1, C, 64, 64] (one image), image_pe
        [1, C, 64, 64], sparse [B, N, C], dense [B, C, 64, 64] -> (masks [B, M, 256, 256], iou [B, M]),
        M = 3 (mask tokens 1-3) with multimask_output, else 1 (mask token 0)."""
        masks, iou_pred = self.predict_masks(
            image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings
        )
        chosen = slice(1, None) if multimask_output else slice(0, 1)
        return masks[:, chosen], iou_pred[:, chosen]

    def predict_masks(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """All mask tokens' outputs: (masks [B, 4, 256, 256], iou [B, 4])."""
        batch = sparse_prompt_embeddings.shape[0]
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        # sizes spelled out: an expand by -1 exports as Shape + ConstantOfShape + Where of a constant
        tokens = output_tokens.unsqueeze(0).expand(batch, 1 + self.num_mask_tokens, self.transformer_dim)
        tokens = torch.cat([tokens, sparse_prompt_embeddings], dim=1)

        # broadcast, not repeat: [1, C, H, W] + [B, C, H, W]
        src = image_embeddings + dense_prompt_embeddings
        hs, src = self.transformer(src, image_pe, tokens)
        # token slices keep their axis (Slice in the graph, not a Gather, which static checks refuse)
        iou_token_out = hs[:, :1, :]  # [B, 1, C]
        mask_tokens_out = hs[:, 1 : 1 + self.num_mask_tokens, :]

        height, width = self.image_embedding_size
        src = src.transpose(1, 2).reshape(-1, self.transformer_dim, height, width)
        upscaled = self.output_upscaling(src)  # [B, C / 8, 4H, 4W]
        hyper_in = torch.cat(
            [mlp(mask_tokens_out[:, i : i + 1, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1
        )  # [B, 4, C / 8]
        side_h, side_w = 4 * height, 4 * width
        features = upscaled.reshape(-1, self.transformer_dim // 8, side_h * side_w)
        masks = (hyper_in @ features).reshape(-1, self.num_mask_tokens, side_h, side_w)
        return masks, self.iou_prediction_head(iou_token_out).reshape(-1, self.num_mask_tokens)
