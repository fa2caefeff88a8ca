"""Labelled datasets in their published layouts: find the pairs, decode them, check them.

- cityscapes: leftImg8bit/<split>/<city>/*_leftImg8bit.png with
  gtFine/<split>/<city>/*_gtFine_labelIds.png; the 34 label ids map to the 19 train ids, the
  rest is ignored (upstream's evaluation).
- ade20k: ADEChallengeData2016/images/<split>/*.jpg with annotations/<split>/*.png; 0 is
  ignored, every other value v is class v - 1.
- folder: images/*.{png,jpg,jpeg} with labels/*.png of the same stem holding train ids; the
  ignore value (default 255) counts for no class.

`--data` may be the dataset root or its split folder. A bad pair is a BadInput naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from ..choices import DATASETS
from ..classes import IGNORE_INDEX, ade20k_annotation_to_train, cityscapes_label_to_train
from ..errors import BadInput, MissingRuntime
from ..limits import open_picture

SPLIT = {"cityscapes": "val", "ade20k": "validation"}
CITYSCAPES_IMAGE_SUFFIX = "_leftImg8bit.png"
CITYSCAPES_LABEL_SUFFIX = "_gtFine_labelIds.png"
CITYSCAPES_MAX_LABEL_ID = 33
ADE20K_ROOT = "ADEChallengeData2016"
ADE20K_CLASSES = 150
FOLDER_IMAGES, FOLDER_LABELS = "images", "labels"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class Sample:
    name: str  # relative to the image folder, as reports and saved predictions name it
    image: Path
    label: Path


@dataclass
class Dataset:
    kind: str
    root: Path  # the folder the pairs were found under
    samples: List[Sample]
    ignore_index: int  # in the label files (folder); train ids use classes.IGNORE_INDEX
    num_classes: int

    def describe(self) -> dict:
        return {
            "kind": self.kind,
            "root": str(self.root),
            "images": len(self.samples),
            "num_classes": self.num_classes,
            "ignore": self.ignore_index if self.kind == "folder" else "per the dataset's layout",
        }


def _pillow():
    try:
        from PIL import Image
    except ImportError:
        raise MissingRuntime(
            "reading dataset pictures needs Pillow, which is not installed", "pip install pillow"
        ) from None
    return Image


# --- finding the pairs ---------------------------------------------------------------------------


def _cityscapes_dirs(data: Path) -> Optional[Tuple[Path, Path]]:
    """(image split folder, label split folder) for a root, a leftImg8bit/ folder or its split."""
    split = SPLIT["cityscapes"]
    candidates = [(data / "leftImg8bit" / split, data / "gtFine" / split)]
    if data.name == "leftImg8bit":
        candidates.append((data / split, data.parent / "gtFine" / split))
    if data.parent.name == "leftImg8bit":
        candidates.append((data, data.parent.parent / "gtFine" / data.name))
    return next(((i, lab) for i, lab in candidates if i.is_dir()), None)


def _ade20k_dirs(data: Path) -> Optional[Tuple[Path, Path]]:
    split = SPLIT["ade20k"]
    roots = [data / ADE20K_ROOT, data]
    candidates = [(r / "images" / split, r / "annotations" / split) for r in roots]
    if data.parent.name == "images":
        candidates.append((data, data.parent.parent / "annotations" / data.name))
    return next(((i, lab) for i, lab in candidates if i.is_dir()), None)


def _folder_dirs(data: Path) -> Optional[Tuple[Path, Path]]:
    if (data / FOLDER_IMAGES).is_dir():
        return data / FOLDER_IMAGES, data / FOLDER_LABELS
    return None


FINDERS = {"cityscapes": _cityscapes_dirs, "ade20k": _ade20k_dirs, "folder": _folder_dirs}
LAYOUT_HINT = (
    "give the dataset root or its split folder: leftImg8bit/val + gtFine/val (cityscapes), "
    "ADEChallengeData2016/images/validation + annotations/validation (ade20k), or images/ + labels/ (folder)"
)


def _pairs(kind: str, images: Path, labels: Path) -> List[Sample]:
    samples = []
    if kind == "cityscapes":
        for image in sorted(images.glob(f"*/*{CITYSCAPES_IMAGE_SUFFIX}")):
            stem = image.name[: -len(CITYSCAPES_IMAGE_SUFFIX)]
            samples.append(
                Sample(
                    f"{image.parent.name}/{stem}",
                    image,
                    labels / image.parent.name / f"{stem}{CITYSCAPES_LABEL_SUFFIX}",
                )
            )
    else:
        suffixes = (".jpg",) if kind == "ade20k" else IMAGE_SUFFIXES
        for image in sorted(p for p in images.iterdir() if p.is_file() and p.suffix.lower() in suffixes):
            samples.append(Sample(image.stem, image, labels / f"{image.stem}.png"))
    return samples


def find_dataset(data: Path, kind: str, num_classes: int, ignore_index: int = IGNORE_INDEX) -> Dataset:
    data = Path(data)
    if kind not in DATASETS:
        raise BadInput(f"--dataset {kind!r} is unknown", f"choose one of {', '.join(DATASETS)}")
    if not data.is_dir():
        raise BadInput(f"--data {data}: not a directory", LAYOUT_HINT)
    kinds = list(FINDERS) if kind == "auto" else [kind]
    for name in kinds:
        dirs = FINDERS[name](data)
        if dirs is None:
            continue
        samples = _pairs(name, *dirs)
        if not samples:
            raise BadInput(f"--data {data}: no {name} pictures in {dirs[0]}", LAYOUT_HINT)
        return Dataset(name, dirs[0], samples, ignore_index, num_classes)
    what = "a dataset layout" if kind == "auto" else f"the {kind} layout"
    raise BadInput(f"--data {data}: not {what}", LAYOUT_HINT)


# --- reading a pair ------------------------------------------------------------------------------


def picture_size(path: Path) -> Tuple[int, int]:
    """(H, W) from the picture's header, nothing decoded."""
    _pillow()
    with open_picture(path, "replace the file, or pass --skip-bad") as image:
        return int(image.size[1]), int(image.size[0])


def read_image(path: Path) -> np.ndarray:
    _pillow()  # the missing-Pillow error with evaluate's fix
    with open_picture(path, "replace the file, or pass --skip-bad") as image:
        # an RGB picture as it was decoded (convert() would copy it once more)
        return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))


def _read_label_file(path: Path, table: Optional[np.ndarray]) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """(the label's ids, table[ids] or None): Pillow maps an 8-bit grey label through the
    256-entry table in C while it has it (four times numpy's lookup); other modes are left to
    the caller."""
    if not path.is_file():
        raise BadInput(f"{path}: label missing", "every picture needs its label file, or pass --skip-bad")
    _pillow()
    fix = "replace the file, or pass --skip-bad"
    try:
        # open_picture: the declared size against the pixel limit before decoding (a label PNG
        # can be a decompression bomb as well as a photo can)
        with open_picture(path, fix) as image:
            if image.mode not in ("L", "P", "I", "I;16"):
                raise BadInput(
                    f"{path}: label PNG has mode {image.mode}, not one channel of class ids",
                    "store labels as 8-bit grey or palette PNGs",
                )
            raw = np.asarray(image)
            mapped = np.asarray(image.point(table.tolist())) if table is not None and image.mode == "L" else None
    except (OSError, ValueError) as exc:
        raise BadInput(f"{path}: not a readable label PNG ({exc})", fix) from None
    if raw.dtype.kind == "i" and raw.size and int(raw.min()) < 0:
        # 32-bit labels: a negative id would wrap into a class
        raise BadInput(f"{path}: label id {int(raw.min())} is negative", fix)
    return raw, mapped


def _label_table(dataset: Dataset) -> Optional[np.ndarray]:
    """The 256-entry lookup from the file's ids to train ids (None: the ids are train ids already)."""
    if dataset.kind == "cityscapes":
        return cityscapes_label_to_train()
    if dataset.kind == "ade20k":
        return ade20k_annotation_to_train()
    if dataset.ignore_index == IGNORE_INDEX:
        return None
    table = np.arange(256, dtype=np.uint8)
    table[dataset.ignore_index] = IGNORE_INDEX
    return table


def read_label(dataset: Dataset, sample: Sample) -> np.ndarray:
    """The label as train ids (uint8, classes.IGNORE_INDEX for ignored pixels)."""
    table = _label_table(dataset)
    raw, mapped = _read_label_file(sample.label, table)
    hint = "check the label file, or pass --skip-bad"
    if dataset.kind == "cityscapes":
        bad = (raw > CITYSCAPES_MAX_LABEL_ID) & (raw != 255)
        if bad.any():
            raise BadInput(
                f"{sample.label}: label id {int(raw[bad][0])} out of range (Cityscapes label ids are 0-33)", hint
            )
    elif dataset.kind == "ade20k":
        if (raw > ADE20K_CLASSES).any():
            raise BadInput(
                f"{sample.label}: annotation value {int(raw.max())} out of range (ADE20K has 1-150, 0 ignored)", hint
            )
    else:
        bad = (raw >= dataset.num_classes) & (raw != dataset.ignore_index)
        if bad.any():
            raise BadInput(
                f"{sample.label}: class id {int(raw[bad][0])} out of range (the model has {dataset.num_classes} "
                f"classes, ignore value {dataset.ignore_index})",
                "check the label file or --ignore-index, or pass --skip-bad",
            )
    # every id is in 0-255 now
    if table is None:
        train = raw if raw.dtype == np.uint8 else raw.astype(np.uint8)
    else:
        train = mapped if mapped is not None else np.take(table, raw.astype(np.uint8))
        if dataset.kind != "folder" and int(table[table != IGNORE_INDEX].max()) >= dataset.num_classes:
            # more classes than the model
            valid = train != IGNORE_INDEX
            if valid.any() and int(train[valid].max()) >= dataset.num_classes:
                raise BadInput(
                    f"{sample.label}: class {int(train[valid].max())} out of range (the model has "
                    f"{dataset.num_classes} classes)",
                    hint,
                )
    return train


def read_pair(dataset: Dataset, sample: Sample) -> Tuple[np.ndarray, np.ndarray]:
    """(H x W x 3 uint8 RGB, H x W uint8 train ids); BadInput naming the file when it is bad."""
    label = read_label(dataset, sample)
    pixels = read_image(sample.image)
    if pixels.shape[:2] != label.shape:
        raise BadInput(
            f"{sample.label}: label is {label.shape[1]}x{label.shape[0]} but its picture {sample.image.name} is "
            f"{pixels.shape[1]}x{pixels.shape[0]}",
            "labels must have their picture's size, or pass --skip-bad",
        )
    return pixels, label
