"""COCO RLE (predict/rle.py, pycocotools underneath): hand-worked strings from the format's
definition, and round trips of random masks (the decoder is the encoder's inverse)."""

from __future__ import annotations

import numpy as np
import pytest

from msla_deploy import rle


def _mask(counts, shape) -> np.ndarray:
    """The mask of alternating 0/1 run lengths, column-major, starting with 0s."""
    values = np.zeros(len(counts), bool)
    values[1::2] = True
    return np.repeat(values, counts).reshape(shape, order="F")


def test_counts_are_column_major_and_start_with_zeros():
    mask = np.array([[0, 1, 0], [0, 1, 0], [1, 0, 0]], bool)  # columns: 001, 110, 000
    assert np.array_equal(_mask([2, 3, 4], (3, 3)), mask)
    assert rle.encode(mask) == {"size": [3, 3], "counts": "234"}
    assert rle.encode(np.ones((2, 2), bool))["counts"] == "04"  # a first 1: a first count of 0


@pytest.mark.parametrize(
    "counts, text",
    [
        ([2, 3, 4], "234"),  # one 5-bit group each, + 48
        ([1, 2, 3, 1], "123O"),  # the 4th is 1 - 2 = -1: group 31 with the sign bit, no more
        ([100], "T3"),  # 100 = 4 + 3 * 32: "4" | 0x20 (more) then "3"
        ([0, 40, 1, 40], "0X110"),  # 40 = 8 + 1 * 32: "8" | 0x20 = "X", then "1"; the 4th is 40 - 40 = 0
    ],
)
def test_compressed_string(counts, text):
    shape = (1, sum(counts))
    assert rle.encode(_mask(counts, shape))["counts"] == text
    assert np.array_equal(rle.decode({"size": list(shape), "counts": text}), _mask(counts, shape))


@pytest.mark.parametrize("shape", [(1, 1), (7, 5), (333, 517), (1, 1000)])
@pytest.mark.parametrize("fill", [0.0, 0.03, 0.5, 1.0])
def test_round_trip(shape, fill):
    rng = np.random.default_rng(shape[0] * 1000 + shape[1])
    # blobs and speckle: long runs (multi-group counts, negative differences) and short ones
    mask = rng.random(shape) < fill
    mask[: shape[0] // 2, : shape[1] // 3] = fill > 0.25
    encoded = rle.encode(mask)
    assert encoded["size"] == list(shape) and isinstance(encoded["counts"], str)
    assert np.array_equal(rle.decode(encoded), mask)
    flat = mask.ravel(order="F")
    edges = np.concatenate(([0], np.flatnonzero(flat[1:] != flat[:-1]) + 1, [flat.size]))
    counts = ([0] if flat[0] else []) + np.diff(edges).tolist()
    assert np.array_equal(rle.decode({"size": list(shape), "counts": counts}), mask)


def test_bbox_is_cocos_xywh():
    mask = np.zeros((10, 20), bool)
    mask[2:5, 3:9] = True
    assert rle.bbox(mask) == [3.0, 2.0, 6.0, 3.0]
    assert rle.bbox(np.zeros((4, 4), bool)) == [0.0, 0.0, 0.0, 0.0]
