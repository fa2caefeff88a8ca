"""Report pictures for segmentation logits: where the labels changed, and where the error is.

Both are drawn at the input's resolution (logits at stride 8 are repeated 8x8, nearest) so that
they line up with the input picture, one sample under the other.

- disagreement: the reference's labels in their palette colours, darkened; white where the
  artifact's label differs (so a scattered or block-shaped pattern is visible at a glance).
- error heatmap: per pixel the largest |error| over the classes, black (0) through red and yellow
  to white (the largest error in the picture); cyan where the artifact gave NaN/Inf.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from ..classes import class_names, palette  # noqa: F401 (class names and colours have one owner; validate imports them from here)

DISAGREE = np.array([255, 255, 255], np.uint8)
NONFINITE = np.array([0, 255, 255], np.uint8)
# black -> dark red -> red -> yellow -> white
_HEAT_STOPS = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
_HEAT_RGB = np.array([(0, 0, 0), (110, 0, 0), (230, 30, 0), (255, 210, 0), (255, 255, 255)], np.float64)


def _upscale(picture: np.ndarray, factor: Tuple[int, int]) -> np.ndarray:
    return picture.repeat(factor[0], axis=-3).repeat(factor[1], axis=-2)


def stride(output_hw: Tuple[int, int], input_hw: Optional[Tuple[int, int]]) -> Tuple[int, int]:
    """How much to enlarge an output map to cover the input (1 where it does not divide evenly)."""
    if not input_hw:
        return (1, 1)
    return tuple(i // o if o and i % o == 0 else 1 for i, o in zip(input_hw, output_hw))  # type: ignore[return-value]


def disagreement_picture(reference: np.ndarray, candidate: np.ndarray, input_hw=None) -> np.ndarray:
    """[N, C, H, W] logits -> [N*H', W', 3] uint8."""
    ref_labels = reference.argmax(axis=1)
    finite = np.isfinite(candidate).all(axis=1)
    differs = (ref_labels != candidate.argmax(axis=1)) | ~finite
    colours = (palette(reference.shape[1])[ref_labels].astype(np.float32) * 0.35).astype(np.uint8)
    colours[differs] = DISAGREE
    picture = np.concatenate(list(colours), axis=0)  # samples stacked vertically
    return _upscale(picture, stride(reference.shape[2:], input_hw))


def error_heatmap(reference: np.ndarray, candidate: np.ndarray, input_hw=None) -> Tuple[np.ndarray, float]:
    """[N, C, H, W] logits -> ([N*H', W', 3] uint8, the |error| that maps to white)."""
    with np.errstate(invalid="ignore"):
        err = np.abs(reference.astype(np.float64) - candidate.astype(np.float64))
    bad = ~np.isfinite(err).all(axis=1)
    per_pixel = np.where(np.isfinite(err), err, 0.0).max(axis=1)
    scale = float(per_pixel.max())
    level = per_pixel / scale if scale > 0 else per_pixel
    rgb = np.stack([np.interp(level, _HEAT_STOPS, _HEAT_RGB[:, c]) for c in range(3)], axis=-1).round().astype(np.uint8)
    rgb[bad] = NONFINITE
    picture = np.concatenate(list(rgb), axis=0)
    return _upscale(picture, stride(reference.shape[2:], input_hw)), scale
