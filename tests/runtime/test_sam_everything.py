"""Segment-everything (runtime/sam_everything.py): each filter against hand-worked cases, the whole
filtering against an oracle written from segment-anything's generator steps (every mask upsampled
first, then filtered) on synthetic decoder outputs, the block upsampling against the full one, and
the pipeline on the session's SAM export (a 4 x 4 grid, thresholds 0: cheap)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from pycocotools import mask as coco_mask

from msla_deploy.errors import BadInput
from msla_deploy.everything_params import EverythingParams
from msla_deploy.runtime import sam_everything as E
from msla_deploy.runtime import sam_transforms as T
from msla_deploy.runtime.sam_predictor import SamPredictor

KEYS = {"segmentation", "area", "bbox", "predicted_iou", "point_coords", "stability_score", "crop_box"}


def _decode(rle) -> np.ndarray:
    return coco_mask.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)


# --- the pieces, by hand ---------------------------------------------------------------------
def test_point_grid_is_cell_centres_x_first():
    assert E.point_grid(2).tolist() == [[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]]
    assert E.point_grid(1).tolist() == [[0.5, 0.5]]


def test_stability_score_counts_above_both_cut_offs():
    logits = np.array([[[2.0, 0.5], [-0.5, -2.0]], [[1.0, -1.0], [3.0, 3.0]]], np.float32)
    # first: > 1 one pixel, > -1 three pixels; second: > 1 two (1.0 is not above 1), > -1 three
    assert E.stability_score(logits, 0.0, 1.0).tolist() == pytest.approx([1 / 3, 2 / 3])
    assert math.isnan(float(E.stability_score(np.full((2, 2), -5.0), 0.0, 1.0)))  # 0 / 0, as upstream


def test_mask_box_has_inclusive_edges():
    mask = np.zeros((10, 20), bool)
    mask[2:5, 3:9] = True
    assert E.mask_box(mask) == [3, 2, 8, 4]  # upstream's batched_mask_to_box: the last pixel, not one past
    assert E.mask_box(np.zeros((4, 4), bool)) == [0, 0, 0, 0]


@pytest.mark.parametrize(
    "boxes, scores, threshold, kept",
    [
        # IoU of the first two: 9 x 9 / (100 + 100 - 81) = 0.68
        ([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], [0.9, 0.8, 0.7], 0.5, [0, 2]),
        ([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], [0.9, 0.8, 0.7], 0.7, [0, 1, 2]),
        ([[0, 0, 10, 10], [1, 1, 11, 11]], [0.5, 0.9], 0.5, [1]),  # the higher score wins
        ([[0, 0, 10, 10], [0, 0, 10, 5]], [0.9, 0.8], 0.5, [0, 1]),  # IoU 0.5 is not above 0.5
        ([[0, 0, 10, 10], [1, 1, 11, 11]], [0.8, 0.8], 0.5, [0]),  # equal scores: the first made wins
        ([[0, 0, 0, 0], [0, 0, 0, 0]], [0.9, 0.8], 0.1, [0, 1]),  # empty boxes: 0 / 0 suppresses nothing
        ([[0, 0, 5, 5], [50, 50, 60, 60], [70, 0, 80, 5]], [0.1, 0.9, 0.5], 0.5, [1, 2, 0]),  # by score
    ],
)
def test_nms_is_torchvisions(boxes, scores, threshold, kept):
    assert E.nms(np.asarray(boxes, np.float32), np.asarray(scores), threshold).tolist() == kept


def test_remove_small_regions_holes_then_islands():
    mask = np.zeros((8, 8), bool)
    mask[1:6, 1:6] = True
    mask[3, 3] = False  # a one-pixel hole
    mask[7, 7] = True  # a one-pixel island
    filled, changed = E.remove_small_regions(mask, 2, "holes")
    assert changed and filled[3, 3] and filled[7, 7] and filled.sum() == mask.sum() + 1
    cleaned, changed = E.remove_small_regions(filled, 2, "islands")
    assert changed and not cleaned[7, 7] and cleaned.sum() == 25
    same, changed = E.remove_small_regions(cleaned, 2, "islands")
    assert not changed and same is cleaned


def test_islands_are_eight_connected_and_the_largest_stays_when_all_are_small():
    mask = np.zeros((6, 6), bool)
    mask[0, 0] = mask[1, 1] = True  # diagonal neighbours: one region of 2
    mask[4, 4] = True
    out, changed = E.remove_small_regions(mask, 2, "islands")
    assert changed and out.sum() == 2 and out[0, 0] and out[1, 1]
    out, changed = E.remove_small_regions(mask, 10, "islands")  # all below: the largest is kept
    assert changed and out.sum() == 2 and out[0, 0]


@pytest.mark.parametrize("size", [(37, 53), (300, 170)])
def test_block_upsampling_is_the_full_one_where_it_counts(size):
    rows, cols = T.mask_matrices(size)
    upsampler = E._Upsampler(rows, cols, -1.0)
    rng = np.random.default_rng(size[0])
    yy, xx = np.mgrid[0:256, 0:256]
    for cy, cx, r in [(30, 40, 9), (5, 200, 30), (120, 120, 3)]:
        low = (r - np.hypot(yy - cy, xx - cx)).astype(np.float32) + rng.normal(0, 0.2, (256, 256)).astype(np.float32)
        full = T.postprocess_masks(low[None, None], size, return_logits=True)[0, 0]
        block = upsampler.block(low)
        if block is None:
            assert full.max() <= -1.0
            continue
        logits, top, left = block
        inside = full[top : top + logits.shape[0], left : left + logits.shape[1]]
        np.testing.assert_allclose(logits, inside, atol=1e-4)
        outside = full.copy()
        outside[top : top + logits.shape[0], left : left + logits.shape[1]] = -np.inf
        assert outside.max() <= -1.0  # nothing counted is left out


def test_params_are_checked_in_one_line():
    assert EverythingParams() == EverythingParams.from_kwargs()
    defaults = EverythingParams()
    assert (defaults.points_per_side, defaults.points_per_batch, defaults.pred_iou_thresh) == (32, 64, 0.88)
    assert (defaults.stability_score_thresh, defaults.stability_score_offset, defaults.box_nms_thresh) == (
        0.95,
        1.0,
        0.7,
    )
    for bad, words in [
        ({"points_per_side": 0}, "points_per_side 0"),
        ({"points_per_batch": 2.5}, "points_per_batch 2.5"),
        ({"pred_iou_thresh": 1.5}, "pred_iou_thresh 1.5 is outside 0..1"),
        ({"box_nms_thresh": float("nan")}, "box_nms_thresh nan"),
        ({"stability_score_offset": -1.0}, "stability_score_offset -1.0"),
        ({"min_mask_region_area": -3}, "min_mask_region_area -3"),
        ({"output_mode": "uncompressed_rle"}, "output_mode 'uncompressed_rle'"),
        ({"crop_n_layers": 1}, "no parameter 'crop_n_layers'"),
    ]:
        with pytest.raises(BadInput) as info:
            EverythingParams.from_kwargs(**bad)
        assert words in str(info.value) and "\n" not in str(info.value)


# --- the filtering against upstream's steps, on synthetic decoder outputs -----------------------
class FakePredictor:
    """A SamPredictor's surface for generate(): discs around each point as low-res logits, three
    per point (growing radius, slopes that make some unstable), predicted IoUs from the point."""

    multimask = True
    artifact = SimpleNamespace(name="fake")

    def __init__(self, size, max_prompts):
        self.size, self.max_prompts = size, max_prompts

    def set_image(self, picture):
        self.original_size = self.size

    def _decode(self, prompts, multimask):
        height, width = self.size
        in_h, in_w = T.preprocess_shape(height, width, 1024)
        yy, xx = np.mgrid[0:256, 0:256]
        low, iou = [], []
        for (x, y), _ in zip(prompts.points[:, 0], prompts.labels[:, 0]):
            cx, cy = x * in_w / width / 4, y * in_h / height / 4
            seed = int(x * 7 + y * 13) % 97
            masks = [(4 + 5 * k + seed % 5) - np.hypot(yy - cy, xx - cx) for k in range(3)]
            slopes = [0.3 + (seed % 3), 20.0, 0.7]
            low.append([(m * s).astype(np.float32) for m, s in zip(masks, slopes)])
            iou.append([0.5 + (seed % 10) / 20, 0.93 - (seed % 4) / 50, 0.9])
        return np.asarray(low, np.float32), np.asarray(iou, np.float32)


def upstream_oracle(predictor, params):
    """segment-anything's _process_batch then _process_crop, literally: every mask upsampled."""
    height, width = predictor.size
    points = E.point_grid(params.points_per_side) * np.array([width, height])
    step = min(params.points_per_batch, predictor.max_prompts)
    masks, ious, stabs, pts = [], [], [], []
    for start in range(0, len(points), step):
        batch = points[start : start + step]
        low, iou = predictor._decode(SimpleNamespace(points=batch[:, None], labels=np.ones((len(batch), 1))), True)
        full = T.postprocess_masks(low, (height, width), return_logits=True).reshape(-1, height, width)
        iou, where = iou.reshape(-1), np.repeat(batch, 3, axis=0)
        keep = iou > np.float32(params.pred_iou_thresh)
        full, iou, where = full[keep], iou[keep], where[keep]
        inner = (full > 1.0).sum(axis=(1, 2)).astype(np.float32)
        outer = (full > -1.0).sum(axis=(1, 2)).astype(np.float32)
        stab = inner / outer
        keep = stab >= np.float32(params.stability_score_thresh)
        masks += list(full[keep] > 0)
        ious += iou[keep].tolist()
        stabs += stab[keep].tolist()
        pts += where[keep].tolist()
    boxes = []
    for m in masks:
        ys, xs = np.nonzero(m)
        boxes.append([xs.min(), ys.min(), xs.max(), ys.max()] if len(xs) else [0, 0, 0, 0])
    order = sorted(range(len(ious)), key=lambda i: -ious[i])
    kept = []
    for i in order:  # greedy NMS in plain Python
        ok = True
        for j in kept:
            a, b = boxes[i], boxes[j]
            w = max(0, min(a[2], b[2]) - max(a[0], b[0]))
            h = max(0, min(a[3], b[3]) - max(a[1], b[1]))
            union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
            if union > 0 and w * h / union > params.box_nms_thresh:
                ok = False
                break
        if ok:
            kept.append(i)
    return [(masks[i], boxes[i], ious[i], stabs[i], pts[i]) for i in kept]


@pytest.mark.parametrize(
    "size, params",
    [
        ((60, 80), EverythingParams(points_per_side=4, points_per_batch=3)),
        ((91, 47), EverythingParams(points_per_side=4, pred_iou_thresh=0.6, stability_score_thresh=0.5)),
        ((50, 50), EverythingParams(points_per_side=3, pred_iou_thresh=0.0, stability_score_thresh=0.0)),
    ],
)
def test_filtering_matches_upstreams_steps(size, params):
    predictor = FakePredictor(size, max_prompts=7)
    expected = upstream_oracle(predictor, params)
    result = E.generate(predictor, None, params)
    assert len(result.records) == len(expected) > 0
    for record, (mask, box, iou, stab, point) in zip(result.records, expected):
        assert set(record) == KEYS
        got = _decode(record["segmentation"])
        assert np.count_nonzero(got != mask) <= 2  # a pixel at the threshold may round either way
        assert record["predicted_iou"] == pytest.approx(iou, abs=0) and record["point_coords"] == [point]
        assert record["stability_score"] == pytest.approx(stab, abs=2e-3)
        assert record["bbox"] == pytest.approx([box[0], box[1], box[2] - box[0], box[3] - box[1]], abs=1)
        assert record["area"] == int(got.sum()) and record["crop_box"] == [0, 0, size[1], size[0]]
    counts = result.counts
    assert counts["points"] == params.points_per_side**2 and counts["masks"] == 3 * counts["points"]
    assert counts["masks"] >= counts["pred_iou"] >= counts["stability"] >= counts["nms"] == len(expected)


def _candidate(mask: np.ndarray, iou: float) -> E._Candidate:
    return E._Candidate(
        E._encode(mask.astype(np.uint8), 0, 0, mask.shape), E.mask_box(mask), int(mask.sum()), iou, 1.0, [0.0, 0.0]
    )


def test_small_regions_are_fixed_and_nms_then_prefers_unchanged_masks():
    square = np.zeros((20, 30), bool)
    square[2:10, 2:10] = True
    holed = square.copy()
    holed[5, 5] = False  # fills to the square: changed, score 0
    other = np.zeros((20, 30), bool)
    other[12:18, 20:28] = True
    islanded = other.copy()
    islanded[0, 29] = True  # a far one-pixel island: removed, changed
    kept = E._small_regions([_candidate(holed, 0.9), _candidate(square, 0.8), _candidate(islanded, 0.7)], 3, 0.7)
    # the unchanged square first (score 1); the filled copy is the same box: suppressed; then the fixed one
    assert [c.iou for c in kept] == [0.8, 0.7]
    assert np.array_equal(_decode(kept[1].rle), other) and kept[1].area == 48 and kept[1].box == [20, 12, 27, 17]


# --- on the session's export ------------------------------------------------------------------
@pytest.fixture(scope="module")
def sam(sam_artifact):
    with SamPredictor(sam_artifact, "ort-cpu") as predictor:
        yield predictor


def test_everything_on_the_export(sam):
    image = np.random.default_rng(5).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    progress = []
    records = sam.everything(
        image,
        points_per_side=4,
        pred_iou_thresh=0.0,
        stability_score_thresh=0.0,
        progress=lambda done, total: progress.append((done, total)),
    )
    assert progress[-1] == (16, 16) and records
    scores = [r["predicted_iou"] for r in records]
    assert scores == sorted(scores, reverse=True)
    grid = (E.point_grid(4) * [64, 48]).tolist()
    # the predictor's own masks for the kept records' points (the picture is still set): one call
    masks, ious, _ = sam.predict(points=[r["point_coords"] for r in records], labels=[[1]] * len(records))
    for i, record in enumerate(records):
        assert set(record) == KEYS and record["crop_box"] == [0, 0, 64, 48]
        mask = _decode(record["segmentation"])
        assert record["segmentation"]["size"] == [48, 64] and record["area"] == int(mask.sum())
        if mask.any():
            ys, xs = np.nonzero(mask)
            assert record["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min(), ys.max() - ys.min()]
        assert record["point_coords"][0] in grid
        best = int(np.argmin([np.count_nonzero(m != mask) for m in masks[i]]))
        assert np.count_nonzero(masks[i, best] != mask) <= 3 and float(ious[i, best]) == record["predicted_iou"]


def test_binary_masks_are_the_rles_decoded():
    predictor = FakePredictor((40, 30), max_prompts=64)
    params = dict(points_per_side=3, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    rles = E.generate(predictor, None, EverythingParams(**params)).records
    binary = E.generate(predictor, None, EverythingParams(output_mode="binary_mask", **params)).records
    assert len(binary) == len(rles) > 0
    for a, b in zip(binary, rles):
        assert a["segmentation"].dtype == bool and np.array_equal(a["segmentation"], _decode(b["segmentation"]))


def test_everything_refuses_bad_parameters(sam):
    with pytest.raises(BadInput, match="points_per_side 0"):
        sam.everything(np.zeros((8, 8, 3), np.uint8), points_per_side=0)
