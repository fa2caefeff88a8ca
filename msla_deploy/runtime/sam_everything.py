"""Segment-everything on a deployed EfficientViT-SAM, torch-free (numpy, pycocotools, scipy).

    masks = sam.everything("street.png")                  # SamPredictor.everything: upstream's records
    result = generate(sam, picture, EverythingParams(points_per_side=16))    # records + counts

The decisions are segment-anything's SamAutomaticMaskGenerator (EfficientViT's generator only
swaps the predictor), on one crop (the whole picture):

1. the encoder once; a grid of points_per_side^2 points at the centres of equal cells, x along
   the width first, in the picture's pixels;
2. the points through the decoder in batches (points_per_batch, at most the decoder profile's
   prompts), one foreground point per prompt, SAM's three masks per point, flattened point-major;
3. per batch: keep predicted IoU > pred_iou_thresh (when > 0); the stability score, the IoU of the
   full-size masks at mask_threshold + offset and - offset; keep it >= stability_score_thresh
   (when > 0); the mask (logits > mask_threshold), its box (inclusive pixel edges, [0, 0, 0, 0]
   for an empty mask) and its COCO RLE;
4. greedy box NMS over all of them: highest predicted IoU first, a box whose IoU with a kept one is
   above box_nms_thresh dropped (torchvision's nms: float32 boxes, IoU = inter / union without +1);
5. with min_mask_region_area > 0: holes, then islands, below that area removed (8-connected
   regions), and NMS again at max(box_nms_thresh, 0.7) preferring the masks that did not change.

What differs is where the work goes. Upstream upsamples all three masks of every point to the
picture's size before its first filter. Here the IoU filter runs first (it needs no mask), and a
survivor is upsampled only over the rows and columns its low-res logits can reach above the lowest
threshold that counts (mask_threshold - offset): bilinear weights are non-negative and sum to 1,
so a full-size logit is a convex combination of the low-res logits under it, and outside that
block none exceeds it. The stability score, mask, box and RLE are upstream's, computed on that
block (the full-size logits are the predictor's: runtime/sam_transforms.py's matrices).

Order: upstream's NMS sorts by score with PyTorch's CPU sort, which does not keep the order of
equal scores; here equal scores keep the order the masks were made in (grid order, then mask
index), so among ties (rare for predicted IoUs; every unchanged mask after min_mask_region_area)
the kept one and the order may differ from upstream's. Not supported: crop layers
(crop_n_layers > 0) and explicit point grids; the output modes are coco_rle (the default here:
JSON-ready) and binary_mask (upstream's default), not uncompressed_rle.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from .. import rle
from ..artifact.sam_io import MASK_THRESHOLD
from ..errors import BadInput
from ..everything_params import OUTPUT_MODES, EverythingParams

__all__ = [
    "EverythingParams",
    "EverythingResult",
    "OUTPUT_MODES",
    "generate",
    "point_grid",
    "stability_score",
    "nms",
    "remove_small_regions",
]

#: upstream's crop_nms_thresh default: the NMS after min_mask_region_area uses max(box_nms_thresh, it)
CROP_NMS_THRESH = 0.7
#: low-res logits this far below the lowest counted threshold still widen the upsampled block, so
#: float rounding of the convex combinations never hides a counted pixel outside it
BLOCK_MARGIN = 1e-3

Progress = Callable[[int, int], None]


@dataclass
class EverythingResult:
    """The records (upstream's list of dicts, in its order) and how many masks each step kept."""

    records: List[Dict[str, Any]]
    counts: Dict[str, int] = field(
        default_factory=dict
    )  # points, masks, nonfinite, pred_iou, stability, nms, min_region
    timings_s: Dict[str, float] = field(default_factory=dict)  # encoder, decoder, filter, nms


# --- the pieces, each upstream's semantics ---------------------------------------------------------
def point_grid(points_per_side: int) -> np.ndarray:
    """[n^2, 2] (x, y) in 0..1: the centres of an n x n grid of cells, x varying fastest."""
    n = int(points_per_side)
    centres = (np.arange(n, dtype=np.float64) + 0.5) / n
    xs, ys = np.meshgrid(centres, centres)
    return np.stack([xs.ravel(), ys.ravel()], axis=-1)


def stability_score(logits: np.ndarray, threshold: float, offset: float) -> np.ndarray:
    """[..., H, W] logits -> [...] float32: pixels above threshold + offset over pixels above
    threshold - offset (NaN where neither has any, as upstream's 0 / 0)."""
    inner = np.count_nonzero(logits > threshold + offset, axis=(-2, -1)).astype(np.float32)
    outer = np.count_nonzero(logits > threshold - offset, axis=(-2, -1)).astype(np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):
        return inner / outer


def mask_box(mask: np.ndarray) -> List[int]:
    """[x0, y0, x1, y1] of a 2-D mask with inclusive edges (upstream's batched_mask_to_box);
    [0, 0, 0, 0] when empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return [0, 0, 0, 0]
    cols = np.flatnonzero(mask.any(axis=0))
    return [int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])]


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """torchvision's nms on one class: indices kept, highest score first. IoU in float32 as
    (x1 - x0) * (y1 - y0) areas, a box dropped when its IoU with a kept one is > iou_threshold;
    equal scores in index order (see the module doc); NaN scores first, as PyTorch sorts them."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    scores = np.asarray(scores, np.float64).ravel()
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    order = np.argsort(-np.where(np.isnan(scores), np.inf, scores), kind="stable")
    x0, y0, x1, y1 = (boxes[:, k] for k in range(4))
    areas = (x1 - x0) * (y1 - y0)
    suppressed = np.zeros(len(boxes), bool)
    keep = []
    zero = np.float32(0)
    for position, i in enumerate(order):
        if suppressed[i]:
            continue
        keep.append(i)
        rest = order[position + 1 :]
        rest = rest[~suppressed[rest]]
        if rest.size == 0:
            continue
        w = np.maximum(zero, np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]))
        h = np.maximum(zero, np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]))
        inter = w * h
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = inter / (areas[i] + areas[rest] - inter)  # 0 / 0 (two empty boxes) is NaN: kept
        suppressed[rest[iou.astype(np.float64) > iou_threshold]] = True
    return np.asarray(keep, np.int64)


def remove_small_regions(mask: np.ndarray, area: float, mode: str) -> Tuple[np.ndarray, bool]:
    """Upstream's remove_small_regions with scipy's 8-connected labelling: mode "holes" fills the
    regions outside the mask smaller than `area`; "islands" drops the mask's regions smaller than
    it (keeping the largest where all are). Returns (mask, changed)."""
    from scipy import ndimage

    if mode not in ("holes", "islands"):
        raise ValueError(f"mode {mode!r} is not holes or islands")
    holes = mode == "holes"
    working = np.logical_xor(holes, mask)
    regions, count = ndimage.label(working, structure=np.ones((3, 3), bool))
    sizes = np.bincount(regions.ravel(), minlength=count + 1)[1:]
    small = np.flatnonzero(sizes < area) + 1
    if small.size == 0:
        return mask, False
    if holes:
        fill = np.concatenate(([0], small))
    else:
        fill = np.setdiff1d(np.arange(1, count + 1), small)
        if fill.size == 0:
            fill = np.asarray([int(np.argmax(sizes)) + 1])
    return np.isin(regions, fill), True


# --- the pipeline --------------------------------------------------------------------------------
@dataclass
class _Candidate:
    rle: Dict[str, Any]
    box: List[int]  # x0, y0, x1, y1 inclusive
    area: int
    iou: float
    stability: float
    point: List[float]


class _Upsampler:
    """Low-res logits -> the full-size logits of the block that can hold counted pixels.

    Each full-size row (column) is a few low-res rows (columns) weighted: the two bilinear
    resizes of postprocess_masks compose to at most a handful of taps per output pixel, so the
    matrices of sam_transforms.mask_matrices are applied as gathers of their non-zero taps
    instead of dense products (the same weights, a few multiply-adds per pixel instead of 256)."""

    def __init__(self, rows: np.ndarray, cols: np.ndarray, floor: float) -> None:
        self.floor = floor - BLOCK_MARGIN
        self.row_taps, self.col_taps = _taps(rows), _taps(cols)
        # full-size rows/cols a low-res row/col reaches: the first and last with a non-zero weight
        self.row_span, self.col_span = _reach(rows), _reach(cols)

    def block(self, low: np.ndarray) -> Optional[Tuple[np.ndarray, int, int]]:
        """(logits of the block, its first row, its first col), or None when no full-size logit
        can exceed the floor."""
        above = low > self.floor
        low_rows = np.flatnonzero(above.any(axis=1))
        if low_rows.size == 0:
            return None
        low_cols = np.flatnonzero(above.any(axis=0))
        r0, r1 = int(low_rows[0]), int(low_rows[-1]) + 1
        c0, c1 = int(low_cols[0]), int(low_cols[-1]) + 1
        top, bottom = int(self.row_span[0][r0:r1].min()), int(self.row_span[1][r0:r1].max()) + 1
        left, right = int(self.col_span[0][c0:c1].min()), int(self.col_span[1][c0:c1].max()) + 1
        if bottom <= top or right <= left:
            return None
        # the block reads every low-res row/col with weight in it (not only those above the floor)
        row_index, row_weight = (t[top:bottom] for t in self.row_taps)
        col_index, col_weight = (t[left:right] for t in self.col_taps)
        first = int(col_index.min())
        part = low[:, first : int(col_index.max()) + 1]
        col_index = col_index - first
        tall = row_weight[:, :1] * part[row_index[:, 0]]
        for k in range(1, row_index.shape[1]):
            tall += row_weight[:, k : k + 1] * part[row_index[:, k]]
        logits = tall[:, col_index[:, 0]] * col_weight[:, 0]
        for k in range(1, col_index.shape[1]):
            logits += tall[:, col_index[:, k]] * col_weight[:, k]
        return logits, top, left


def _taps(matrix: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """A [out, in] weight matrix as (index [out, K], weight [out, K] float32): each row's non-zero
    columns, padded with weight 0."""
    nonzero = matrix != 0
    width = max(1, int(nonzero.sum(axis=1).max()))
    index = np.zeros((matrix.shape[0], width), np.int64)
    weight = np.zeros((matrix.shape[0], width), np.float32)
    for i, row in enumerate(nonzero):
        cols = np.flatnonzero(row)
        index[i, : cols.size] = cols
        index[i, cols.size :] = cols[0] if cols.size else 0
        weight[i, : cols.size] = matrix[i, cols]
    return index, weight


def _reach(matrix: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Per column of a [out, in] weight matrix: the first and last output row with a non-zero
    weight on it (a column nobody reads: first > last)."""
    nonzero = matrix != 0
    out = matrix.shape[0]
    first = np.where(nonzero.any(axis=0), nonzero.argmax(axis=0), out)
    last = np.where(nonzero.any(axis=0), out - 1 - nonzero[::-1].argmax(axis=0), -1)
    return first, last


def _encode(mask_block: np.ndarray, top: int, left: int, size: Tuple[int, int]) -> Dict[str, Any]:
    full = np.zeros(size, bool)
    full[top : top + mask_block.shape[0], left : left + mask_block.shape[1]] = mask_block
    return rle.encode(full)


def _batch_candidates(
    low_res: np.ndarray, iou: np.ndarray, points: np.ndarray, params: EverythingParams, upsampler, size, counts
) -> List[_Candidate]:
    """One decoder batch (low_res [B, 3, 256, 256], iou [B, 3], points [B, 2]) -> its masks that
    pass the IoU and stability filters."""
    low = low_res.reshape(-1, *low_res.shape[-2:])
    scores = iou.reshape(-1).astype(np.float32)
    where = np.repeat(points, iou.shape[1], axis=0)
    counts["masks"] += len(scores)
    finite = np.isfinite(scores) & np.isfinite(low).all(axis=(-2, -1))
    counts["nonfinite"] += int(np.count_nonzero(~finite))
    keep = np.arange(len(scores))
    if params.pred_iou_thresh > 0.0:
        keep = keep[scores > np.float32(params.pred_iou_thresh)]
    counts["pred_iou"] += len(keep)
    offset = params.stability_score_offset
    found = []
    for k in keep:
        block = upsampler.block(low[k])
        if block is None:
            logits, top, left = np.zeros((0, 0), np.float32), 0, 0
        else:
            logits, top, left = block
        stability = stability_score(logits, MASK_THRESHOLD, offset)[()]
        if params.stability_score_thresh > 0.0 and not stability >= np.float32(params.stability_score_thresh):
            continue
        mask = logits > MASK_THRESHOLD
        x0, y0, x1, y1 = mask_box(mask)
        box = [x0 + left, y0 + top, x1 + left, y1 + top] if mask.any() else [0, 0, 0, 0]
        found.append(
            _Candidate(
                _encode(mask, top, left, size),
                box,
                int(np.count_nonzero(mask)),
                float(scores[k]),
                float(stability),
                [float(v) for v in where[k]],
            )
        )
    counts["stability"] += len(found)
    return found


def _small_regions(kept: List[_Candidate], min_area: int, nms_thresh: float) -> List[_Candidate]:
    """Upstream's postprocess_small_regions: fix holes and islands, then NMS preferring the
    unchanged masks (score 1) over the changed (score 0)."""
    masks, unchanged = [], []
    for c in kept:
        mask, changed_holes = remove_small_regions(rle.decode(c.rle), min_area, "holes")
        mask, changed_islands = remove_small_regions(mask, min_area, "islands")
        masks.append(mask)
        unchanged.append(not (changed_holes or changed_islands))
    boxes = np.asarray([mask_box(m) for m in masks], np.float32).reshape(-1, 4)
    order = nms(boxes, np.asarray(unchanged, np.float64), nms_thresh)
    out = []
    for i in order:
        c = kept[i]
        if not unchanged[i]:
            size = masks[i].shape
            c = dataclasses.replace(
                c,
                rle=_encode(masks[i].astype(np.uint8), 0, 0, size),
                box=[int(v) for v in boxes[i]],
                area=int(np.count_nonzero(masks[i])),
            )
        out.append(c)
    return out


def generate(predictor, picture, params: Optional[EverythingParams] = None, progress: Optional[Progress] = None):
    """Every mask of `picture` (path, PIL image or H x W x 3 uint8) by a SamPredictor with a
    multimask decoder: an EverythingResult. `progress(points done, points in all)` after each batch."""
    from . import sam_transforms as T
    from .sam_predictor import Prompts

    params = params or EverythingParams()
    params.check()
    if not predictor.multimask:
        raise BadInput(
            f"{predictor.artifact.name}'s decoder gives one mask per prompt (single head): segment-everything "
            "needs SAM's three masks per point",
            "export with --head multimask",
        )
    timings = {"encoder": 0.0, "decoder": 0.0, "filter": 0.0, "nms": 0.0}
    start = time.perf_counter()
    predictor.set_image(picture)
    timings["encoder"] = time.perf_counter() - start
    height, width = predictor.original_size
    points = point_grid(params.points_per_side) * np.asarray([width, height], np.float64)
    rows, cols = T.mask_matrices((height, width))
    upsampler = _Upsampler(rows, cols, MASK_THRESHOLD - params.stability_score_offset)
    step = min(params.points_per_batch, predictor.max_prompts or params.points_per_batch)
    counts = {"points": len(points), "masks": 0, "nonfinite": 0, "pred_iou": 0, "stability": 0}
    candidates: List[_Candidate] = []
    for first in range(0, len(points), step):
        batch = points[first : first + step]
        mark = time.perf_counter()
        prompts = Prompts(batch[:, None, :], np.ones((len(batch), 1)), None, None)
        low_res, iou = predictor._decode(prompts, True)  # low-res only: nothing is upsampled yet
        timings["decoder"] += time.perf_counter() - mark
        mark = time.perf_counter()
        candidates += _batch_candidates(low_res, iou, batch, params, upsampler, (height, width), counts)
        timings["filter"] += time.perf_counter() - mark
        if progress is not None:
            progress(first + len(batch), len(points))
    mark = time.perf_counter()
    boxes = np.asarray([c.box for c in candidates], np.float32).reshape(-1, 4)
    kept = [candidates[i] for i in nms(boxes, np.asarray([c.iou for c in candidates]), params.box_nms_thresh)]
    counts["nms"] = len(kept)
    if params.min_mask_region_area > 0 and kept:
        kept = _small_regions(kept, params.min_mask_region_area, max(params.box_nms_thresh, CROP_NMS_THRESH))
        counts["min_region"] = len(kept)
    timings["nms"] = time.perf_counter() - mark
    records = [_record(c, params.output_mode, (height, width)) for c in kept]
    timings["total"] = time.perf_counter() - start
    return EverythingResult(records, counts, {k: round(v, 4) for k, v in timings.items()})


def _record(c: _Candidate, output_mode: str, size: Tuple[int, int]) -> Dict[str, Any]:
    x0, y0, x1, y1 = c.box
    return {
        "segmentation": c.rle if output_mode == "coco_rle" else rle.decode(c.rle),
        "area": c.area,
        "bbox": [x0, y0, x1 - x0, y1 - y0],  # upstream's XYWH of its inclusive box
        "predicted_iou": c.iou,
        "point_coords": [c.point],
        "stability_score": c.stability,
        "crop_box": [0, 0, int(size[1]), int(size[0])],
    }
