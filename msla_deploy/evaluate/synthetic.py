"""Procedural pictures with known labels, written in each dataset layout, for tests and benchmarks.

Segmentation: a street-like scene is a ground band, a sky band and a few rectangles and discs,
each region a class drawn in its palette colour with noise, so a model can learn it and a test
knows every label. Some pixels are ignored, and each scene uses a random subset of the classes
(so classes are absent from some images).

Classification: a picture of class c is one large disc or rectangle in c's palette colour on a
background of another, noisy colour, at a random size and aspect ratio, written in class folders
(the ImageNet layout) in several picture formats.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..atomic import write_bytes_atomic
from ..classes import IGNORE_INDEX, cityscapes_train_to_label, palette, seeded_palette
from ..drawing import encode, save_picture
from .datasets import ADE20K_ROOT, CITYSCAPES_IMAGE_SUFFIX, CITYSCAPES_LABEL_SUFFIX, FOLDER_IMAGES, FOLDER_LABELS, SPLIT


def scene(rng: np.random.Generator, size: Tuple[int, int], num_classes: int) -> Tuple[np.ndarray, np.ndarray]:
    """(H x W x 3 uint8 picture, H x W uint8 train ids with IGNORE_INDEX where ignored)."""
    h, w = size
    colours = palette(num_classes).astype(np.int16)
    used = rng.choice(num_classes, size=min(num_classes, int(rng.integers(3, 7))), replace=False)
    label = np.empty((h, w), np.uint8)
    horizon = int(h * rng.uniform(0.3, 0.6))
    label[:horizon] = used[0]
    label[horizon:] = used[1]
    yy, xx = np.mgrid[:h, :w]
    for c in used[2:]:
        for _ in range(int(rng.integers(1, 3))):
            cy, cx = rng.integers(0, h), rng.integers(0, w)
            ry, rx = int(rng.integers(h // 12 + 1, h // 4 + 2)), int(rng.integers(w // 12 + 1, w // 4 + 2))
            if rng.random() < 0.5:
                label[max(cy - ry, 0) : cy + ry, max(cx - rx, 0) : cx + rx] = c
            else:
                label[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] = c
    pixels = colours[label] + rng.normal(0, 12, size=(h, w, 3)).astype(np.int16)
    # an ignored band at the bottom (like Cityscapes' ego vehicle) and a few ignored blobs
    label[h - max(1, h // 16) :] = IGNORE_INDEX
    for _ in range(2):
        cy, cx = rng.integers(0, h), rng.integers(0, w)
        label[max(cy - 2, 0) : cy + 2, max(cx - 3, 0) : cx + 3] = IGNORE_INDEX
    return np.clip(pixels, 0, 255).astype(np.uint8), label


def sample_paths(
    root: Path, layout: str, stem: str, city: str = "", split: Optional[str] = None
) -> Tuple[Path, Path, str]:
    """(picture file, label file, the sample's name as evaluate reports it) in `layout`'s published tree."""
    root = Path(root)
    if layout == "cityscapes":
        split = split or SPLIT["cityscapes"]
        return (
            root / "leftImg8bit" / split / city / f"{stem}{CITYSCAPES_IMAGE_SUFFIX}",
            root / "gtFine" / split / city / f"{stem}{CITYSCAPES_LABEL_SUFFIX}",
            f"{city}/{stem}",
        )
    if layout == "ade20k":
        split = split or SPLIT["ade20k"]
        base = root / ADE20K_ROOT
        return base / "images" / split / f"{stem}.jpg", base / "annotations" / split / f"{stem}.png", stem
    if layout == "folder":
        return root / FOLDER_IMAGES / f"{stem}.png", root / FOLDER_LABELS / f"{stem}.png", stem
    raise ValueError(f"unknown layout {layout!r}")


def write_sample(
    root: Path,
    layout: str,
    stem: str,
    pixels: np.ndarray,
    label_file: np.ndarray,
    city: str = "",
    split: Optional[str] = None,
) -> Tuple[Path, Path, str]:
    """Write one picture and its label as `layout` stores them: `label_file` holds that layout's
    values (Cityscapes label ids, ADE20K annotations, or train ids with the folder's ignore value)."""
    image, label, name = sample_paths(root, layout, stem, city, split)
    save_picture(image, pixels)  # JPEG for ADE20K's .jpg, by the suffix
    save_picture(label, np.asarray(label_file, np.uint8))
    return image, label, name


def write_dataset(
    root: Path,
    layout: str,
    count: int,
    size: Tuple[int, int],
    num_classes: int,
    seed: int = 0,
    ignore_value: int = IGNORE_INDEX,
    cities: Sequence[str] = ("aachen", "bonn"),
) -> List[Tuple[str, np.ndarray]]:
    """Write `count` scenes under `root` in `layout` (cityscapes | ade20k | folder); returns
    (sample name, train-id label) pairs as evaluate names them."""
    if layout not in ("cityscapes", "ade20k", "folder"):
        raise ValueError(f"unknown layout {layout!r}")
    rng = np.random.default_rng(seed)
    written = []
    for i in range(count):
        pixels, label = scene(rng, size, num_classes)
        ignored = label == IGNORE_INDEX
        if layout == "cityscapes":
            city = cities[i % len(cities)]
            label_ids = cityscapes_train_to_label()[label]
            label_ids[ignored] = rng.choice([0, 1, 3])  # unlabeled, ego vehicle, out of roi: all ignored
            name = write_sample(root, layout, f"{city}_{i:06d}_000019", pixels, label_ids, city=city)[2]
        elif layout == "ade20k":
            annotation = np.where(ignored, 0, label.astype(np.int16) + 1)
            name = write_sample(root, layout, f"ADE_val_{i + 1:08d}", pixels, annotation)[2]
        else:
            name = write_sample(root, layout, f"scene_{i:04d}", pixels, np.where(ignored, ignore_value, label))[2]
        written.append((name, label))
    return written


#: the formats class pictures are written in, in turn (the suffixes evaluate must take, upper case too)
CLASS_PICTURE_SUFFIXES = (".png", ".jpg", ".JPEG", ".bmp", ".webp")
_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".webp": "WEBP"}


def class_picture(rng: np.random.Generator, label: int, num_classes: int, size: Tuple[int, int]) -> np.ndarray:
    """An H x W x 3 uint8 picture of class `label`: its colour's shape over about half the picture."""
    h, w = size
    colours = seeded_palette(num_classes).astype(np.int16)
    background = colours[(label + int(rng.integers(1, num_classes))) % num_classes] if num_classes > 1 else 0
    pixels = np.empty((h, w, 3), np.int16)
    pixels[:] = background
    cy, cx = h * rng.uniform(0.35, 0.65), w * rng.uniform(0.35, 0.65)
    ry, rx = h * rng.uniform(0.3, 0.45), w * rng.uniform(0.3, 0.45)
    yy, xx = np.mgrid[:h, :w]
    if rng.random() < 0.5:
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    else:
        inside = (np.abs(yy - cy) <= ry) & (np.abs(xx - cx) <= rx)
    pixels[inside] = colours[label]
    pixels += rng.normal(0, 16, size=(h, w, 3)).astype(np.int16)
    return np.clip(pixels, 0, 255).astype(np.uint8)


def write_class_folders(
    root: Path,
    num_classes: int,
    per_class: int,
    sizes: Tuple[int, int] = (40, 120),
    seed: int = 0,
    class_names: Optional[Sequence[str]] = None,
    suffixes: Sequence[str] = CLASS_PICTURE_SUFFIXES,
) -> List[Tuple[str, int]]:
    """`per_class` pictures of each class under root/<class folder>/ (sides drawn from `sizes`, the
    formats taken from `suffixes` in turn); the folder names sort in class order. Returns (path
    relative to root, class) pairs in the order evaluate reads them."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    names = list(class_names) if class_names is not None else [f"class_{c:03d}" for c in range(num_classes)]
    if sorted(names) != names or len(names) != num_classes:
        raise ValueError("class folder names must be one per class, in sorted order")
    written = []
    for label, name in enumerate(names):
        for i in range(per_class):
            size = (int(rng.integers(sizes[0], sizes[1] + 1)), int(rng.integers(sizes[0], sizes[1] + 1)))
            relative = f"{name}/{i:04d}{suffixes[(label + i) % len(suffixes)]}"
            picture = class_picture(rng, label, num_classes, size)
            write_bytes_atomic(root / relative, encode(picture, _FORMATS[Path(relative).suffix.lower()]))
            written.append((relative, label))
    return sorted(written)
