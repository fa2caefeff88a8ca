"""Upstream's EfficientViT-SAM predictor steps in PyTorch (efficientvit's EfficientViTSamPredictor
over segment-anything's ResizeLongestSide and postprocess_masks), for the torch-free SamPredictor
and its transforms to be held against: the picture through a PIL resize and tensor arithmetic, the
prompts scaled to the 1024 frame, the low-res logits through F.interpolate."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)
FRAME = 1024


def preprocess_shape(height: int, width: int, side: int):
    scale = side * 1.0 / max(height, width)
    return max(1, int(height * scale + 0.5)), max(1, int(width * scale + 0.5))


def encoder_input(image: np.ndarray, side: int) -> torch.Tensor:
    """SamResize (a PIL bilinear resize when the longest side differs), ToTensor, Normalize(mean /
    255, std / 255), SamPad (zeros bottom-right)."""
    height, width = image.shape[:2]
    if max(height, width) != side:
        new_h, new_w = preprocess_shape(height, width, side)
        image = np.array(Image.fromarray(image).resize((new_w, new_h), Image.BILINEAR))
    tensor = torch.from_numpy(image).permute(2, 0, 1).float().div(255)
    tensor = (tensor - torch.tensor(PIXEL_MEAN).view(3, 1, 1) / 255) / (torch.tensor(PIXEL_STD).view(3, 1, 1) / 255)
    h, w = tensor.shape[-2:]
    return F.pad(tensor, (0, side - w, 0, side - h), value=0)[None]


def apply_coords(coords, original_size) -> torch.Tensor:
    """ResizeLongestSide(1024).apply_coords, then a float tensor as upstream's predict makes it."""
    old_h, old_w = original_size
    new_h, new_w = preprocess_shape(old_h, old_w, FRAME)
    coords = np.array(coords, dtype=float)
    coords[..., 0] = coords[..., 0] * (new_w / old_w)
    coords[..., 1] = coords[..., 1] * (new_h / old_h)
    return torch.as_tensor(coords, dtype=torch.float)


def postprocess(low_res: torch.Tensor, original_size) -> torch.Tensor:
    """postprocess_masks: up to 1024 x 1024, crop to the picture in the frame, to the picture's size."""
    in_h, in_w = preprocess_shape(*original_size, FRAME)
    masks = F.interpolate(low_res, (FRAME, FRAME), mode="bilinear", align_corners=False)[..., :in_h, :in_w]
    return F.interpolate(masks, tuple(original_size), mode="bilinear", align_corners=False)


@torch.no_grad()
def predict(model, image: np.ndarray, points=None, labels=None, boxes=None, mask_input=None, multimask=True):
    """predict_torch on one picture: (masks [B, M, H, W] bool, iou [B, M], low_res [B, M, 256, 256]).
    points [B, N, 2], labels [B, N], boxes [B, 4] in picture pixels; mask_input [B, 1, 256, 256]."""
    size = image.shape[:2]
    embeddings = model.image_encoder(encoder_input(image, model.image_size))
    point_pair = None
    if points is not None:
        point_pair = (apply_coords(points, size), torch.as_tensor(np.asarray(labels), dtype=torch.int))
    box = None if boxes is None else apply_coords(np.asarray(boxes, float).reshape(-1, 2, 2), size).reshape(-1, 4)
    masks = None if mask_input is None else torch.as_tensor(np.asarray(mask_input), dtype=torch.float)
    low_res, iou = model.decode(embeddings, points=point_pair, boxes=box, masks=masks, multimask_output=multimask)
    return (postprocess(low_res, size) > 0).numpy(), iou.numpy(), low_res.numpy()
