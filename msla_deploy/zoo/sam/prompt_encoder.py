"""SAM's prompt encoder, rebuilt for export with segment-anything's state-dict names.

Points, box corners and a low-res mask become the decoder's prompt tokens ("sparse embeddings",
[B, N, 256]) and a dense map ("dense embeddings", [B, 256, 64, 64]). The arithmetic is
segment-anything's (random-Fourier positional encoding of the coordinates, plus one learned
embedding per point label), written so that a traced graph is plain tensor algebra:

* one label vector covers every kind of point: -1 padding, 0 background, 1 foreground, 2 and 3
  the corners of a box (so a box is two points, as in SAM's own ONNX decoder);
* labels select embeddings by multiplying with 0/1 masks, not by boolean-index assignment (which
  exports as ScatterND chains); an unknown label gets no embedding rather than an error;
* coordinates are normalised by one division, not by in-place slice writes;
* the dense positional encoding is built from an arange, not from a cumsum of ones.

`forward(points, boxes, masks)` keeps segment-anything's call and output (a padding point is
appended when there is no box), so the module can be compared with the original directly.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
from torch import nn

from .architecture import EMBED_DIM, EMBEDDING_SIZE, MASK_IN_CHANS, PROMPT_FRAME
from .layer_norm import DEFAULT_EPS, LayerNorm2d

#: point labels
PAD, NEGATIVE, POSITIVE, BOX_TOP_LEFT, BOX_BOTTOM_RIGHT = -1, 0, 1, 2, 3
#: the labels with a learned embedding, in `point_embeddings` order
EMBEDDED_LABELS = (NEGATIVE, POSITIVE, BOX_TOP_LEFT, BOX_BOTTOM_RIGHT)


class PositionEmbeddingRandom(nn.Module):
    """sin/cos of random projections of (x, y) in [-1, 1]: [..., 2] -> [..., 2 * num_pos_feats]."""

    def __init__(self, num_pos_feats: int = EMBED_DIM // 2, scale: float = 1.0) -> None:
        super().__init__()
        # random at construction (as upstream), and a buffer: the checkpoint holds the trained one
        self.register_buffer("positional_encoding_gaussian_matrix", scale * torch.randn((2, num_pos_feats)))

    def encode(self, unit_coords: torch.Tensor) -> torch.Tensor:
        """Encode coordinates normalised to [0, 1]."""
        projected = (2 * unit_coords - 1) @ self.positional_encoding_gaussian_matrix
        projected = projected * (2 * math.pi)
        return torch.cat([torch.sin(projected), torch.cos(projected)], dim=-1)

    def dense(self, size: Tuple[int, int]) -> torch.Tensor:
        """[C, H, W]: the encoding of every cell centre of an H x W grid."""
        height, width = size
        matrix = self.positional_encoding_gaussian_matrix
        ys = (torch.arange(height, dtype=torch.float32, device=matrix.device) + 0.5) / height
        xs = (torch.arange(width, dtype=torch.float32, device=matrix.device) + 0.5) / width
        grid = torch.stack([xs.view(1, width).expand(height, width), ys.view(height, 1).expand(height, width)], dim=-1)
        return self.encode(grid.to(matrix.dtype)).permute(2, 0, 1)

    def forward_with_coords(self, coords: torch.Tensor, image_size: Tuple[int, int]) -> torch.Tensor:
        """Encode pixel coordinates (x, y) of an image of (H, W)."""
        height, width = image_size
        scale = torch.tensor([width, height], dtype=coords.dtype, device=coords.device)
        return self.encode(coords / scale)


class PromptEncoder(nn.Module):
    def __init__(
        self,
        embed_dim: int = EMBED_DIM,
        image_embedding_size: Tuple[int, int] = EMBEDDING_SIZE,
        input_image_size: Tuple[int, int] = (PROMPT_FRAME, PROMPT_FRAME),
        mask_in_chans: int = MASK_IN_CHANS,
        eps: float = DEFAULT_EPS,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.input_image_size = tuple(input_image_size)
        self.image_embedding_size = tuple(image_embedding_size)
        # construction order = upstream's = state-dict order
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        self.point_embeddings = nn.ModuleList([nn.Embedding(1, embed_dim) for _ in EMBEDDED_LABELS])
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_input_size = (4 * image_embedding_size[0], 4 * image_embedding_size[1])
        # two stride-2 2x2 convs: 256x256 -> 64x64; activations exact GELU (segment-anything's)
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4, eps=eps),
            nn.GELU(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans, eps=eps),
            nn.GELU(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def get_dense_pe(self) -> torch.Tensor:
        """[1, C, 64, 64]: the positional encoding of the image embeddings' grid."""
        return self.pe_layer.dense(self.image_embedding_size).unsqueeze(0)

    def embed_points(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """coords [B, N, 2] (x, y) in input-frame pixels, labels [B, N] (any numeric dtype) -> [B, N, C].

        A padding point (label -1) is `not_a_point_embed` alone; any other point is its positional
        encoding plus its label's embedding."""
        encoding = self.pe_layer.forward_with_coords(coords + 0.5, self.input_image_size)  # + 0.5: pixel centres
        labels = labels.unsqueeze(-1)
        is_pad = (labels == PAD).to(encoding.dtype)
        embedding = encoding * (1 - is_pad) + self.not_a_point_embed.weight * is_pad
        for label, table in zip(EMBEDDED_LABELS, self.point_embeddings):
            embedding = embedding + table.weight * (labels == label).to(encoding.dtype)
        return embedding

    def embed_masks(self, masks: torch.Tensor) -> torch.Tensor:
        """Low-res mask logits [B, 1, 256, 256] -> [B, C, 64, 64]."""
        return self.mask_downscaling(masks)

    def no_mask_dense(self, batch: int) -> torch.Tensor:
        """The dense embeddings without a mask input: [batch, C, 64, 64], one learned vector everywhere."""
        height, width = self.image_embedding_size
        return self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(batch, -1, height, width)

    def forward(
        self,
        points: Optional[Tuple[torch.Tensor, torch.Tensor]],
        boxes: Optional[torch.Tensor],
        masks: Optional[torch.Tensor],
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """segment-anything's semantics: points (coords [B, N, 2], labels [B, N]), boxes [B, 4]
        (x0, y0, x1, y1), masks [B, 1, 256, 256], each optional -> (sparse [B, N', C], dense
        [B, C, 64, 64]). Without a box, a padding point is appended to the points."""
        coords, labels = [], []
        if points is not None:
            coords.append(points[0])
            labels.append(points[1].to(points[0].dtype))
            if boxes is None:
                batch = points[0].shape[0]
                coords.append(points[0].new_zeros(batch, 1, 2))
                labels.append(points[0].new_full((batch, 1), float(PAD)))
        if boxes is not None:
            corners = boxes.reshape(-1, 2, 2)
            coords.append(corners)
            corner_labels = torch.tensor([BOX_TOP_LEFT, BOX_BOTTOM_RIGHT], dtype=corners.dtype, device=corners.device)
            labels.append(corner_labels.expand(corners.shape[0], 2))
        batch = next((t.shape[0] for t in (*coords, masks) if t is not None), 1)
        if coords:
            sparse = self.embed_points(torch.cat(coords, dim=1), torch.cat(labels, dim=1))
        else:
            sparse = self.not_a_point_embed.weight.new_zeros(batch, 0, self.embed_dim)
        dense = self.embed_masks(masks) if masks is not None else self.no_mask_dense(batch)
        return sparse, dense
