"""Pictures in, classifier inputs out: upstream's ImageNet evaluation transform, in Pillow and numpy.

Upstream (applications/efficientvit_cls/eval_efficientvit_cls_model.py) evaluates with
torchvision: the picture in RGB, its short side resized to ceil(res / crop_ratio) with Pillow's
bicubic (crop_ratio 0.95), the long side to int(new_short * long / short); a res x res centre crop
whose offsets are rounded as Python's round() rounds (half to even); /255, ImageNet mean/std. This
module does the same arithmetic with Pillow (the same resize code torchvision calls on a PIL
picture) and numpy, torch-free, so that evaluate and the Classifier give upstream's inputs on a
Jetson. An artifact whose input is not square (H != W) has its short side resized to
ceil(max(H, W) / crop_ratio), so that the H x W crop always fits.

Decoding is the project's one rule (runtime/picture_files.pillow_pixels, opened through
limits.open_picture: the pixel limit first, a file that is not a picture is one line): 8-bit
pictures become RGB as torchvision's loader converts them; a 16-bit grey PNG is scaled by 65535
(resized as floats, not clipped to 8 bits as torchvision would).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Tuple

import numpy as np

from ..artifact.reference import IMAGENET_MEAN, IMAGENET_STD
from ..errors import BadInput
from ..limits import open_picture
from .picture_files import pillow_pixels

#: upstream's evaluation crop ratio: the crop is 95% of the resized short side
CROP_RATIO = 0.95
#: the transform in words, as int8 calibration records it in the manifest
PREPROCESSING = (
    f"RGB, short side resized to ceil(max(H, W) / {CROP_RATIO}) (Pillow bicubic), H x W centre crop, /255, "
    "ImageNet mean/std"
)


def check_crop_ratio(crop_ratio: float, flag: str = "--crop-ratio") -> None:
    if not 0.0 < crop_ratio <= 1.0:  # NaN fails this too
        raise BadInput(
            f"{flag} {crop_ratio}: must be in (0, 1] (the centre crop's share of the resized short side)",
            f"upstream evaluates with {flag} {CROP_RATIO}",
        )


def resize_short_side(resolution: Tuple[int, int], crop_ratio: float = CROP_RATIO) -> int:
    """What the short side is resized to before the centre crop: ceil(res / crop_ratio)."""
    check_crop_ratio(crop_ratio)
    return int(math.ceil(max(resolution) / crop_ratio))


def resized_size(width: int, height: int, short: int) -> Tuple[int, int]:
    """(width, height) with the short side `short` and the long side int(short * long / short_side)
    (torchvision's Resize(int): truncated, not rounded; a square stays square)."""
    if width <= height:
        return short, int(short * height / width)
    return int(short * width / height), short


def center_crop_box(width: int, height: int, crop: Tuple[int, int]) -> Tuple[int, int, int, int]:
    """(left, top, right, bottom) of the (H, W) = `crop` centre crop of a width x height picture:
    torchvision's offsets, int(round(difference / 2.0)) with Python's half-to-even round."""
    crop_h, crop_w = crop
    if crop_h > height or crop_w > width:
        raise ValueError(f"a {crop_w}x{crop_h} crop does not fit a {width}x{height} picture")
    left = int(round((width - crop_w) / 2.0))
    top = int(round((height - crop_h) / 2.0))
    return left, top, left + crop_w, top + crop_h


def resize_and_crop(pixels: np.ndarray, resolution: Tuple[int, int], crop_ratio: float = CROP_RATIO) -> np.ndarray:
    """An H x W x 3 uint8 RGB picture (or a float32 one in [0, 1], grey or RGB) -> the resized, centre-cropped
    res_h x res_w x 3 picture (uint8, or float32 for a float picture)."""
    from PIL import Image

    short = resize_short_side(resolution, crop_ratio)
    height, width = pixels.shape[:2]
    size = resized_size(width, height, short)
    box = center_crop_box(size[0], size[1], tuple(resolution))

    def resized_crop(image) -> np.ndarray:
        if image.size != size:
            image = image.resize(size, Image.BICUBIC)
        return np.asarray(image.crop(box))

    if pixels.dtype == np.uint8:
        return resized_crop(Image.fromarray(np.ascontiguousarray(pixels[:, :, :3]), "RGB"))
    # a float picture (grey, or RGB as int8 calibration decodes .npy floats): Pillow resizes mode F
    # with the same bicubic filter, one plane at a time; a grey one (or three equal planes) once
    grey = pixels.ndim == 2 or all(np.array_equal(pixels[:, :, 0], pixels[:, :, c]) for c in (1, 2))
    planes = [pixels if pixels.ndim == 2 else pixels[:, :, 0]] if grey else [pixels[:, :, c] for c in range(3)]
    cropped = [resized_crop(Image.fromarray(np.ascontiguousarray(p, np.float32), "F")) for p in planes]
    return np.stack(cropped * 3 if grey else cropped, axis=2)


def normalise(pixels: np.ndarray) -> np.ndarray:
    """H x W x 3 (uint8 RGB, or float in [0, 1]) -> 3 x H x W float32: /255, then ImageNet mean/std,
    in float32 as torchvision's ToTensor and Normalize compute it."""
    x = pixels.astype(np.float32) / np.float32(255) if pixels.dtype == np.uint8 else pixels.astype(np.float32)
    mean = np.asarray(IMAGENET_MEAN, np.float32)
    std = np.asarray(IMAGENET_STD, np.float32)
    return np.ascontiguousarray(((x - mean) / std).transpose(2, 0, 1))


def read_picture(path: Path, fix: str = "replace the file") -> np.ndarray:
    """A picture file as the transform takes it (pillow_pixels: uint8 RGB, or float grey for 16 bits);
    a file that is not a picture, or is too large, is BadInput naming it."""
    # open_picture also turns a decoding error (truncated data) inside the block into that one line
    with open_picture(Path(path), fix) as image:
        return pillow_pixels(image, Path(path))


def preprocess(pixels: np.ndarray, resolution: Tuple[int, int], crop_ratio: float = CROP_RATIO) -> np.ndarray:
    """A decoded picture -> the model input, 1 x 3 x H x W float32 (upstream's evaluation transform)."""
    return normalise(resize_and_crop(pixels, resolution, crop_ratio))[None]


def preprocess_file(
    path: Path, resolution: Tuple[int, int], crop_ratio: float = CROP_RATIO, fix: str = "replace the file"
) -> np.ndarray:
    """A picture file -> 1 x 3 x H x W float32 model input."""
    return preprocess(read_picture(path, fix), resolution, crop_ratio)
