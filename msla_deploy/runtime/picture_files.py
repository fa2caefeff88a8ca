"""Pictures in, model inputs out: decoding picture files for `reference --inputs` and int8
calibration, then the project's one preprocessing (runtime/processing.py: upstream's cubic
resize to the artifact's fixed resolution, /255, ImageNet mean/std), the same arithmetic evaluate
and the Segmenter apply. 8-bit pictures stay uint8 until then, so that a picture gives the same
model input here as there, bit for bit.

.npy pictures always work (H x W x 3 RGB, uint8, or float in [0, 1]; H x W grey; an alpha
channel is dropped). PNG and JPEG are decoded by Pillow when it is installed; without it they are
refused with the fix, rather than decoded by a slow or partial hand-written codec.

16-bit greyscale PNGs (Pillow mode I;16) are scaled by 65535 to [0, 1], not clipped to 8 bits
(which would make most of them white). The pixel count a picture declares is checked before it
is decoded (limits.MAX_PICTURE_PIXELS), and Pillow's own decompression-bomb guard is an error,
not a warning: a huge picture is refused with its size, never decoded.
"""

from __future__ import annotations

from pathlib import Path
from typing import List

import numpy as np

from ..artifact.npfiles import load_npy, npy_declared
from ..errors import BadInput, MissingRuntime
from ..limits import check_picture_pixels, open_picture
from . import processing

NPY_SUFFIXES = (".npy",)
PILLOW_SUFFIXES = (".png", ".jpg", ".jpeg")


def list_images(folder: Path) -> List[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise BadInput(f"--inputs {folder}: not a directory", "pass a folder of .npy/.png/.jpg pictures")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in NPY_SUFFIXES + PILLOW_SUFFIXES)
    if not files:
        raise BadInput(
            f"--inputs {folder}: no .npy, .png or .jpg pictures in it", "put the pictures directly in that folder"
        )
    return files


#: Pillow modes of 16-bit greyscale pictures (PNG): divided by 65535, not clipped to 8 bits
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")


def pillow_pixels(image, path: Path) -> np.ndarray:
    """uint8 RGB, or float32 grey in [0, 1] for 16-bit pictures: the one rule for what a Pillow
    picture's values mean (reference, calibration and the Segmenter decode with it)."""
    if image.mode in _SIXTEEN_BIT_MODES or (image.mode == "I" and image.format == "PNG"):
        # PNG stores at most 16 bits per grey sample; older Pillow opens them as mode I
        grey = np.asarray(image).astype(np.float32)
        if grey.min() < 0 or grey.max() > 65535:
            raise BadInput(f"{path}: grey values outside 0..65535", "save it as 8- or 16-bit PNG")
        return grey / 65535.0
    if image.mode in ("I", "F"):
        raise BadInput(
            f"{path}: {'32-bit integer' if image.mode == 'I' else 'floating-point'} pixels (Pillow mode "
            f"{image.mode}) have no fixed white level",
            "convert it to 8-bit RGB (or 16-bit grey PNG), or save it as .npy floats in [0, 1]",
        )
    return np.asarray(image.convert("RGB"))


def _decode_with_pillow(path: Path) -> np.ndarray:
    try:
        import PIL  # noqa: F401
    except ImportError:
        raise MissingRuntime(
            f"{path.name}: reading {path.suffix} pictures needs Pillow, which is not installed",
            "pip install pillow, or convert the pictures to .npy (H x W x 3 uint8 RGB)",
        ) from None
    with open_picture(path) as image:
        return pillow_pixels(image, path)


def _load_npy(path: Path) -> np.ndarray:
    """The array, after its header passed (npfiles: real values, the bytes it stores) and its
    declared shape is a picture within the pixel limit: H x W, or H x W x C with C <= 4 (every
    dimension counts: a 3-D array with a huge last axis is no smaller than a huge picture)."""
    fix = "save it with numpy.save"
    shape, _ = npy_declared(path, fix)
    if len(shape) not in (2, 3) or (len(shape) == 3 and shape[2] > 4):
        raise BadInput(f"{path}: shape {list(shape)} is not a picture", "store H x W x 3 RGB (channels last)")
    check_picture_pixels(str(path), shape[1], shape[0])
    return load_npy(path, fix)


def load_rgb(path: Path) -> np.ndarray:
    """The picture as H x W x 3 RGB: uint8 for 8-bit pictures, float32 in [0, 1] for the others
    (16-bit grey PNGs, .npy floats), the two kinds `preprocess` takes."""
    path = Path(path)
    if path.suffix.lower() in PILLOW_SUFFIXES:
        pixels = _decode_with_pillow(path)
    else:
        pixels = _load_npy(path)
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[:, :, None], 3, axis=2)
    if pixels.ndim != 3 or pixels.shape[2] not in (3, 4) or min(pixels.shape[:2]) < 1:
        raise BadInput(f"{path}: shape {list(pixels.shape)} is not a picture", "store H x W x 3 RGB (channels last)")
    pixels = pixels[:, :, :3]
    if pixels.dtype == np.uint8:
        return np.ascontiguousarray(pixels)
    if np.issubdtype(pixels.dtype, np.floating):
        if not np.isfinite(pixels).all() or pixels.min() < 0.0 or pixels.max() > 1.0:
            raise BadInput(f"{path}: float pixels outside [0, 1]", "store uint8 RGB, or floats already divided by 255")
        return np.ascontiguousarray(pixels, np.float32)
    raise BadInput(f"{path}: pixel type {pixels.dtype} is not uint8 or float", "store uint8 RGB")


def preprocess(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """A picture from load_rgb -> 3 x height x width float32: processing.preprocess, one sample."""
    return processing.preprocess(pixels, (height, width), floats=True)[0]
