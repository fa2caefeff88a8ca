"""SamPredictor (torch-free) against upstream's predictor steps in PyTorch (tests/runtime/sam_torch.py)
on the same seeded weights: boxes, points, several prompts, box + points and a refinement round,
masks at the picture's size by IoU, scores by absolute error; prompts split over decoder calls;
the one-line refusals; and a run with torch blocked."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from msla_deploy.errors import BadInput
from msla_deploy.runtime.sam_predictor import SamPredictor
from tests.fixtures import BLOCK_TORCH, REPO
from tests.runtime import sam_torch

#: an odd-sized landscape picture: 333 x 501 (the prompt frame is 666 x 1024, the encoder's 333 x 512)
SIZE = (333, 501)
BOXES = [[40.0, 30.5, 260.25, 250.0], [300.0, 100.0, 480.0, 320.0]]
POINTS = [[120.5, 140.0], [400.0, 60.75]]


def _picture() -> np.ndarray:
    """Smooth seeded colour fields (8-pixel blocks of tests/zoo/sam_golden's picture) cut to SIZE."""
    from tests.zoo import sam_golden

    pixels = sam_golden.make_pixels(1024)  # [3, 96, 128]
    full = np.repeat(np.repeat(pixels, sam_golden.BLOCK, axis=1), sam_golden.BLOCK, axis=2)
    return np.ascontiguousarray(full.transpose(1, 2, 0)[: SIZE[0], : SIZE[1]])


@pytest.fixture(scope="module")
def picture():
    return _picture()


@pytest.fixture(scope="module")
def sam(sam_artifact, picture):
    with SamPredictor(sam_artifact, "ort-cpu") as predictor:
        predictor.set_image(picture)
        yield predictor


@pytest.fixture(scope="module")
def model():
    from msla_deploy.zoo.sam import build_sam
    from tests.zoo import sam_golden

    return sam_golden.fill_model(build_sam("efficientvit-sam-l0"))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def _agree(ours, theirs) -> None:
    masks, scores, low_res = ours
    ref_masks, ref_scores, ref_low = theirs
    assert masks.shape == ref_masks.shape and masks.dtype == bool
    assert scores.shape == ref_scores.shape and scores.dtype == np.float32 and low_res.dtype == np.float32
    assert low_res.shape == ref_low.shape
    ious = [_iou(masks[b, m], ref_masks[b, m]) for b in range(masks.shape[0]) for m in range(masks.shape[1])]
    assert min(ious) >= 0.99, ious
    np.testing.assert_allclose(scores, ref_scores, atol=1e-3, rtol=0)
    # something to segment: neither empty nor the whole picture
    assert 0.01 < ref_masks.mean() < 0.99


def test_boxes_match_upstream(sam, model, picture):
    ours = sam.predict(boxes=BOXES, multimask=False)
    _agree(ours, sam_torch.predict(model, picture, boxes=BOXES, multimask=False))
    assert ours[0].shape == (2, 1, *SIZE)


def test_one_box_multimask_matches_upstream(sam, model, picture):
    ours = sam.predict(boxes=BOXES[0])  # one box as [4]: one prompt, three masks
    _agree(ours, sam_torch.predict(model, picture, boxes=[BOXES[0]], multimask=True))
    assert ours[0].shape == (1, 3, *SIZE) and ours[2].shape == (1, 3, 256, 256)


def test_points_match_upstream(sam, model, picture):
    ours = sam.predict(points=POINTS, labels=[1, 0])  # [N, 2] + [N]: one prompt
    _agree(ours, sam_torch.predict(model, picture, points=[POINTS], labels=[[1, 0]], multimask=True))


def test_prompts_of_points_and_a_box_with_points_match_upstream(sam, model, picture):
    points, labels = [[POINTS[0]], [POINTS[1]]], [[1], [1]]
    ours = sam.predict(points=points, labels=labels, multimask=False)
    _agree(ours, sam_torch.predict(model, picture, points=points, labels=labels, multimask=False))
    ours = sam.predict(points=points, labels=labels, boxes=BOXES, multimask=False)
    _agree(ours, sam_torch.predict(model, picture, points=points, labels=labels, boxes=BOXES, multimask=False))


def test_refinement_round_matches_upstream(sam, model, picture):
    _, scores, low_res = sam.predict(points=[POINTS[0]], labels=[1])
    best = int(scores[0].argmax())
    mask_input = low_res[0, best][None]  # [1, 256, 256], a previous round's logits
    ours = sam.predict(points=POINTS, labels=[1, 0], mask_input=mask_input, multimask=False)
    theirs = sam_torch.predict(
        model, picture, points=[POINTS], labels=[[1, 0]], mask_input=mask_input[None], multimask=False
    )
    _agree(ours, theirs)
    # the mask input changes the answer (it is fed, not ignored)
    plain = sam.predict(points=POINTS, labels=[1, 0], multimask=False)
    assert np.abs(plain[2] - ours[2]).max() > 1e-2


def test_return_logits_are_the_masks_before_the_threshold(sam):
    masks, _, _ = sam.predict(boxes=BOXES, multimask=False)
    logits, _, _ = sam.predict(boxes=BOXES, multimask=False, return_logits=True)
    assert logits.dtype == np.float32 and logits.shape == masks.shape
    assert np.array_equal(logits > 0, masks)


def test_more_prompts_than_the_profile_run_as_several_calls(sam, monkeypatch):
    boxes = [[10.0 + 20 * i, 10.0 + 10 * i, 200.0 + 20 * i, 150.0 + 15 * i] for i in range(5)]
    whole = sam.predict(boxes=boxes, multimask=False)
    calls = []
    run = sam.decoder.run
    monkeypatch.setattr(sam, "max_prompts", 2)
    monkeypatch.setattr(sam.decoder, "run", lambda feeds: calls.append(len(feeds["point_coords"])) or run(feeds))
    split = sam.predict(boxes=boxes, multimask=False)
    assert calls == [2, 2, 1]
    assert np.array_equal(split[0], whole[0])
    np.testing.assert_allclose(split[1], whole[1], atol=1e-6)


def test_describe_and_profile(sam):
    described = sam.describe()
    assert described["image_size"] == 512 and described["head"] == "multimask"
    assert (sam.max_prompts, sam.max_points) == (64, 16) and sam.original_size == SIZE


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "no prompt"),
        ({"boxes": [[300, 10, 100, 50]]}, "x1 < x0"),
        ({"boxes": [[10, 50, 100, 20]]}, "y1 < y0"),
        ({"boxes": [[10, 10, 600, 50]]}, "outside the 501x333 picture"),
        ({"points": [[-1, 10]], "labels": [1]}, "outside the 501x333 picture"),
        ({"points": [[10, 334]], "labels": [1]}, "outside"),
        ({"points": [[10, 10]]}, "need labels"),
        ({"points": [[10, 10]], "labels": [2]}, "not 1 (foreground)"),
        ({"points": [[10, 10], [20, 20]], "labels": [1]}, "do not match"),
        ({"points": [[[10, 10]]] * 3, "labels": [[1]] * 3, "boxes": BOXES}, "2 box(es) and 3 prompt(s)"),
        ({"points": [[10, 10]] * 16, "labels": [1] * 16}, "17 decoder points, above its profile's maximum of 16"),
        ({"points": [[10, 10]] * 15, "labels": [1] * 15, "boxes": [BOXES[0]]}, "17 decoder points"),
        ({"boxes": [[float("nan"), 0, 10, 10]]}, "NaN or Inf"),
        ({"boxes": [BOXES[0]], "mask_input": np.zeros((1, 64, 64))}, "mask_input of shape"),
    ],
)
def test_bad_prompts_are_one_line(sam, kwargs, message):
    with pytest.raises(BadInput) as caught:
        sam.predict(**kwargs)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_points_up_to_the_profile_are_taken(sam):
    masks, _, _ = sam.predict(points=[[10 + i, 10 + i] for i in range(15)], labels=[1] * 15, multimask=False)
    assert masks.shape == (1, 1, *SIZE)


def test_predict_before_set_image(sam_artifact):
    with SamPredictor(sam_artifact, "ort-cpu") as predictor:
        with pytest.raises(BadInput, match="predict before set_image"):
            predictor.predict(boxes=BOXES)


def _retasked(sam_artifact, tmp_path, task: str):
    copy = tmp_path / "copy"
    shutil.copytree(sam_artifact, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["model"]["task"] = task
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


def test_other_tasks_are_refused_both_ways(sam_artifact, tmp_path):
    from msla_deploy import Classifier, Segmenter

    with pytest.raises(BadInput, match="a SamPredictor runs promptable segmentation"):
        SamPredictor(_retasked(sam_artifact, tmp_path, "segmentation"))
    for runner in (Segmenter, Classifier):
        with pytest.raises(BadInput, match="use msla_deploy.SamPredictor"):
            runner(sam_artifact, "ort-cpu")


def test_unknown_backends_are_refused(sam_artifact):
    # (torch runs both graphs: runtime/torch_sam.py, proven in tests/evaluate/test_evaluate_sam.py)
    with pytest.raises(BadInput, match="a SAM model runs on .*trt, torch"):
        SamPredictor(sam_artifact, "ort-gpu")


def test_exported_lazily_from_the_package():
    import msla_deploy

    assert msla_deploy.SamPredictor is SamPredictor and "SamPredictor" in msla_deploy.__all__


RUN_WITHOUT_TORCH = (
    BLOCK_TORCH
    + """
import numpy as np
from msla_deploy import SamPredictor
with SamPredictor(sys.argv[1], "ort-cpu") as sam:
    sam.set_image(np.full((40, 60, 3), 128, np.uint8))
    masks, scores, low_res = sam.predict(boxes=[[5, 5, 30, 30]], multimask=False)
    assert masks.shape == (1, 1, 40, 60) and scores.shape == (1, 1) and low_res.shape == (1, 1, 256, 256)
assert not [m for m in sys.modules if m == "torch" or m.startswith("torch.")], "torch got imported"
print("ok")
"""
)


def test_runs_without_torch(sam_artifact):
    result = subprocess.run(
        [sys.executable, "-c", RUN_WITHOUT_TORCH, str(sam_artifact)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
