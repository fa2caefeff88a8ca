"""Label agreement between two sets of [N, C, H, W] logits, on cases with a known answer.

The labels are the argmax over the class axis (1). Over the batch axis (0) a batch-1 output
has every label 0 and agrees 100% with anything; these cases change a known fraction of labels
so that the figure itself is checked, at batch 1 and at batch 2, and with C == N == 2, where a
wrong axis does not even change the shapes.
"""

from __future__ import annotations

import numpy as np
import pytest

from msla_deploy.parity.budgets import FP32
from msla_deploy.parity.metrics import compare_outputs


def _with_changed_labels(reference: np.ndarray, changed_per_sample, seed: int = 0) -> np.ndarray:
    """A copy of `reference` where, in sample n, `changed_per_sample[n]` pixels (chosen at random)
    take the next class: that class's logit is raised above the pixel's maximum."""
    rng = np.random.default_rng(seed)
    _, classes, height, width = reference.shape
    candidate = reference.copy()
    labels = reference.argmax(axis=1)
    for n, count in enumerate(changed_per_sample):
        for flat in rng.choice(height * width, size=count, replace=False):
            h, w = divmod(int(flat), width)
            candidate[n, (labels[n, h, w] + 1) % classes, h, w] = reference[n, :, h, w].max() + 1.0
    return candidate


@pytest.mark.parametrize(
    "shape, changed",
    [
        ((1, 5, 8, 8), [16]),  # batch 1: a quarter of the pixels
        ((2, 5, 4, 8), [4, 12]),  # batch 2: 16 of 64, unevenly between the samples
        ((2, 2, 4, 8), [0, 8]),  # C == N: argmax over the wrong axis keeps the shapes
    ],
    ids=["batch1", "batch2", "batch2-two-classes"],
)
def test_argmax_agreement_is_the_fraction_of_unchanged_labels(shape, changed):
    reference = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    candidate = _with_changed_labels(reference, changed)
    batch, _, height, width = shape
    expected = 1.0 - sum(changed) / (batch * height * width)
    # the construction did what it says, counted independently of the code under test
    assert int((reference.argmax(axis=1) != candidate.argmax(axis=1)).sum()) == sum(changed)

    parity = compare_outputs("logits", reference, candidate, FP32)
    assert parity.argmax_agreement == pytest.approx(expected)
    assert parity.miou < 1.0
    assert any("argmax" in failure for failure in parity.failures)  # 0.75..0.875 < 0.999

    same = compare_outputs("logits", reference, reference.copy(), FP32)
    assert same.argmax_agreement == 1.0 and same.miou == 1.0 and same.passed


# --- one IoU (iou.py), one semantics: the edge cases --------------------------------

from msla_deploy.artifact.names import LABELS_NAME  # noqa: E402
from msla_deploy.export import int8_sensitivity  # noqa: E402
from msla_deploy.iou import NO_LABEL, Confusion, labels_of  # noqa: E402
from msla_deploy.parity import metrics  # noqa: E402
from msla_deploy.parity.metrics import class_iou, cosine_similarity  # noqa: E402


def test_nothing_scored_has_no_miou_anywhere():
    """Empty input: no pixel, or every pixel ignored. mIoU and accuracy are None (not 1.0: an
    empty comparison proves nothing), in evaluate's tally and in parity's comparison alike."""
    empty = Confusion(3)
    empty.add(np.zeros((0,), np.uint8), np.zeros((0,), np.int64))
    assert empty.miou() is None and empty.pixel_accuracy() is None and empty.iou() == [None] * 3
    ignored = Confusion(3)
    ignored.add(np.full((2, 2), 255, np.uint8), np.zeros((2, 2), np.int64))
    assert ignored.miou() is None and ignored.matrix.sum() == 0
    assert [r["iou"] for r in class_iou(np.zeros((1, 0)), np.zeros((1, 0)), 3)] == [None] * 3
    for name, array in ((LABELS_NAME, np.zeros((1, 0, 4), np.int32)), ("logits", np.zeros((1, 3, 0, 4), np.float32))):
        p = compare_outputs(name, array, array.copy(), FP32)
        assert p.miou is None and p.argmax_agreement is None  # no pixel: no label judged
    assert compare_outputs(LABELS_NAME, np.zeros((1, 0, 4), np.int32), np.zeros((1, 0, 4), np.int32), FP32).passed


def test_nan_logits_give_no_label_and_count_against_the_truth():
    logits = np.zeros((1, 3, 1, 4), np.float32)
    logits[0, 0, 0, :2] = logits[0, 1, 0, 2:] = 1.0  # labels 0 0 1 1
    broken = logits.copy()
    broken[0, 2, 0, 0] = np.nan  # pixel 0: no label (numpy's argmax would say class 2)
    assert broken.argmax(axis=1)[0, 0, 0] == 2
    np.testing.assert_array_equal(labels_of(broken), [[[NO_LABEL, 0, 1, 1]]])
    confusion = Confusion(3)
    confusion.add(np.array([0, 0, 1, 1]), labels_of(broken).ravel())
    # class 0: 1 right of 2 (the NaN pixel is in its union only); class 1: 2 of 2; class 2: nowhere
    assert confusion.iou() == [0.5, 1.0, None] and confusion.miou() == 0.75 and confusion.pixel_accuracy() == 0.75
    assert confusion.unlabelled.tolist() == [1, 0, 0] and confusion.predicted_pixels.tolist() == [1, 2, 0]
    p = compare_outputs("logits", logits, broken, FP32)
    assert p.miou == 0.75 and [r["iou"] for r in p.class_iou] == [0.5, 1.0, None] and p.argmax_agreement == 0.75
    assert p.class_iou[2]["candidate_pixels"] == 0  # not counted as a prediction of another class


def test_one_class():
    confusion = Confusion(1, ignore_index=None)
    confusion.add(np.zeros(4, np.int64), np.zeros(4, np.int64))
    assert confusion.miou() == 1.0
    confusion.add(np.zeros(4, np.int64), np.array([0, 0, 0, NO_LABEL]))  # a pixel without a label
    assert confusion.miou() == pytest.approx(7 / 8) and confusion.pixel_accuracy() == pytest.approx(7 / 8)
    ref = np.zeros((1, 2, 3), np.int32)  # a labels output of one class: a broken value counts as wrong
    assert compare_outputs(LABELS_NAME, ref, ref.copy(), FP32).miou == 1.0
    cand = ref.copy()
    cand[0, 0, 0] = 5
    assert compare_outputs(LABELS_NAME, ref, cand, FP32).miou == pytest.approx(5 / 6)


def test_a_class_absent_from_both_is_left_out_of_the_mean():
    truth = np.array([0, 0, 1, 1, 3, 3])
    pred = np.array([0, 1, 1, 1, 3, 3])
    confusion = Confusion(4)
    confusion.add(truth, pred)
    assert confusion.iou() == [0.5, pytest.approx(2 / 3), None, 1.0]  # class 2: in neither, no IoU (not 0, not 1)
    assert confusion.miou() == pytest.approx((0.5 + 2 / 3 + 1.0) / 3)
    rows = class_iou(truth, pred, 4)
    assert [r["iou"] for r in rows] == confusion.iou() and rows[2]["change"] is None


def test_parity_and_evaluate_share_the_implementation():
    rng = np.random.default_rng(3)
    ref, cand = rng.integers(0, 6, (2, 9, 11)), rng.integers(-2, 8, (2, 9, 11))  # some candidates outside the classes
    rows = class_iou(ref, cand, 6)
    confusion = Confusion(6, ignore_index=None)
    confusion.add(ref, cand)
    assert [r["iou"] for r in rows] == confusion.iou()
    assert [r["reference_pixels"] for r in rows] == np.bincount(ref.ravel(), minlength=6).tolist()
    assert not hasattr(metrics, "mean_iou")  # the second implementation is gone


def test_confusion_counts_labels_outside_the_classes_as_no_class():
    confusion = Confusion(3)
    confusion.add(np.array([0, 1, 2, 2, 255], np.uint8), np.array([0, 7, -5, 2, 1], np.int32))
    assert confusion.matrix.trace() == 2 and confusion.unlabelled.tolist() == [0, 1, 1]
    with pytest.raises(ValueError, match="out of range"):
        confusion.add(np.array([-1, 0], np.int64), np.array([0, 0]))


# --- one cosine (parity/metrics.py) ----------------------------------------------------------------


def test_cosine_edge_cases():
    a = np.array([1.0, 2.0, 3.0], np.float32)
    assert cosine_similarity(a, a.copy()) == 1.0  # identical: exactly 1 (rounding clipped)
    assert cosine_similarity(a, -a) == -1.0
    assert cosine_similarity(a, 2 * a) == pytest.approx(1.0)
    assert cosine_similarity(np.zeros(3), np.zeros(3)) == 1.0  # both zero: identical
    assert cosine_similarity(np.zeros(3), a) == 0.0 and cosine_similarity(a, np.zeros(3)) == 0.0
    for bad in (np.nan, np.inf, -np.inf):
        broken = a.copy()
        broken[1] = bad
        assert np.isnan(cosine_similarity(a, broken)) and np.isnan(cosine_similarity(broken, a))
    assert np.isnan(cosine_similarity(np.zeros(3), np.array([0.0, np.nan, 0.0])))  # NaN wins over "zero"
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((2, 3, 4, 5))
    assert cosine_similarity(x, y) == pytest.approx(
        float(np.dot(x.ravel(), y.ravel()) / (np.linalg.norm(x) * np.linalg.norm(y)))
    )


def test_int8_sensitivity_uses_the_one_cosine():
    assert int8_sensitivity.cosine_similarity is cosine_similarity and not hasattr(int8_sensitivity, "cosine")
