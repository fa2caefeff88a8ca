"""EfficientViT-SAM's two graphs as their callers see them: tensor names, dynamic dimensions, and
the decoder's feed built from SAM's prompt conventions. Torch-free (numpy only, imported lazily).

The decoder takes prompts the way segment-anything's own ONNX decoder does: every prompt is a row
of points with labels (-1 padding, 0 background, 1 foreground, 2 and 3 a box's top-left and
bottom-right corners), in the 1024-pixel prompt frame; a prompt without a box gets one padding
point appended (segment-anything's rule, which its decoder was trained with). Unlike that decoder,
B prompts of one image are one call, and every prompt may carry its own mask input.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence

from ..tasks import IMAGE_EMBEDDINGS_NAME, IOU_PREDICTIONS_NAME, MASKS_NAME

#: the image encoder's input (resized, padded, normalised as the SAM transform does) and output
IMAGE = "image"
IMAGE_EMBEDDINGS = IMAGE_EMBEDDINGS_NAME
ENCODER_INPUTS = (IMAGE,)
ENCODER_OUTPUTS = (IMAGE_EMBEDDINGS,)

POINT_COORDS = "point_coords"
POINT_LABELS = "point_labels"
MASK_INPUT = "mask_input"
HAS_MASK_INPUT = "has_mask_input"
MASKS = MASKS_NAME
IOU_PREDICTIONS = IOU_PREDICTIONS_NAME
DECODER_INPUTS = (IMAGE_EMBEDDINGS, POINT_COORDS, POINT_LABELS, MASK_INPUT, HAS_MASK_INPUT)
DECODER_OUTPUTS = (MASKS, IOU_PREDICTIONS)

#: the decoder's two dynamic dimensions: prompts per call (B) and points per prompt (P)
PROMPTS_DIM = "prompts"
POINTS_DIM = "points"
#: tensor -> {axis: dimension} of the dynamic decoder (image_embeddings is one image, static)
DECODER_DYNAMIC_AXES: Dict[str, Dict[int, str]] = {
    POINT_COORDS: {0: PROMPTS_DIM, 1: POINTS_DIM},
    POINT_LABELS: {0: PROMPTS_DIM, 1: POINTS_DIM},
    MASK_INPUT: {0: PROMPTS_DIM},
    HAS_MASK_INPUT: {0: PROMPTS_DIM},
    MASKS: {0: PROMPTS_DIM},
    IOU_PREDICTIONS: {0: PROMPTS_DIM},
}

#: the side of the square frame the decoder reads prompts in, for every variant (SAM's: an
#: EfficientViT-SAM-L encodes a 512 image, yet its prompts are in the 1024 frame)
PROMPT_FRAME = 1024
#: SAM's preprocessing, in 0-255 pixel units, RGB: (pixel - mean) / std after resizing the longest
#: side to the encoder's size; then zero padding bottom-right to a square
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)
#: logits above this are inside a mask
MASK_THRESHOLD = 0.0

#: SAM's point labels
PAD_LABEL, BOX_LABELS = -1.0, (2.0, 3.0)
#: side of the low-res mask_input / masks (4x the 64x64 embeddings)
LOW_RES_SIDE = 256


def decoder_feed(
    points: Optional[Sequence] = None,
    labels: Optional[Sequence] = None,
    boxes: Optional[Sequence] = None,
    mask_input: Optional[Sequence] = None,
) -> Dict[str, "object"]:
    """segment-anything's predict_torch prompts (prompt frame) -> the decoder graph's feed.

    points [B, N, 2] with labels [B, N]; boxes [B, 4] (x0, y0, x1, y1); mask_input [B, 1, 256, 256]
    low-res logits (a previous round's). At least points or boxes. Per prompt: its points, then its
    box's corners, or one padding point when there is no box. The image embeddings are not part
    of the feed (the encoder's output, one image)."""
    import numpy as np

    if points is None and boxes is None:
        raise ValueError("a SAM prompt needs points or a box")
    coords, tags = [], []
    if points is not None:
        if labels is None:
            raise ValueError("points need labels")
        coords.append(np.asarray(points, dtype=np.float32).reshape(len(points), -1, 2))
        tags.append(np.asarray(labels, dtype=np.float32).reshape(len(points), -1))
    if boxes is not None:
        corners = np.asarray(boxes, dtype=np.float32).reshape(-1, 2, 2)
        coords.append(corners)
        tags.append(np.broadcast_to(np.asarray(BOX_LABELS, dtype=np.float32), (len(corners), 2)))
    else:
        coords.append(np.zeros((len(coords[0]), 1, 2), dtype=np.float32))
        tags.append(np.full((len(coords[0]), 1), PAD_LABEL, dtype=np.float32))
    batch = len(coords[0])
    if any(len(c) != batch for c in coords):
        raise ValueError(f"points and boxes disagree on the number of prompts ({[len(c) for c in coords]})")
    if mask_input is None:
        masks = np.zeros((batch, 1, LOW_RES_SIDE, LOW_RES_SIDE), dtype=np.float32)
        has = np.zeros((batch,), dtype=np.float32)
    else:
        masks = np.ascontiguousarray(
            np.asarray(mask_input, dtype=np.float32).reshape(-1, 1, LOW_RES_SIDE, LOW_RES_SIDE)
        )
        masks = np.broadcast_to(masks, (batch, 1, LOW_RES_SIDE, LOW_RES_SIDE)).copy()
        has = np.ones((batch,), dtype=np.float32)
    return {
        POINT_COORDS: np.ascontiguousarray(np.concatenate(coords, axis=1)),
        POINT_LABELS: np.ascontiguousarray(np.concatenate(tags, axis=1)),
        MASK_INPUT: masks,
        HAS_MASK_INPUT: has,
    }


#: the masks of a multimask decoder: SAM's four mask tokens (0 single-mask, 1-3 multimask)
ALL_MASKS = 4


def select_masks(masks, iou, multimask: bool):
    """segment-anything's choice of outputs from the decoder graph's: masks [B, M, 256, 256] and
    iou [B, M] -> masks 1-3 (multimask) or mask 0 (single) of a four-mask graph; a single-mask
    graph (M = 1) has mask 0 only, so it cannot answer multimask."""
    count = masks.shape[1]
    if count == ALL_MASKS:
        chosen = slice(1, ALL_MASKS) if multimask else slice(0, 1)
        return masks[:, chosen], iou[:, chosen]
    if count == 1 and not multimask:
        return masks, iou
    raise ValueError(
        f"the decoder gives {count} mask(s) per prompt: multimask needs a decoder exported with --head multimask"
    )
