"""Labelled classification datasets: an ImageNet-style class folder, or a list file.

- imagefolder: one sub-folder per class, the sorted folder names being the class indices (as
  torchvision's ImageFolder orders them, which upstream's evaluation reads ImageNet val with),
  the pictures anywhere inside each class folder (sorted). Hidden entries (a leading dot: macOS
  `._` files, `.ipynb_checkpoints`) are neither classes nor pictures, and links to folders below a
  class folder are not followed (a loop would never end).
- list: a text file of `relative/path.JPEG INDEX` lines (ImageNet's val lists), the paths relative
  to the list's folder; blank lines and `#` comments are skipped.

Every problem of the dataset itself (no class folder, an empty class, a malformed line, an index
the model has no class for, a missing file) is a BadInput naming it before any picture is decoded;
a picture that does not decode is the pass's (evaluate --skip-bad).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from ..errors import BadInput
from .datasets import FINDERS

IMAGEFOLDER, LIST = "imagefolder", "list"
#: picture suffixes of a class folder (torchvision's ImageFolder's, which Pillow decodes)
PICTURE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
LAYOUT_HINT = (
    "give an ImageNet-style folder (one sub-folder per class, sorted names = class indices, pictures inside) "
    "or a list file of 'relative/path.JPEG INDEX' lines"
)
SHOWN = 3  # examples named in an error line


@dataclass(frozen=True)
class ClassSample:
    name: str  # relative to the dataset root, as reports name it
    image: Path
    label: int


@dataclass
class ClassDataset:
    kind: str  # imagefolder | list
    root: Path  # the class folder's root, or the list's folder
    source: Path  # what --data named
    samples: List[ClassSample]
    class_names: Optional[List[str]]  # the class folders' names (imagefolder); None for a list
    classes: int  # class folders, or the distinct indices a list names (not its highest index + 1)

    def describe(self) -> dict:
        return {"kind": self.kind, "root": str(self.source), "images": len(self.samples), "classes": self.classes}


def _visible(name: str) -> bool:
    return not name.startswith(".")


def _is_picture(name: str) -> bool:
    return _visible(name) and name.lower().endswith(PICTURE_SUFFIXES)


def _pictures_in(folder: Path) -> List[Path]:
    """The pictures anywhere under `folder`, in torchvision's order (sorted walk, sorted names)."""
    walked = []
    for top, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if _visible(d)]  # pruned in place: os.walk then skips them
        walked.append((top, files))
    return [Path(top) / f for top, files in sorted(walked) for f in sorted(files) if _is_picture(f)]


def _segmentation_layout(data: Path) -> Optional[str]:
    return next((name for name, finder in FINDERS.items() if finder(data) is not None), None)


def _image_folder(data: Path, num_classes: int) -> ClassDataset:
    classes = sorted(e.name for e in os.scandir(data) if e.is_dir() and _visible(e.name))
    if not classes:
        loose = sum(1 for e in os.scandir(data) if e.is_file() and _is_picture(e.name))
        found = f"{loose} picture(s) directly in it and no class folder" if loose else "no class folder in it"
        raise BadInput(f"--data {data}: {found}", LAYOUT_HINT)
    layout = _segmentation_layout(data)
    if layout is not None:
        raise BadInput(
            f"--data {data}: a {layout} segmentation dataset, not class folders",
            f"a classifier is evaluated on {LAYOUT_HINT.split('give ', 1)[1]}",
        )
    if len(classes) > num_classes:
        raise BadInput(
            f"--data {data}: {len(classes)} class folders, and the model has {num_classes} classes",
            "the sorted folder names are the class indices: keep one folder per class of the model",
        )
    samples = []
    for index, name in enumerate(classes):
        pictures = _pictures_in(data / name)
        if not pictures:
            raise BadInput(
                f"--data {data}: class folder {name!r} (class {index}) has no pictures ({', '.join(PICTURE_SUFFIXES)})",
                "put its pictures in it, or remove the folder (the sorted folder names are the class indices)",
            )
        samples.extend(ClassSample(p.relative_to(data).as_posix(), p, index) for p in pictures)
    return ClassDataset(IMAGEFOLDER, data, data, samples, classes, len(classes))


def _list_lines(path: Path) -> List[str]:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise BadInput(f"--data {path}: not a text list (not UTF-8)", LAYOUT_HINT) from None
    except OSError as exc:
        raise BadInput(f"--data {path}: cannot be read ({exc.strerror or exc})", LAYOUT_HINT) from None
    return text.splitlines()


def _list_file(path: Path, num_classes: int, check_files: bool) -> ClassDataset:
    root = path.parent
    samples = []
    for number, raw in enumerate(_list_lines(path), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"--data {path}, line {number}"
        parts = line.rsplit(None, 1)  # the index is the last field: a path may hold spaces
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise BadInput(f"{where}: {line[:80]!r} is not 'PATH INDEX'", "write each line as relative/path.JPEG 65")
        rel, index = parts[0], int(parts[1])
        if not 0 <= index < num_classes:
            raise BadInput(
                f"{where}: class index {index} is out of range (the model has {num_classes} classes: "
                f"0-{num_classes - 1})",
                "use the model's class indices (ImageNet: 0-999, in sorted synset order)",
            )
        image = root / rel
        if check_files and not image.is_file():
            raise BadInput(
                f"{where}: {rel} does not exist ({image})",
                f"paths are relative to the list's folder {root}; fix the line or the file, or pass --skip-bad",
            )
        samples.append(ClassSample(rel, image, index))
    if not samples:
        raise BadInput(f"--data {path}: no 'PATH INDEX' lines in it", LAYOUT_HINT)
    return ClassDataset(LIST, root, path, samples, None, len({s.label for s in samples}))


def find_class_dataset(data: Path, num_classes: int, check_files: bool = True) -> ClassDataset:
    """The dataset `--data` names: a class folder or a list file. `check_files`: a list's missing
    file is BadInput now (without: the pass finds it, and --skip-bad skips it)."""
    data = Path(data)
    if data.is_dir():
        return _image_folder(data, num_classes)
    if data.is_file():
        return _list_file(data, num_classes, check_files)
    raise BadInput(f"--data {data}: no such folder or file", LAYOUT_HINT)
