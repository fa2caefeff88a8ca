"""The classifier's input transform is upstream's evaluation transform (torchvision's Resize(int)
bicubic on a PIL picture, CenterCrop, ToTensor, Normalize), checked against sizes and offsets
worked out by hand, against pixels whose values say where they came from, and against Pillow
called directly. Torch-free."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from msla_deploy.artifact.reference import IMAGENET_MEAN, IMAGENET_STD
from msla_deploy.errors import BadInput
from msla_deploy.runtime import classify_preprocess as cp


@pytest.mark.parametrize(
    "resolution, ratio, short",
    [((224, 224), 0.95, 236), ((256, 256), 0.95, 270), ((288, 288), 0.95, 304), ((384, 384), 0.95, 405),
     ((224, 224), 0.875, 256), ((224, 224), 1.0, 224), ((32, 64), 0.95, 68)],
)  # fmt: skip
def test_the_short_side_is_the_ceiling_of_res_over_the_crop_ratio(resolution, ratio, short):
    assert cp.resize_short_side(resolution, ratio) == short


@pytest.mark.parametrize(
    "width, height, short, expected",
    [
        (500, 375, 236, (314, 236)),  # 236 * 500 / 375 = 314.67: truncated, not rounded
        (375, 500, 236, (236, 314)),
        (37, 91, 34, (34, 83)),  # 34 * 91 / 37 = 83.6
        (91, 37, 34, (83, 34)),
        (64, 64, 34, (34, 34)),
        (34, 81, 34, (34, 81)),  # already there
        (3, 1000, 236, (236, 78666)),
    ],
)
def test_resized_sizes_follow_torchvisions_resize_of_an_int(width, height, short, expected):
    assert cp.resized_size(width, height, short) == expected


@pytest.mark.parametrize(
    "width, height, crop, box",
    [
        (314, 236, (224, 224), (45, 6, 269, 230)),
        (83, 34, (32, 32), (26, 1, 58, 33)),  # (83 - 32) / 2 = 25.5 -> 26 (half to even), (34 - 32) / 2 = 1
        (81, 34, (32, 32), (24, 1, 56, 33)),  # 24.5 -> 24 (half to even: Python's round, as torchvision's)
        (32, 32, (32, 32), (0, 0, 32, 32)),
        (70, 68, (32, 64), (3, 18, 67, 50)),  # H x W crop of a non-square input
    ],
)
def test_centre_crop_offsets_round_half_to_even(width, height, crop, box):
    assert cp.center_crop_box(width, height, crop) == box


def _coordinates(width: int, height: int) -> np.ndarray:
    """A picture whose red is its column and green its row: a crop says where it was taken."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:, :, 0] = np.arange(width)[None, :]
    pixels[:, :, 1] = np.arange(height)[:, None]
    return pixels


@pytest.mark.parametrize("width, height", [(32, 45), (45, 32), (32, 46), (49, 32), (32, 32)])
def test_without_a_resize_the_crop_is_taken_where_torchvision_takes_it(width, height):
    # crop ratio 1 and a short side of 32: the picture keeps its size and only the crop moves it
    cropped = cp.resize_and_crop(_coordinates(width, height), (32, 32), crop_ratio=1.0)
    left = int(round((width - 32) / 2.0))
    top = int(round((height - 32) / 2.0))
    assert cropped.shape == (32, 32, 3) and cropped.dtype == np.uint8
    assert cropped[0, 0, 0] == left and cropped[0, 0, 1] == top
    np.testing.assert_array_equal(cropped[:, :, 0], _coordinates(width, height)[top : top + 32, left : left + 32, 0])


@pytest.mark.parametrize("width, height, resolution", [(37, 91, (32, 32)), (500, 375, (224, 224)), (91, 37, (32, 64))])
def test_the_input_is_pillows_bicubic_crop_normalised_in_float32(tmp_path, width, height, resolution):
    rng = np.random.default_rng(width)
    path = tmp_path / "picture.png"
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)

    # straight from Pillow, with the sizes and offsets written out here
    short = math.ceil(max(resolution) / 0.95)
    if width <= height:
        size = (short, int(short * height / width))
    else:
        size = (int(short * width / height), short)
    image = Image.open(path).convert("RGB").resize(size, Image.BICUBIC)
    left, top = int(round((size[0] - resolution[1]) / 2.0)), int(round((size[1] - resolution[0]) / 2.0))
    crop = np.asarray(image.crop((left, top, left + resolution[1], top + resolution[0])))
    x = (crop.astype(np.float32) / np.float32(255) - np.float32(IMAGENET_MEAN)) / np.float32(IMAGENET_STD)
    expected = x.transpose(2, 0, 1)[None]

    got = cp.preprocess_file(path, resolution)
    assert got.shape == (1, 3) + tuple(resolution) and got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_array_equal(got, expected)


def test_palette_grey_and_alpha_pictures_are_converted_to_rgb_as_torchvisions_loader_does(tmp_path):
    rng = np.random.default_rng(1)
    rgba = Image.fromarray(rng.integers(0, 256, (40, 50, 4), dtype=np.uint8), "RGBA")
    for mode in ("RGBA", "L", "P"):
        path = tmp_path / f"{mode}.png"
        (rgba if mode == "RGBA" else rgba.convert("RGB").convert(mode)).save(path)
        expected = cp.preprocess(np.asarray(Image.open(path).convert("RGB")), (32, 32))
        np.testing.assert_array_equal(cp.preprocess_file(path, (32, 32)), expected)


def test_a_sixteen_bit_grey_png_is_scaled_not_clipped(tmp_path):
    path = tmp_path / "grey16.png"
    grey = np.full((40, 40), 32768, np.uint16)
    Image.fromarray(grey).save(path)
    x = cp.preprocess_file(path, (32, 32))
    # 32768 / 65535 = 0.5: mid grey, not white
    expected = (np.float32(32768 / 65535) - np.float32(IMAGENET_MEAN)) / np.float32(IMAGENET_STD)
    np.testing.assert_allclose(x[0, :, 16, 16], expected, atol=1e-5)


def test_a_file_that_is_not_a_picture_is_one_line(tmp_path):
    path = tmp_path / "fake.jpg"
    path.write_text("not a picture")
    with pytest.raises(BadInput) as caught:
        cp.preprocess_file(path, (32, 32), fix="replace it")
    assert "fake.jpg: not a readable picture" in caught.value.one_line() and "\n" not in caught.value.one_line()


def test_a_picture_above_the_pixel_limit_is_refused_before_decoding(tmp_path, monkeypatch):
    import msla_deploy.limits as limits

    path = tmp_path / "big.png"
    Image.new("RGB", (100, 100)).save(path)
    monkeypatch.setattr(limits, "MAX_PICTURE_PIXELS", 5000)
    with pytest.raises(BadInput, match="megapixels, above the limit"):
        cp.preprocess_file(path, (32, 32))


@pytest.mark.parametrize("ratio", [0.0, -0.5, 1.01, float("nan")])
def test_a_crop_ratio_outside_zero_to_one_is_bad_input(ratio):
    with pytest.raises(BadInput, match="--crop-ratio"):
        cp.resize_short_side((224, 224), ratio)
