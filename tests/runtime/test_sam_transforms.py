"""SAM's pre- and postprocessing (runtime/sam_transforms.py, numpy + Pillow) against PyTorch doing
what upstream's predictor does: F.interpolate for the bilinear resizes, tensor arithmetic for the
normalisation and the padding, at odd sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from msla_deploy.errors import BadInput
from msla_deploy.runtime import sam_transforms as T
from tests.runtime import sam_torch

SIZES = [(333, 517), (517, 333), (1, 1000), (1000, 1), (768, 1024), (1024, 1024), (7, 5), (2000, 1999)]


def _picture(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    "size, side, expected",
    [
        ((333, 517), 1024, (660, 1024)),  # 333 * 1024 / 517 = 659.56 -> 660
        ((333, 517), 512, (330, 512)),  # 329.78 -> 330
        ((1, 1000), 512, (1, 512)),
        ((1, 3000), 1024, (1, 1024)),  # 0.34 rounds to 0: kept at 1 (upstream fails)
        ((600, 400), 512, (512, 341)),  # 341.33
        ((640, 480), 1024, (1024, 768)),
    ],
)
def test_preprocess_shape(size, side, expected):
    assert T.preprocess_shape(*size, side) == expected


RESIZES = [(256, 1024), (1024, 660), (660, 333), (5, 17), (17, 5), (1, 9), (9, 1)]
RESIZES += [(1024, 2000), (333, 1000), (660, 4000)]  # long sides: where a float32 multiply-add is not fused


@pytest.mark.parametrize("in_size, out_size", RESIZES)
def test_bilinear_matrix_is_torch_interpolate(in_size, out_size):
    rng = np.random.default_rng(in_size * 31 + out_size)
    x = rng.standard_normal((2, 3, in_size, 4)).astype(np.float32)
    ours = T.resize_bilinear(x, (out_size, 4))
    theirs = F.interpolate(torch.from_numpy(x), (out_size, 4), mode="bilinear", align_corners=False).numpy()
    np.testing.assert_allclose(ours, theirs, atol=5e-7, rtol=0)
    # each row of weights sums to 1 (a constant stays constant)
    np.testing.assert_allclose(T.bilinear_matrix(in_size, out_size).sum(axis=1), 1.0, atol=1e-12)


def test_resize_bilinear_both_axes_odd():
    x = np.random.default_rng(1).standard_normal((1, 2, 37, 53)).astype(np.float32)
    for size in [(333, 517), (11, 7), (37, 53)]:
        theirs = F.interpolate(torch.from_numpy(x), size, mode="bilinear", align_corners=False).numpy()
        np.testing.assert_allclose(T.resize_bilinear(x, size), theirs, atol=3e-6, rtol=0)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("side", [512, 1024])
def test_encoder_input_is_upstreams_transform(size, side):
    image = _picture(*size)
    ours = T.encoder_input(image, side)
    assert ours.shape == (1, 3, side, side) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, sam_torch.encoder_input(image, side).numpy(), atol=1e-6, rtol=0)
    h, w = T.preprocess_shape(*size, side)
    assert not ours[..., h:, :].any() and not ours[..., :, w:].any()  # the padding


def test_encoder_input_keeps_a_picture_at_the_side():
    image = _picture(512, 300, seed=3)  # longest side is the encoder's: no resize at all
    ours = T.encoder_input(image, 512)
    expected = (image.astype(np.float32) - np.float32(T.PIXEL_MEAN)) / np.float32(T.PIXEL_STD)
    np.testing.assert_allclose(ours[0, :, :, :300].transpose(1, 2, 0), expected, atol=1e-6)


def test_encoder_input_refuses_non_rgb_uint8():
    with pytest.raises(BadInput, match="H x W x 3 uint8"):
        T.encoder_input(np.zeros((4, 4, 3), np.float32), 512)


def test_to_prompt_frame_scales_each_axis():
    coords = np.array([[[0.0, 0.0], [516.0, 332.0], [100.5, 50.25]]])
    out = T.to_prompt_frame(coords, (333, 517))
    assert out.dtype == np.float32 and out.shape == coords.shape
    # 333 x 517 is 660 x 1024 in the prompt frame
    expected = np.array([[[0, 0], [516 * 1024 / 517, 332 * 660 / 333], [100.5 * 1024 / 517, 50.25 * 660 / 333]]])
    np.testing.assert_allclose(out, expected, rtol=1e-7)
    boxes = T.boxes_to_prompt_frame([[10, 20, 30, 40]], (333, 517))
    np.testing.assert_allclose(boxes, [[10 * 1024 / 517, 20 * 660 / 333, 30 * 1024 / 517, 40 * 660 / 333]], rtol=1e-7)
    assert T.to_prompt_frame(coords, (1, 1000))[0, 1, 1] == np.float32(332.0)  # 1 x 1000 -> 1 x 1024


@pytest.mark.parametrize("size", SIZES)
def test_postprocess_masks_is_upstreams(size):
    rng = np.random.default_rng(sum(size))
    # smooth logits of a few units, like a decoder's: a coarse field upsampled, plus noise
    coarse = torch.from_numpy(rng.standard_normal((2, 3, 16, 16)).astype(np.float32) * 8)
    low_res = (F.interpolate(coarse, (256, 256), mode="bilinear") + torch.randn(2, 3, 256, 256)).numpy()
    theirs = sam_torch.postprocess(torch.from_numpy(low_res), size).numpy()
    logits = T.postprocess_masks(low_res, size, return_logits=True)
    assert logits.shape == (2, 3, *size) and logits.dtype == np.float32
    np.testing.assert_allclose(logits, theirs, atol=1e-5, rtol=0)  # peaks ~30: ~3e-7 of the peak
    masks = T.postprocess_masks(low_res, size)
    assert masks.dtype == bool
    clear = np.abs(theirs) > 1e-5  # away from the threshold the masks are the same pixel for pixel
    assert np.array_equal(masks[clear], (theirs > 0)[clear])
    assert clear.mean() > 0.999
