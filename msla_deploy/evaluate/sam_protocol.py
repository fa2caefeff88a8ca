"""Upstream's SAM evaluation protocol, the parts that are arithmetic (applications/efficientvit_sam:
eval_efficientvit_sam_model.py and sam_eval_utils.py; our own code, checked against theirs by
benchmarks/sam_eval_upstream.py).

- the prompt of an instance: its ground-truth box, xywh -> xyxy; or the first click of upstream's
  clicker: the pixel of the mask farthest from its border (the exact Euclidean distance of the
  mask padded by one pixel of background, as cv2.distanceTransform(DIST_L2, precise) gives it),
  the first such pixel in row-major order, a foreground click. An empty mask gives upstream's
  answer too: a background click at (0, 0).
- the score: the IoU of the chosen mask (the highest predicted IoU of the three) with the
  ground-truth mask, in percent: |A & B| / (|A | B| + 1e-7) * 100.
- the mean: over instances, and by the annotation's `area` in upstream's bins, whose bounds are
  inclusive on both sides (filter_results_by_area): small area <= 32^2, medium 32^2 <= area <=
  96^2, large area >= 96^2; an area of exactly 32^2 or 96^2 counts in both of its bins. An
  empty bin is None (upstream divides by zero there).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

#: instances with a smaller `area` are skipped, as upstream does
MIN_AREA = 1.0
#: upstream's area bins: name -> (lowest area, highest area), both inclusive; None: unbounded
AREA_BINS: Dict[str, Tuple[Optional[float], Optional[float]]] = {
    "small": (None, 32.0**2),
    "medium": (32.0**2, 96.0**2),
    "large": (96.0**2, None),
}
#: the keys of a result: every instance, then the bins
ALL = "all"
SCOPES = (ALL, *AREA_BINS)
#: added to the union (upstream's iou())
IOU_EPS = 1e-7
#: what the report says the protocol is
FIRST_CLICK = (
    "the mask pixel farthest from the mask's border (exact Euclidean distance transform of the mask padded by one "
    "pixel of background; the first maximum in row-major order), label 1; an empty mask: (0, 0), label 0"
)
IOU_TEXT = "|A & B| / (|A | B| + 1e-7) * 100 with the ground-truth mask, the mask of the highest predicted IoU"


def box_prompt(bbox: Sequence[float]) -> List[float]:
    """COCO's [x, y, w, h] -> [x0, y0, x1, y1]."""
    x, y, w, h = (float(v) for v in bbox)
    return [x, y, x + w, y + h]


def first_click(mask: np.ndarray) -> Tuple[Tuple[int, int], int]:
    """((x, y), label) of upstream's first click on a ground-truth mask (H x W bool)."""
    from scipy.ndimage import distance_transform_edt

    # background all around, so that the picture's edge is a border too (upstream pads the same way)
    distance = distance_transform_edt(np.pad(np.asarray(mask, dtype=bool), 1))[1:-1, 1:-1]
    peak = int(np.argmax(distance))  # the first maximum in row-major order
    if distance.flat[peak] <= 0:  # no foreground: upstream's clicker gives a background click at (0, 0)
        return (0, 0), 0
    y, x = divmod(peak, distance.shape[1])
    return (x, y), 1


def mask_iou(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Upstream's iou(): percent, with its epsilon (an empty pair scores 0)."""
    inter = np.count_nonzero(predicted & truth)
    union = np.count_nonzero(predicted | truth)
    return float(inter / (union + IOU_EPS)) * 100


def in_bin(area: float, bounds: Tuple[Optional[float], Optional[float]]) -> bool:
    low, high = bounds
    return (low is None or area >= low) and (high is None or area <= high)


def bins_of(area: float) -> List[str]:
    """The area bins an instance counts in (two at a boundary)."""
    return [name for name, bounds in AREA_BINS.items() if in_bin(area, bounds)]


def miou_by_area(areas: Sequence[float], ious: Sequence[float]) -> Tuple[Dict[str, Optional[float]], Dict[str, int]]:
    """({all, small, medium, large: mean IoU or None}, {the same: instances}), summed in the order
    given, as upstream's get_iou_metric sums."""
    means: Dict[str, Optional[float]] = {}
    counts: Dict[str, int] = {}
    for scope in SCOPES:
        chosen = [iou for area, iou in zip(areas, ious) if scope == ALL or in_bin(area, AREA_BINS[scope])]
        counts[scope] = len(chosen)
        means[scope] = sum(chosen) / len(chosen) if chosen else None
    return means, counts


def bins_text() -> str:
    return "small area <= 32^2, medium 32^2 <= area <= 96^2, large area >= 96^2 (bounds in both bins)"
