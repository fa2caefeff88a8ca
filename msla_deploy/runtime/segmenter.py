"""`Segmenter`: a deployed model applied to pictures, torch-free.

    seg = Segmenter("artifacts/run/")        # export directory, .onnx or engine
    result = seg("street.png")               # path, PIL image or H x W x 3 uint8 array, any size
    result.labels                            # H x W train ids at the picture's own size
    result.colorize(), result.overlay(0.5)   # the dataset's palette
    seg.batch(pictures)                      # the artifact's static batch, filled and padded

Pre- and postprocessing are upstream's evaluation, shared with `evaluate`
(runtime/processing.py): cubic resize of the picture to the artifact's resolution, /255, ImageNet
mean/std; then the logits bicubically upsampled to the picture's size and argmax'ed.

With a labels head (`export --head labels`) and no logits output, the graph's labels are at the
artifact's resolution; for a picture of another size they are resized to it by nearest
neighbour (pixel centres). That is an approximation: upstream upsamples the logits straight to
the picture's size, and near class boundaries the two differ by up to half an artifact pixel. A
picture of exactly the artifact's resolution gets upstream's labels either way; an artifact with
both heads is used through its logits (exact at any size).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..artifact.names import LABELS_NAME, OUTPUT_NAME
from ..errors import BadInput
from ..limits import open_picture
from . import processing

__all__ = ["Segmenter", "Segmentation", "to_rgb"]

PictureLike = Union[str, Path, "PIL.Image.Image", np.ndarray]  # noqa: F821


def to_rgb(picture: PictureLike) -> np.ndarray:
    """H x W x 3 uint8 RGB from a path, a PIL image or an array (H x W grey, H x W x 1/3/4).

    Grey is repeated into RGB; alpha is dropped (the colour channels as stored, not composited);
    16-bit pictures keep their top 8 bits (a 16-bit PNG's 65535 is 255, not clipped at 255).
    """
    if isinstance(picture, (str, Path)):
        picture = _open_picture(Path(picture))
    if not isinstance(picture, np.ndarray):
        picture = _pil_to_array(picture)
    array = np.asarray(picture)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4) or min(array.shape[:2]) < 1:
        raise BadInput(f"a picture of shape {list(array.shape)} is not H x W, H x W x 3 or H x W x 4", "pass an RGB(A) or grey picture")
    array = array[:, :, :3]
    if array.dtype == np.uint16:
        array = (array >> 8).astype(np.uint8)
    elif array.dtype != np.uint8:
        raise BadInput(f"a picture array of dtype {array.dtype} is not uint8 (or uint16)", "pass uint8 RGB pixels (0..255)")
    return np.ascontiguousarray(array)


def _open_picture(path: Path):
    with open_picture(path, "pass a PNG, JPEG or another format Pillow reads") as image:
        image.load()
        return _pil_to_array(image)


def _pil_to_array(image) -> np.ndarray:
    """A PIL image as uint8/uint16 pixels: 16-bit grey modes as uint16, palettes and CMYK as RGB."""
    mode = getattr(image, "mode", None)
    if mode is None:
        raise BadInput(f"a {type(image).__name__} is not a picture", "pass a path, a PIL image or an H x W x 3 uint8 array")
    if mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit PNGs open as I;16 or I (32-bit ints)
        return np.clip(np.asarray(image, dtype=np.int64), 0, 65535).astype(np.uint16)
    if mode not in ("RGB", "RGBA", "L"):
        image = image.convert("RGBA" if "A" in mode or "transparency" in image.info else "RGB")
    return np.asarray(image)


@dataclass
class Segmentation:
    """The labels of one picture, at its own size, and what is needed to draw them."""

    labels: np.ndarray  # H x W train ids: uint8 (int32 for more than 256 classes)
    image: np.ndarray  # the H x W x 3 uint8 RGB picture the labels belong to
    palette: np.ndarray  # [C, 3] uint8 class colours
    class_names: Optional[Tuple[str, ...]] = None
    dataset: Optional[str] = None  # "cityscapes", "ade20k" or None
    exact: bool = True  # False: labels-head output resized by nearest neighbour (see the module doc)

    def colorize(self) -> np.ndarray:
        """H x W x 3 uint8: each pixel in its class's colour."""
        return self.palette[np.clip(self.labels, 0, len(self.palette) - 1)]

    def overlay(self, alpha: float = 0.5) -> np.ndarray:
        """H x W x 3 uint8: the picture blended with the colours (alpha: weight of the colours)."""
        if not 0.0 <= alpha <= 1.0:
            raise BadInput(f"overlay alpha {alpha} is outside 0..1", "use e.g. 0.5")
        mixed = (1.0 - alpha) * self.image.astype(np.float32) + alpha * self.colorize().astype(np.float32)
        return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)

    def areas(self) -> Dict[str, float]:
        """Fraction of the picture per class present, by class name (or id), largest first."""
        counts = np.bincount(self.labels.ravel().astype(np.int64), minlength=len(self.palette))
        total = max(int(self.labels.size), 1)
        rows = [(self._name(c), int(n) / total) for c, n in enumerate(counts) if n]
        return dict(sorted(rows, key=lambda r: -r[1]))

    def label_ids(self) -> np.ndarray:
        """Cityscapes label ids (as *_gtFine_labelIds.png and the official evaluator use them)."""
        from ..classes import cityscapes_train_to_label

        if self.dataset != "cityscapes":
            raise BadInput(f"label ids exist for Cityscapes models only (this one predicts {self.dataset or 'an unknown label set'})",
                           "use the train ids (result.labels)")
        return cityscapes_train_to_label()[self.labels]

    def _name(self, c: int) -> str:
        return self.class_names[c] if self.class_names and c < len(self.class_names) else str(c)


@dataclass
class _Head:
    """Which output the labels come from, and the graph's view of the model."""

    output: str  # OUTPUT_NAME (logits: exact) or LABELS_NAME (in-graph labels)
    input_name: str
    input_dtype: np.dtype
    batch: int  # pictures per run: the static batch, or the largest of a dynamic one
    resolution: Tuple[int, int]
    num_classes: Optional[int]
    model_name: str = ""
    notes: List[str] = field(default_factory=list)
    dynamic: bool = False  # a dynamic batch: runs of 1..batch pictures, no padding


class Segmenter:
    """Runs a deployed artifact on pictures. `backend`: auto, ort-cpu, ort-cuda, ort-trt, trt, torch
    (runtime.open's backends; `threads`: CPU threads of ONNX Runtime / PyTorch)."""

    def __init__(self, artifact: Union[str, Path], backend: str = "auto", *, threads: Optional[int] = None) -> None:
        self.session, model_name, num_classes = _open(artifact, backend, threads)
        self.threads = threads
        self._head = _describe(self.session, model_name, num_classes)
        from ..classes import class_names, dataset_for, palette

        head = self._head
        if head.num_classes is None:
            raise BadInput(f"{artifact}: cannot tell the model's number of classes", "use an export directory or an ONNX written by msla-deploy export")
        found = dataset_for(head.model_name, head.num_classes)
        self.dataset = found.dataset if found else None
        self.class_names = class_names(head.num_classes, head.model_name)
        self.palette = palette(head.num_classes, head.model_name)

    # --- what the artifact is ---------------------------------------------------------------
    @property
    def resolution(self) -> Tuple[int, int]:
        return self._head.resolution

    @property
    def batch_size(self) -> int:
        return self._head.batch

    @property
    def num_classes(self) -> int:
        return int(self._head.num_classes)

    @property
    def output(self) -> str:
        """The output the labels come from: "logits" (exact at any size) or "labels"."""
        return self._head.output

    def describe(self) -> Dict:
        return {**self.session.describe(), "labels_from": self.output, "resolution": list(self.resolution),
                "batch": self.batch_size, "num_classes": self.num_classes, "dataset": self.dataset}

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> "Segmenter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- running ------------------------------------------------------------------------------
    def __call__(self, picture: PictureLike) -> Segmentation:
        return self.batch([picture])[0]

    def batch(self, pictures: Sequence[PictureLike]) -> List[Segmentation]:
        """One Segmentation per picture. A static batch runs pictures in groups of that size, the
        last group padded with zeros (their outputs are dropped); a dynamic one in groups of up to
        its largest batch, unpadded."""
        rgb = [to_rgb(p) for p in pictures]
        results: List[Segmentation] = []
        n = self._head.batch
        for start in range(0, len(rgb), n):
            group = rgb[start:start + n]
            results += self._run_group(group)
        return results

    def _run_group(self, group: List[np.ndarray]) -> List[Segmentation]:
        head = self._head
        feed = np.zeros((len(group) if head.dynamic else head.batch, 3, *head.resolution), np.float32)
        for i, pixels in enumerate(group):
            feed[i] = processing.preprocess(pixels, head.resolution, threads=self.threads)[0]
        outputs = self.session.run({head.input_name: feed.astype(head.input_dtype, copy=False)})
        out = outputs[head.output]
        results = []
        for i, pixels in enumerate(group):
            size = pixels.shape[:2]
            if head.output == OUTPUT_NAME:
                labels, exact = processing.labels(out[i:i + 1], size, threads=self.threads)[0], True
            else:
                labels, exact = nearest_resize(out[i], size), tuple(size) == tuple(head.resolution)
            results.append(Segmentation(
                labels=labels.astype(np.uint8 if self.num_classes <= 256 else np.int32),
                image=pixels, palette=self.palette, class_names=self.class_names, dataset=self.dataset, exact=exact,
            ))
        return results


def nearest_resize(labels: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """Nearest neighbour by pixel centres: output pixel i takes source pixel floor((i + 0.5) * in / out),
    as ONNX Resize (mode nearest, half_pixel, round_prefer_ceil) defines it. Integer arithmetic, so
    exact ties do not depend on float rounding (Pillow's NEAREST differs from this at some ties)."""
    h, w = labels.shape
    oh, ow = int(size[0]), int(size[1])
    if (h, w) == (oh, ow):
        return labels
    rows = np.minimum((2 * np.arange(oh) + 1) * h // (2 * oh), h - 1)
    cols = np.minimum((2 * np.arange(ow) + 1) * w // (2 * ow), w - 1)
    return labels[rows[:, None], cols[None, :]]


def _describe(session, model_name: str, num_classes: Optional[int]) -> _Head:
    """The input to feed and the output to read, from the session's tensor specs."""
    if len(session.inputs) != 1:
        raise BadInput(f"the artifact has inputs {sorted(session.inputs)}; a segmenter feeds one picture tensor",
                       "export a one-input model (msla-deploy export)")
    spec = next(iter(session.inputs.values()))
    shape = tuple(spec.shape)
    dynamic = session.max_batch is not None
    if len(shape) != 4 or shape[1] != 3 or not (spec.static_but_batch if dynamic else spec.static):
        raise BadInput(f"input {spec.name!r} has shape {list(shape)}, not a static [N, 3, H, W]",
                       "export with static shapes (msla-deploy export --batch N, or --batch dynamic --max-batch N)")
    outputs = session.outputs
    if OUTPUT_NAME in outputs:
        name, num_classes = OUTPUT_NAME, tuple(outputs[OUTPUT_NAME].shape)[1]
    elif LABELS_NAME in outputs:
        name = LABELS_NAME
    else:
        raise BadInput(f"the artifact has outputs {sorted(outputs)}, neither {OUTPUT_NAME!r} nor {LABELS_NAME!r}",
                       "use an artifact of msla-deploy export")
    return _Head(
        output=name, input_name=spec.name, input_dtype=np.dtype(spec.dtype), batch=session.group, dynamic=dynamic,
        resolution=(int(shape[2]), int(shape[3])), num_classes=num_classes, model_name=model_name or "",
    )




# --- opening the artifact ------------------------------------------------------------------------
def _open(target: Union[str, Path], backend: str, threads: Optional[int]):
    """(session, model name, number of classes) through the runtime layer: an export directory,
    an .onnx or an engine, on any backend it offers."""
    from ..artifact.resolve import resolve
    from . import open as open_session

    artifact = resolve(Path(target))
    session = open_session(artifact, backend, threads=threads, command="predict")
    return session, artifact.model_name or "", artifact.num_classes
