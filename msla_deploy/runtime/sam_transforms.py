"""EfficientViT-SAM's pre- and postprocessing around its two graphs, torch-free (numpy and Pillow).

The semantics are upstream's predictor (efficientvit's EfficientViTSamPredictor over
segment-anything's ResizeLongestSide), in three frames:

- the picture: H x W pixels, where the user's prompts and the final masks live;
- the encoder's input: the longest side resized to S (512 or 1024, the encoder graph's side) with
  Pillow's bilinear filter (upstream resizes a PIL image), normalised with SAM's pixel mean/std in
  0-255 units, zero-padded bottom-right to S x S; a picture whose longest side is S already is
  not resized;
- the prompt frame: the longest side scaled to 1024 for every variant (`prompt_size`), where the
  decoder reads coordinates. Coordinates scale by new/old per axis, x by the widths, y by the heights.

The decoder's low-res logits [B, M, 256, 256] cover the padded 1024 square: they are upsampled to
1024 x 1024 (bilinear, align_corners=False), cropped to the picture's size in the prompt frame,
and resized bilinearly to the picture's size; logits above 0 are inside the mask. A bilinear
resize is linear and separable, so each axis is one small matrix (`bilinear_matrix`, PyTorch's
F.interpolate weights) and the two resizes and the crop fold into one matrix per axis.

One departure: a picture so thin that its short side would round to 0 pixels (upstream fails on
it) keeps 1 pixel.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np

from ..artifact.sam_io import LOW_RES_SIDE, MASK_THRESHOLD, PIXEL_MEAN, PIXEL_STD, PROMPT_FRAME  # noqa: F401
from ..errors import BadInput


def preprocess_shape(height: int, width: int, side: int) -> Tuple[int, int]:
    """(h, w) of a height x width picture with its longest side scaled to `side`, each rounded half
    up (ResizeLongestSide.get_preprocess_shape); a side that would be 0 stays 1."""
    scale = side * 1.0 / max(height, width)
    return max(1, int(height * scale + 0.5)), max(1, int(width * scale + 0.5))


def resize_longest_side(image: np.ndarray, side: int) -> np.ndarray:
    """H x W x 3 uint8 with its longest side resized to `side` by Pillow's bilinear filter (as
    upstream resizes a PIL image); unchanged when its longest side is `side` already."""
    height, width = image.shape[:2]
    if max(height, width) == side:
        return image
    from PIL import Image

    new_h, new_w = preprocess_shape(height, width, side)
    bilinear = getattr(Image, "Resampling", Image).BILINEAR
    return np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize((new_w, new_h), bilinear))


def encoder_input(image: np.ndarray, side: int) -> np.ndarray:
    """H x W x 3 uint8 RGB -> the encoder's input [1, 3, side, side] float32: resized longest side,
    (pixel - mean) / std, zeros bottom-right (the padding is 0 after normalisation, as upstream pads)."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise BadInput(f"a SAM picture must be H x W x 3 uint8, not {image.dtype} {list(image.shape)}")
    resized = resize_longest_side(image, side)
    mean = np.asarray(PIXEL_MEAN, np.float32)
    std = np.asarray(PIXEL_STD, np.float32)
    normalised = (resized.astype(np.float32) - mean) / std
    out = np.zeros((1, 3, side, side), np.float32)
    out[0, :, : resized.shape[0], : resized.shape[1]] = normalised.transpose(2, 0, 1)
    return out


def to_prompt_frame(coords, original_size: Tuple[int, int], frame: int = PROMPT_FRAME) -> np.ndarray:
    """Picture coordinates [..., 2] (x, y) -> the prompt frame, float32 (ResizeLongestSide.apply_coords:
    x times new_w / old_w, y times new_h / old_h, in float64)."""
    old_h, old_w = original_size
    new_h, new_w = preprocess_shape(old_h, old_w, frame)
    out = np.array(coords, dtype=np.float64)
    out[..., 0] *= new_w / old_w
    out[..., 1] *= new_h / old_h
    return out.astype(np.float32)


def boxes_to_prompt_frame(boxes, original_size: Tuple[int, int], frame: int = PROMPT_FRAME) -> np.ndarray:
    """Boxes [B, 4] (x0, y0, x1, y1) in picture pixels -> the prompt frame (apply_boxes)."""
    corners = np.asarray(boxes, dtype=np.float64).reshape(-1, 2, 2)
    return to_prompt_frame(corners, original_size, frame).reshape(-1, 4)


def bilinear_matrix(in_size: int, out_size: int) -> np.ndarray:
    """[out_size, in_size] float64: the weights of F.interpolate(mode="bilinear",
    align_corners=False) along one axis (no scale factor given: scale in/out). Output pixel i reads
    source position (i + 0.5) * scale - 0.5, clamped at 0, between its two neighbours (the last
    pixel repeats past the edge).

    The weights are PyTorch's to the last bit for float32 maps: it computes the scale and the
    position in float32, the position as one fused multiply-add (exact product, one rounding; a
    float32 multiply then subtract is off by up to 4e-5 of a pixel step at sides past 1000)."""
    scale = np.float64(np.float32(in_size) / np.float32(out_size))
    steps = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)).astype(np.float64)
    source = np.maximum((scale * steps - 0.5).astype(np.float32), np.float32(0.0))
    low = np.minimum(np.floor(source).astype(np.int64), in_size - 1)
    high = np.minimum(low + 1, in_size - 1)
    frac = np.clip(source - low.astype(np.float32), np.float32(0.0), np.float32(1.0))
    weights = np.zeros((out_size, in_size), np.float64)
    rows = np.arange(out_size)
    np.add.at(weights, (rows, low), np.float32(1.0) - frac)
    np.add.at(weights, (rows, high), frac)
    return weights


def resize_bilinear(array: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """[..., h, w] -> [..., H, W] float32 as F.interpolate(mode="bilinear", align_corners=False)."""
    rows = bilinear_matrix(array.shape[-2], int(size[0])).astype(np.float32)
    cols = bilinear_matrix(array.shape[-1], int(size[1])).astype(np.float32)
    return np.matmul(np.matmul(rows, np.asarray(array, np.float32)), cols.T)


def mask_matrices(
    original_size: Tuple[int, int], low_res: int = LOW_RES_SIDE, frame: int = PROMPT_FRAME
) -> Tuple[np.ndarray, np.ndarray]:
    """The two float32 matrices [H, 256] and [W, 256] that take low-res logits to the picture:
    upsample to frame x frame, crop to the picture's size in the frame, resize to H x W, per axis
    (segment-anything's postprocess_masks as one product per axis)."""
    height, width = (int(v) for v in original_size)
    in_h, in_w = preprocess_shape(height, width, frame)
    up = bilinear_matrix(low_res, frame)
    rows = bilinear_matrix(in_h, height) @ up[:in_h]
    cols = bilinear_matrix(in_w, width) @ up[:in_w]
    return rows.astype(np.float32), cols.astype(np.float32)


def postprocess_masks(
    low_res: np.ndarray,
    original_size: Tuple[int, int],
    return_logits: bool = False,
    matrices: Optional[Sequence[np.ndarray]] = None,
) -> np.ndarray:
    """Low-res logits [B, M, 256, 256] -> [B, M, H, W] at the picture's size: bool masks (logits >
    MASK_THRESHOLD), or the float32 logits. Bool masks are made one at a time, so a large picture
    never holds every mask's logits at once."""
    rows, cols = matrices if matrices is not None else mask_matrices(original_size, low_res.shape[-1])
    low_res = np.asarray(low_res, np.float32)
    batch, count = low_res.shape[:2]
    height, width = rows.shape[0], cols.shape[0]
    out = np.empty((batch, count, height, width), np.float32 if return_logits else bool)
    for b in range(batch):
        for m in range(count):
            logits = (rows @ low_res[b, m]) @ cols.T
            out[b, m] = logits if return_logits else logits > MASK_THRESHOLD
    return out
