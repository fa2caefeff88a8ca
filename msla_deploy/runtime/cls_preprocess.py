"""A picture as an ImageNet classifier sees it: upstream's classification evaluation protocol.

Upstream (applications/efficientvit_cls, torchvision on PIL pictures): resize the short side to
ceil(res / crop_ratio) with PIL's bicubic filter (the long side to int(short * long / short_in),
as torchvision's Resize(int) computes it), center crop res x res (offsets rounded as
torchvision's CenterCrop rounds them), /255, ImageNet mean/std. crop_ratio is 0.95. For an H x W
resolution that is not square the short side goes to ceil(max(H, W) / crop_ratio), so the crop fits.

Not segmentation's preprocessing (runtime/processing.py, the whole picture stretched to the
model's HxW): a classifier was trained and scored on centre crops of pictures kept at their aspect
ratio, so that is what its calibration and evaluation pictures must be.

Pillow does the resize (torchvision calls Image.resize with BICUBIC, so this is the same filter,
antialiased when shrinking); a picture of more than 8 bits (float in [0, 1]) is resized channel
by channel in Pillow's float mode. Torch-free.
"""

from __future__ import annotations

import math
from typing import Tuple

import numpy as np

from ..artifact.reference import IMAGENET_MEAN, IMAGENET_STD
from ..errors import MissingRuntime

CROP_RATIO = 0.95
#: the preprocessing in words, for reports and the manifest
PREPROCESSING = (
    f"RGB, short side resized to ceil(res / {CROP_RATIO}) (PIL bicubic), centre crop res x res, /255, ImageNet mean/std"
)


def resized_size(height: int, width: int, short: int) -> Tuple[int, int]:
    """(h, w) after torchvision's Resize(short): the short side `short`, the long one scaled and floored."""
    if height <= width:
        return short, int(short * width / height)
    return int(short * height / width), short


def crop_box(height: int, width: int, crop_h: int, crop_w: int) -> Tuple[int, int]:
    """(top, left) of torchvision's CenterCrop."""
    return int(round((height - crop_h) / 2.0)), int(round((width - crop_w) / 2.0))


def _pillow():
    try:
        from PIL import Image
    except ImportError:
        raise MissingRuntime(
            "classification preprocessing resizes with Pillow, which is not installed", "pip install pillow"
        ) from None
    return Image


def resize_crop(pixels: np.ndarray, size: Tuple[int, int], crop_ratio: float = CROP_RATIO) -> np.ndarray:
    """H x W x 3 (uint8, or float32 in [0, 1]) -> size[0] x size[1] x 3 float32 in [0, 1]: the
    resized centre crop, before normalisation."""
    image_cls = _pillow()
    crop_h, crop_w = int(size[0]), int(size[1])
    # the larger side: a non-square crop must fit whichever way the picture lies
    short = int(math.ceil(max(crop_h, crop_w) / crop_ratio))
    new_h, new_w = resized_size(pixels.shape[0], pixels.shape[1], short)
    if pixels.dtype == np.uint8:
        resized = np.asarray(image_cls.fromarray(pixels, "RGB").resize((new_w, new_h), image_cls.BICUBIC))
        resized = resized.astype(np.float32) / np.float32(255.0)
    else:
        channels = [
            np.asarray(
                image_cls.fromarray(np.ascontiguousarray(pixels[:, :, c], np.float32), "F").resize(
                    (new_w, new_h), image_cls.BICUBIC
                )
            )
            for c in range(3)
        ]
        resized = np.clip(np.stack(channels, axis=2), 0.0, 1.0).astype(np.float32)
    top, left = crop_box(new_h, new_w, crop_h, crop_w)
    return resized[top : top + crop_h, left : left + crop_w]


def preprocess(pixels: np.ndarray, height: int, width: int, crop_ratio: float = CROP_RATIO) -> np.ndarray:
    """A picture from runtime/picture_files.load_rgb -> 3 x height x width float32, the classifier's input."""
    crop = resize_crop(pixels, (height, width), crop_ratio)
    mean = np.asarray(IMAGENET_MEAN, np.float32)
    std = np.asarray(IMAGENET_STD, np.float32)
    return np.ascontiguousarray(((crop - mean) / std).transpose(2, 0, 1), np.float32)
