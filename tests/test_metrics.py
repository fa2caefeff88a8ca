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
