"""COCO RLE (predict/rle.py): hand-worked counts and strings from the format's definition, and
round trips of random masks (the decoder is the encoder's inverse)."""

from __future__ import annotations

import numpy as np
import pytest

from msla_deploy.predict import rle


def test_counts_are_column_major_and_start_with_zeros():
    mask = np.array([[0, 1, 0], [0, 1, 0], [1, 0, 0]], bool)  # columns: 001, 110, 000
    assert rle.run_lengths(mask) == [2, 3, 4]
    assert rle.encode(mask) == {"size": [3, 3], "counts": "234"}
    assert rle.run_lengths(np.ones((2, 2), bool)) == [0, 4]  # a first 1: a first count of 0


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
    assert rle.compress(counts) == text
    assert rle.decompress(text) == counts


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
    assert np.array_equal(rle.decode({"size": list(shape), "counts": rle.run_lengths(mask)}), mask)


def test_bbox_is_cocos_xywh():
    mask = np.zeros((10, 20), bool)
    mask[2:5, 3:9] = True
    assert rle.bbox(mask) == [3.0, 2.0, 6.0, 3.0]
    assert rle.bbox(np.zeros((4, 4), bool)) == [0.0, 0.0, 0.0, 0.0]
