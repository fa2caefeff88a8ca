"""The label sets of the datasets the zoo is trained on: class names, palettes, label-id tables.

One owner for these facts: reports (validate, evaluate), the prediction pictures and the dataset
readers import them from here.

- Cityscapes: 19 evaluation classes in train-id order with the dataset's customary colours, and
  the table from the 34 label ids of `*_gtFine_labelIds.png` to the train ids (every other id,
  and license plate's -1 stored as 255, is ignored), as upstream's evaluation maps them.
- ADE20K (SceneParsing, ADEChallengeData2016): the 150 classes in annotation order (annotation
  value v is class v - 1; 0 is "other" and ignored). The palette is ours: fixed, well-spread
  colours from a seeded generator (the classes have no single customary palette).
- ImageNet-1k: the 1000 classification classes in index order, as data
  (msla_deploy/data/imagenet1k_classes.txt, read on first use; msla_deploy/data/README.md says
  where it came from). A user's own class names come from a labels file (`read_labels`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from .choices import IGNORE_INDEX  # noqa: F401 (defined numpy-free: evaluate --ignore-index's default)
from .errors import BadInput

CITYSCAPES_CLASSES = (
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
)
CITYSCAPES_COLORS = (
    (128, 64, 128),
    (244, 35, 232),
    (70, 70, 70),
    (102, 102, 156),
    (190, 153, 153),
    (153, 153, 153),
    (250, 170, 30),
    (220, 220, 0),
    (107, 142, 35),
    (152, 251, 152),
    (70, 130, 180),
    (220, 20, 60),
    (255, 0, 0),
    (0, 0, 142),
    (0, 0, 70),
    (0, 60, 100),
    (0, 80, 100),
    (0, 0, 230),
    (119, 11, 32),
)
# label id -> train id for the 19 evaluated classes, in train-id order (cityscapesScripts' labels.py)
CITYSCAPES_LABEL_IDS = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)

ADE20K_CLASSES = (
    "wall",
    "building",
    "sky",
    "floor",
    "tree",
    "ceiling",
    "road",
    "bed",
    "windowpane",
    "grass",
    "cabinet",
    "sidewalk",
    "person",
    "earth",
    "door",
    "table",
    "mountain",
    "plant",
    "curtain",
    "chair",
    "car",
    "water",
    "painting",
    "sofa",
    "shelf",
    "house",
    "sea",
    "mirror",
    "rug",
    "field",
    "armchair",
    "seat",
    "fence",
    "desk",
    "rock",
    "wardrobe",
    "lamp",
    "bathtub",
    "railing",
    "cushion",
    "base",
    "box",
    "column",
    "signboard",
    "chest of drawers",
    "counter",
    "sand",
    "sink",
    "skyscraper",
    "fireplace",
    "refrigerator",
    "grandstand",
    "path",
    "stairs",
    "runway",
    "case",
    "pool table",
    "pillow",
    "screen door",
    "stairway",
    "river",
    "bridge",
    "bookcase",
    "blind",
    "coffee table",
    "toilet",
    "flower",
    "book",
    "hill",
    "bench",
    "countertop",
    "stove",
    "palm",
    "kitchen island",
    "computer",
    "swivel chair",
    "boat",
    "bar",
    "arcade machine",
    "hovel",
    "bus",
    "towel",
    "light",
    "truck",
    "tower",
    "chandelier",
    "awning",
    "streetlight",
    "booth",
    "television receiver",
    "airplane",
    "dirt track",
    "apparel",
    "pole",
    "land",
    "bannister",
    "escalator",
    "ottoman",
    "bottle",
    "buffet",
    "poster",
    "stage",
    "van",
    "ship",
    "fountain",
    "conveyer belt",
    "canopy",
    "washer",
    "plaything",
    "swimming pool",
    "stool",
    "barrel",
    "basket",
    "waterfall",
    "tent",
    "bag",
    "minibike",
    "cradle",
    "oven",
    "ball",
    "food",
    "step",
    "tank",
    "trade name",
    "microwave",
    "pot",
    "animal",
    "bicycle",
    "lake",
    "dishwasher",
    "screen",
    "blanket",
    "sculpture",
    "hood",
    "sconce",
    "vase",
    "traffic light",
    "tray",
    "ashcan",
    "fan",
    "pier",
    "crt screen",
    "plate",
    "monitor",
    "bulletin board",
    "shower",
    "radiator",
    "glass",
    "clock",
    "flag",
)


def seeded_palette(num_classes: int) -> np.ndarray:
    """Fixed, well-spread colours for any class count: [C, 3] uint8 (the same on every run)."""
    return np.random.default_rng(150).integers(40, 256, size=(num_classes, 3)).astype(np.uint8)


@dataclass(frozen=True)
class ClassSet:
    dataset: str  # "cityscapes" | "ade20k"
    names: Tuple[str, ...]
    colors: Tuple[Tuple[int, int, int], ...]

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def palette(self) -> np.ndarray:
        return np.array(self.colors, np.uint8)


CITYSCAPES = ClassSet("cityscapes", CITYSCAPES_CLASSES, CITYSCAPES_COLORS)
ADE20K = ClassSet(
    "ade20k", ADE20K_CLASSES, tuple(tuple(int(v) for v in c) for c in seeded_palette(len(ADE20K_CLASSES)))
)
CLASS_SETS = {c.dataset: c for c in (CITYSCAPES, ADE20K)}


def dataset_for(model_name: str, num_classes: int) -> Optional[ClassSet]:
    """The label set a model predicts: the dataset its name says (zoo names end in it), when the
    class count agrees; a name that names no dataset is matched by its class count alone."""
    name = (model_name or "").lower()
    named = [c for key, c in CLASS_SETS.items() if key in name]
    if named:
        return named[0] if named[0].num_classes == num_classes else None
    by_count = [c for c in CLASS_SETS.values() if c.num_classes == num_classes]
    return by_count[0] if by_count else None


def class_names(num_classes: int, model_name: str = "") -> Optional[Tuple[str, ...]]:
    found = dataset_for(model_name, num_classes)
    return found.names if found else None


def palette(num_classes: int, model_name: str = "") -> np.ndarray:
    """[C, 3] uint8 colours for the classes (the dataset's where known)."""
    found = dataset_for(model_name, num_classes)
    return found.palette if found else seeded_palette(num_classes)


def cityscapes_label_to_train() -> np.ndarray:
    """A 256-entry lookup: label id (uint8 pixel of *_gtFine_labelIds.png) -> train id, else ignore."""
    table = np.full(256, IGNORE_INDEX, np.uint8)
    table[list(CITYSCAPES_LABEL_IDS)] = np.arange(len(CITYSCAPES_LABEL_IDS), dtype=np.uint8)
    return table


def cityscapes_train_to_label() -> np.ndarray:
    """A 256-entry lookup: train id -> label id (for writing predictions in the labelIds format);
    ignore -> 0 (unlabeled)."""
    table = np.zeros(256, np.uint8)
    table[: len(CITYSCAPES_LABEL_IDS)] = CITYSCAPES_LABEL_IDS
    return table


def ade20k_annotation_to_train() -> np.ndarray:
    """A 256-entry lookup: ADE20K annotation value -> train id (0 "other" ignored, the rest shifted by one)."""
    table = np.full(256, IGNORE_INDEX, np.uint8)
    table[1 : len(ADE20K_CLASSES) + 1] = np.arange(len(ADE20K_CLASSES), dtype=np.uint8)
    return table


IMAGENET1K = "imagenet-1k"
IMAGENET1K_NUM_CLASSES = 1000
IMAGENET1K_FILE = Path(__file__).resolve().parent / "data" / "imagenet1k_classes.txt"


@functools.lru_cache(maxsize=None)
def imagenet1k_classes() -> Tuple[str, ...]:
    """The 1000 ImageNet-1k class names, class index i on line i (read once)."""
    names = tuple(line.strip() for line in IMAGENET1K_FILE.read_text(encoding="utf-8").splitlines())
    if len(names) != IMAGENET1K_NUM_CLASSES or not all(names):  # shipped with the package: a broken install
        raise RuntimeError(f"{IMAGENET1K_FILE} holds {len(names)} lines, not the {IMAGENET1K_NUM_CLASSES} class names")
    return names


def read_labels(path: Path, num_classes: int, flag: str = "--labels") -> Tuple[str, ...]:
    """A labels file: one class name a line, line i the name of class i (Triton's label file
    layout); exactly `num_classes` names (blank lines at the end are ignored)."""
    path = Path(path)
    fix = f"write one class name a line, {num_classes} lines in class-index order"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput(f"{flag} {path}: no such file", fix) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{flag} {path}: cannot be read as UTF-8 text ({type(exc).__name__})", fix) from None
    names = [line.strip() for line in text.rstrip("\r\n").splitlines()] if text.strip() else []
    if len(names) != num_classes:
        raise BadInput(f"{flag} {path}: {len(names)} names for a model of {num_classes} classes", fix)
    blank = [i for i, name in enumerate(names) if not name]
    if blank:
        raise BadInput(f"{flag} {path}: line {blank[0] + 1} is blank", fix)
    return tuple(names)
