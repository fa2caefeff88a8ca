"""Calibration pictures for int8: a folder (or a dataset root) in, preprocessed model inputs out.

The int8 scales are only as good as the activations they were measured on, so calibration uses
the user's own pictures, preprocessed the way the model of the export's task sees pictures
(`PREPROCESSORS`, the one place that asks the task): a segmenter the whole picture resized to the
export's HxW (runtime/picture_files.py, as the reference inputs and evaluate), a classifier the
centre crop of upstream's classification protocol (runtime/classify_preprocess.py: short side to
ceil(res / 0.95), centre crop), both /255 and ImageNet mean/std; a SAM encoder SAM's transform
(runtime/sam_transforms.py: longest side to S, padded). A dataset root of the evaluate command
works as is: Cityscapes' leftImg8bit/ and ADE20K's images/ are walked, their label
folders (gtFine/, annotations/) never are, since label maps are pictures of the wrong kind.

torch-free: this runs on the exported fp32 ONNX's side of the pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional

import numpy as np

from ..artifact.options import DEFAULT_CALIB_COUNT, DEFAULT_CALIB_METHOD
from ..errors import BadInput
from ..runtime import classify_preprocess, processing, sam_transforms
from ..runtime.picture_files import NPY_SUFFIXES, PILLOW_SUFFIXES, load_rgb, preprocess
from ..tasks import CLASSIFICATION, SAM, SEGMENTATION, get_task

PICTURE_SUFFIXES = NPY_SUFFIXES + PILLOW_SUFFIXES
# dataset layouts (the evaluate issue's): the picture folder of each, if a root holds one
PICTURE_FOLDERS = ("leftImg8bit", "images")
# label maps live here; calibrating on them would measure the ranges of class ids, not of photos
LABEL_FOLDERS = frozenset({"gtFine", "gtCoarse", "annotations"})
# below these counts the ranges describe a few scenes rather than the deployment's data: a
# max calibration takes each tensor's extreme, histogram methods (entropy, percentile) need
# enough pixels of every kind of scene to place their clipping point
RECOMMENDED_MINIMUM = {"max": 16, "entropy": 32, "percentile": 32}


@dataclass(frozen=True)
class Preprocessor:
    """How a task's model sees a picture: picture from load_rgb, height, width -> 3 x H x W float32."""

    run: Callable[[np.ndarray, int, int], np.ndarray]
    description: str  # recorded in the manifest beside the pictures


def _sam_input(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """SAM's encoder input of a picture (load_rgb's uint8, or float in [0, 1] for 16-bit pictures)."""
    if pixels.dtype != np.uint8:
        pixels = np.clip(np.round(pixels * 255.0), 0, 255).astype(np.uint8)
    return sam_transforms.encoder_input(pixels, height)[0]


#: task name -> the preprocessing its calibration pictures get (the models' own input protocol)
PREPROCESSORS = {
    SEGMENTATION: Preprocessor(preprocess, processing.PREPROCESSING),
    CLASSIFICATION: Preprocessor(
        lambda pixels, height, width: classify_preprocess.preprocess(pixels, (height, width))[0],
        classify_preprocess.PREPROCESSING,
    ),
    SAM: Preprocessor(
        _sam_input, "RGB, longest side resized to S (Pillow bilinear), SAM's mean/std on 0-255, zeros bottom-right"
    ),
}


@dataclass
class CalibrationSet:
    root: Path
    files: List[Path]
    inputs: np.ndarray  # [N, 3, H, W] float32, preprocessed as the task's model sees pictures
    warnings: List[str] = field(default_factory=list)
    preprocessing: str = processing.PREPROCESSING

    def batches(self, batch: int) -> List[np.ndarray]:
        """Feeds of `batch` pictures, whole batches only (a remainder is dropped: `used` says how
        many are fed). ONNX Runtime's calibrators stack the feeds, so they must be of one size: a
        dynamic-batch graph is fed one picture at a time, which uses them all."""
        usable = self.used(batch)
        return [self.inputs[i : i + batch] for i in range(0, usable, batch)]

    def used(self, batch: int) -> int:
        return len(self.inputs) // batch * batch

    def to_dict(self) -> dict:
        return {
            "root": str(self.root),
            "count": len(self.files),
            "files": [str(f) for f in self.files],
            "preprocessing": self.preprocessing,
        }


def find_pictures(root: Path) -> List[Path]:
    """Every picture under `root`, sorted; a dataset root is narrowed to its picture folder."""
    root = Path(root)
    if not root.exists():
        raise BadInput(
            f"--calib-images {root}: no such folder", "pass a folder of .png/.jpg/.npy pictures or a dataset root"
        )
    if root.is_file():
        raise BadInput(f"--calib-images {root} is a file, not a folder", "pass the folder that holds the pictures")
    for name in PICTURE_FOLDERS:
        if (root / name).is_dir():
            root = root / name
            break
    found = []
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in PICTURE_SUFFIXES or not path.is_file():
            continue
        if LABEL_FOLDERS.intersection(path.relative_to(root).parts[:-1]):
            continue
        found.append(path)
    if not found:
        raise BadInput(
            f"--calib-images {root}: no .png, .jpg or .npy pictures in it or below it",
            "put calibration pictures there (photos like the ones the model will see)",
        )
    return found


def spread(files: List[Path], count: int) -> List[Path]:
    """`count` files evenly spread over the sorted list: every city/scene folder is represented,
    not just the first one, and the choice is reproducible."""
    if count >= len(files):
        return list(files)
    picks = np.linspace(0, len(files) - 1, count).round().astype(int)
    return [files[i] for i in picks]


def load_calibration(
    root: Path,
    height: int,
    width: int,
    count: int = DEFAULT_CALIB_COUNT,
    method: str = DEFAULT_CALIB_METHOD,
    progress: Optional[Callable[[int, int], None]] = None,
    task: Optional[str] = None,
) -> CalibrationSet:
    """Find, choose, check and preprocess `count` pictures as a model of `task` (None:
    segmentation) sees them; too few for `method` is a warning."""
    preprocessor = PREPROCESSORS[get_task(task).name]
    if count < 1:
        raise BadInput(f"--calib-count {count} must be at least 1", f"use e.g. --calib-count {DEFAULT_CALIB_COUNT}")
    files = spread(find_pictures(root), count)
    inputs = np.empty((len(files), 3, height, width), np.float32)
    for i, path in enumerate(files):
        inputs[i] = preprocessor.run(load_rgb(path), height, width)
        if progress is not None:
            progress(i + 1, len(files))
    warnings = []
    minimum = RECOMMENDED_MINIMUM.get(method, 1)
    if len(files) < minimum:
        warnings.append(
            f"only {len(files)} calibration picture(s) for --calib-method {method} "
            f"(at least {minimum} recommended): the int8 ranges may not cover the deployment's scenes"
        )
    return CalibrationSet(Path(root), files, inputs, warnings, preprocessor.description)
