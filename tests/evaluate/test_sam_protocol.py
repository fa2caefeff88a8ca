"""Upstream's SAM protocol arithmetic (evaluate/sam_protocol.py) against oracles of our own: the
first click by brute force over every pixel pair, the bins and means by hand."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from msla_deploy.evaluate import sam_protocol as P


def brute_force_click(mask: np.ndarray):
    """For each mask pixel, the distance to the nearest background pixel of the mask padded by one
    pixel of background; the first farthest pixel in row-major order."""
    height, width = mask.shape
    padded = np.pad(mask, 1)
    background = [(y, x) for y in range(height + 2) for x in range(width + 2) if not padded[y, x]]
    best, where = 0.0, None
    for y, x in itertools.product(range(height), range(width)):
        if not mask[y, x]:
            continue
        d = min(math.hypot(y + 1 - by, x + 1 - bx) for by, bx in background)
        if d > best:  # strictly greater: the first maximum in row-major order stays
            best, where = d, (x, y)
    return where


def test_first_click_is_the_farthest_pixel_from_the_border():
    rng = np.random.default_rng(3)
    for _ in range(25):
        height, width = rng.integers(1, 9, size=2)
        mask = rng.random((height, width)) < rng.uniform(0.3, 0.95)
        if not mask.any():
            continue
        (x, y), label = P.first_click(mask)
        assert label == 1
        assert (x, y) == brute_force_click(mask), mask.astype(int)


def test_first_click_by_hand():
    mask = np.zeros((7, 9), dtype=bool)
    mask[1:6, 2:9] = True  # rows 1-5, columns 2-8, touching the right edge (a border once padded)
    # row 3 is 3 from rows 0 and 6; column 4 is 3 from column 1, 5 from the padding column 9: the
    # first pixel at distance 3 (column 5 is too, and 6 is 3 from the padding)
    assert P.first_click(mask) == ((4, 3), 1)
    mask = np.ones((4, 4), dtype=bool)  # a tie of four: the first in row-major order
    assert P.first_click(mask) == ((1, 1), 1)


def test_an_empty_mask_gives_upstreams_background_click_at_the_origin():
    assert P.first_click(np.zeros((5, 6), dtype=bool)) == ((0, 0), 0)


def test_iou_in_percent_with_upstreams_epsilon():
    a = np.zeros((4, 4), dtype=bool)
    b = np.zeros((4, 4), dtype=bool)
    a[:2] = True  # 8 pixels
    b[1:3] = True  # 8 pixels, 4 in common, union 12
    assert P.mask_iou(a, b) == float(4 / (12 + 1e-7)) * 100
    assert P.mask_iou(a, a) == pytest.approx(100.0, abs=1e-5) and P.mask_iou(a, a) < 100.0
    assert P.mask_iou(np.zeros_like(a), np.zeros_like(a)) == 0.0


def test_box_prompt_is_xyxy():
    assert P.box_prompt([10, 20, 30.5, 4]) == [10.0, 20.0, 40.5, 24.0]


def test_area_bins_count_their_bounds_in_both_bins():
    assert P.bins_of(1.0) == ["small"]
    assert P.bins_of(1023.5) == ["small"]
    assert P.bins_of(1024) == ["small", "medium"]
    assert P.bins_of(1024.5) == ["medium"]
    assert P.bins_of(9216) == ["medium", "large"]
    assert P.bins_of(9216.5) == ["large"]


def test_means_by_area_by_hand():
    areas = [10, 1024, 5000, 9216, 20000]
    ious = [50.0, 60.0, 70.0, 80.0, 90.0]
    means, counts = P.miou_by_area(areas, ious)
    assert counts == {"all": 5, "small": 2, "medium": 3, "large": 2}
    assert means["all"] == pytest.approx(70.0)
    assert means["small"] == pytest.approx(55.0)
    assert means["medium"] == pytest.approx(70.0)
    assert means["large"] == pytest.approx(85.0)


def test_an_empty_bin_has_no_mean():
    means, counts = P.miou_by_area([5, 6], [40.0, 50.0])
    assert means == {"all": 45.0, "small": 45.0, "medium": None, "large": None}
    assert counts == {"all": 2, "small": 2, "medium": 0, "large": 0}
