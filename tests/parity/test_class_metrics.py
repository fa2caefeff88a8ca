"""Parity of a classifier's outputs: top-1 agreement per picture and top-5 overlap, each against an
independent count, and the classification budgets' verdicts."""

from __future__ import annotations

import numpy as np
import pytest

from msla_deploy.parity.budgets import agreement_name, default_budget
from msla_deploy.parity.metrics import compare_outputs, top_classes, topk_overlap
from msla_deploy.tasks import CLASSIFICATION, SEGMENTATION

FP32 = default_budget("fp32", CLASSIFICATION)


def _scores(pictures: int = 20, classes: int = 50, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(pictures, classes)).astype(np.float32)


def test_the_classification_budgets_are_top1_based_and_segmentation_keeps_its_own():
    assert default_budget("fp32", CLASSIFICATION).min_argmax_agreement == 1.0
    assert default_budget("fp16", CLASSIFICATION).min_argmax_agreement == 0.995
    assert default_budget("int8", CLASSIFICATION).min_argmax_agreement == 0.98
    assert default_budget("fp32", SEGMENTATION).min_argmax_agreement == 0.999
    assert default_budget("fp32") == default_budget("fp32", SEGMENTATION)


def test_identical_scores_agree_everywhere():
    ref = _scores()
    p = compare_outputs("logits", ref, ref.copy(), FP32)
    assert p.argmax_agreement == 1.0 and p.topk_overlap == 1.0 and p.passed
    assert agreement_name(p) == "top-1 agreement"


def test_a_swapped_best_class_on_one_picture_is_counted_and_fails_fp32():
    ref = _scores()
    cand = ref.copy()
    best, second = np.argsort(-ref[3])[:2]
    cand[3, best], cand[3, second] = ref[3, second], ref[3, best]
    p = compare_outputs("logits", ref, cand, FP32)
    assert p.argmax_agreement == pytest.approx(19 / 20)
    # the same five classes, in another order: the overlap is whole
    assert p.topk_overlap == 1.0
    assert any("top-1 agreement 95.000% < 100%" in f for f in p.failures)


def test_top5_overlap_counts_shared_classes_whatever_their_order():
    ref = np.array([[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]])
    cand = np.array([[4, 3, 2, 1, 0], [5, 6, 7, 1, 2]])
    assert topk_overlap(ref, cand) == pytest.approx((5 / 5 + 3 / 5) / 2)


def test_top_classes_ranks_best_first_ties_to_the_lower_index_and_a_nan_row_has_no_ranking():
    scores = np.array([[0.1, 0.9, 0.9, 0.3], [np.nan, 1.0, 0.0, 0.0]], np.float32)
    ranked = top_classes(scores, 3)
    assert ranked[0].tolist() == [1, 2, 3]
    assert (ranked[1] == -1).all()


def test_nan_scores_disagree_and_fail():
    ref = _scores()
    cand = ref.copy()
    cand[0, 0] = np.nan
    p = compare_outputs("logits", ref, cand, FP32)
    assert p.argmax_agreement == pytest.approx(19 / 20) and p.nan_count == 1 and not p.passed


def test_topk_indices_are_judged_by_their_first_column_and_overlap():
    ref = np.array([[3, 1, 2, 0, 4], [1, 3, 2, 0, 4], [5, 1, 2, 0, 4], [7, 1, 2, 0, 4]], np.int32)
    cand = ref.copy()
    cand[1] = [3, 1, 2, 0, 4]  # the best two swapped
    cand[2] = [5, 1, 2, 0, 9]  # the fifth class replaced
    p = compare_outputs("topk_indices", ref, cand, FP32)
    assert p.labels and p.max_abs is None
    assert p.argmax_agreement == 0.75
    assert p.topk_overlap == pytest.approx((1 + 1 + 0.8 + 1) / 4)
    assert not p.passed


def test_topk_scores_are_compared_as_numbers_only():
    ref = np.sort(np.random.default_rng(1).random((4, 5)), axis=1)[:, ::-1].astype(np.float32)
    p = compare_outputs("topk_scores", ref, ref + 1e-9, FP32)
    assert p.argmax_agreement is None and p.topk_overlap is None and p.passed


def test_one_class_for_every_picture_is_vacuous_and_its_agreement_not_judged():
    # random weights: every picture the same class, near-ties everywhere
    ref = np.tile(np.linspace(1.0, 0.0, 30, dtype=np.float32), (16, 1))
    ref[:, 1] = 1.0 - 1e-7
    cand = ref.copy()
    cand[:8, 1] = 1.0 + 1e-7  # half the pictures flip to the near-tied class
    p = compare_outputs("logits", ref, cand, default_budget("fp16", CLASSIFICATION))
    assert p.argmax_agreement == 0.5
    assert p.vacuous_note and "not judged" in p.vacuous_note
    assert p.passed  # error and cosine judge; they are fine
    # several classes: the same flips are judged
    varied = _scores(16, 30)
    flipped = varied.copy()
    flipped[:8] = varied[:8, ::-1]
    assert not compare_outputs("logits", varied, flipped, default_budget("fp16", CLASSIFICATION)).passed


def test_segmentation_logits_keep_their_pixel_agreement_and_no_overlap():
    ref = np.random.default_rng(2).normal(size=(1, 4, 8, 8)).astype(np.float32)
    p = compare_outputs("logits", ref, ref.copy(), default_budget("fp32"))
    assert p.topk_overlap is None and p.argmax_agreement == 1.0 and p.miou == 1.0
    assert agreement_name(p) == "argmax agreement"
