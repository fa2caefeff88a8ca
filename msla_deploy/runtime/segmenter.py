"""`Segmenter`: a deployed model applied to pictures, torch-free.

    seg = Segmenter("artifacts/run/")        # export directory, .onnx or engine
    result = seg("street.png")               # path, PIL image or H x W x 3 uint8 array, any size
    result.labels                            # H x W train ids at the picture's own size
    result.colorize(), result.overlay(0.5)   # the dataset's palette
    seg.batch(pictures)                      # the artifact's static batch, filled and padded
    result.nonfinite                         # pixels whose labels came from NaN/Inf logits (0 for a sound model)
    seg.weights_source                       # "checkpoint", "random", "factory" (None: no manifest says)

Pre- and postprocessing are upstream's evaluation, shared with `evaluate`
(runtime/processing.py): cubic resize of the picture to the artifact's resolution, /255, ImageNet
mean/std; then the logits bicubically upsampled to the picture's size and argmax'ed. Pictures
are decoded by the rules `reference --inputs` uses (runtime/picture_files.py): 8-bit as is, 16-bit grey
scaled to [0, 1], 32-bit integer and float pictures (no fixed white level) refused.

An artifact exported with random weights warns once, when the Segmenter is made (warnings.warn
with Artifact.weights_warning); a graph whose declared tensors do not fit the memory available is
refused before anything is allocated.

With a labels head (`export --head labels`) and no logits output, the graph's labels are at the
artifact's resolution; for a picture of another size they are resized to it by nearest
neighbour (pixel centres). That is an approximation: upstream upsamples the logits straight to
the picture's size, and near class boundaries the two differ by up to half an artifact pixel. A
picture of exactly the artifact's resolution gets upstream's labels either way; an artifact with
both heads is used through its logits (exact at any size).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..artifact.names import LABELS_NAME, OUTPUT_NAME
from ..errors import BadInput
from ..limits import check_tensors_fit, open_picture
from ..tasks import SAM, SEGMENTATION, get_task
from . import processing

if TYPE_CHECKING:  # resolve imports onnx: only where an Artifact is given
    from ..artifact.resolve import Artifact

__all__ = ["Segmenter", "Segmentation", "RandomWeightsWarning", "to_rgb", "decode"]

PictureLike = Union[str, Path, "PIL.Image.Image", np.ndarray, "Picture"]  # noqa: F821


class RandomWeightsWarning(UserWarning):
    """A Segmenter of an artifact exported with random weights: its labels mean nothing."""


def to_rgb(picture: PictureLike) -> np.ndarray:
    """H x W x 3 uint8 RGB, as drawn, from a path, a PIL image or an array (H x W grey, H x W x 1/3/4).

    Grey is repeated into RGB; alpha is dropped (the colour channels as stored, not composited);
    16-bit pictures show their top 8 bits (a 16-bit PNG's 65535 is 255, not clipped at 255). What
    the model is fed from a 16-bit picture is its values scaled to [0, 1] (see `decode`).
    """
    return decode(picture).image


@dataclass
class Picture:
    """A decoded picture: what the model is fed and what is drawn."""

    pixels: np.ndarray  # H x W x 3: uint8, or float32 in [0, 1] for 16-bit pictures (processing.preprocess takes both)
    image: np.ndarray  # H x W x 3 uint8: the picture the labels are drawn over


def decode(picture: PictureLike) -> Picture:
    """A path, PIL image or array as the model's input and as a drawable picture, by the rules
    `reference --inputs` decodes pictures with (runtime/picture_files.py pillow_pixels: 8-bit as is,
    16-bit grey divided by 65535; 32-bit integer and floating-point pictures, which have no fixed
    white level, refused). Arrays: uint8 as is, uint16 divided by 65535 like a 16-bit file."""
    if isinstance(picture, Picture):  # decoded already (predict decodes first, to skip what it cannot read)
        return picture
    if isinstance(picture, (str, Path)):
        array = _open_picture(Path(picture))
    elif isinstance(picture, np.ndarray):
        array = picture
    else:
        array = _pil_pixels(picture, f"a PIL image of mode {getattr(picture, 'mode', None)}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4) or min(array.shape[:2]) < 1:
        raise BadInput(
            f"a picture of shape {list(array.shape)} is not H x W, H x W x 3 or H x W x 4",
            "pass an RGB(A) or grey picture",
        )
    array = np.ascontiguousarray(array[:, :, :3])
    if array.dtype == np.uint8:
        return Picture(array, array)
    if array.dtype == np.uint16:  # an array: the 16-bit rule of the files
        return Picture(array.astype(np.float32) / 65535.0, (array >> 8).astype(np.uint8))
    if array.dtype == np.float32 and not isinstance(picture, np.ndarray):  # a 16-bit picture, scaled by pillow_pixels
        return Picture(array, (np.rint(array * 65535.0).astype(np.uint16) >> 8).astype(np.uint8))
    raise BadInput(f"a picture array of dtype {array.dtype} is not uint8 (or uint16)", "pass uint8 RGB pixels (0..255)")


def _open_picture(path: Path) -> np.ndarray:
    with open_picture(path, "pass a PNG, JPEG or another format Pillow reads") as image:
        image.load()
        return _pil_pixels(image, str(path))


def _pil_pixels(image, name: str) -> np.ndarray:
    """uint8 RGB, or float32 grey in [0, 1] for a 16-bit picture, by the one rule for Pillow pictures."""
    from .picture_files import pillow_pixels

    if getattr(image, "mode", None) is None:
        raise BadInput(
            f"a {type(image).__name__} is not a picture", "pass a path, a PIL image or an H x W x 3 uint8 array"
        )
    return pillow_pixels(image, name)


@dataclass
class Segmentation:
    """The labels of one picture, at its own size, and what is needed to draw them."""

    labels: np.ndarray  # H x W train ids: uint8 (int32 for more than 256 classes)
    image: np.ndarray  # the H x W x 3 uint8 RGB picture the labels belong to
    palette: np.ndarray  # [C, 3] uint8 class colours
    class_names: Optional[Tuple[str, ...]] = None
    dataset: Optional[str] = None  # "cityscapes", "ade20k" or None
    exact: bool = True  # False: labels-head output resized by nearest neighbour (see the module doc)
    # pixels whose labels came from non-finite logits (NaN/Inf: their label means nothing); None
    # where the artifact gives labels only, which cannot tell
    nonfinite: Optional[int] = 0

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
            raise BadInput(
                "label ids exist for Cityscapes models only (this one predicts "
                f"{self.dataset or 'an unknown label set'})",
                "use the train ids (result.labels)",
            )
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


class SessionOwner:
    """What the Segmenter and the Classifier share: one runtime session, closed by `close()` or by
    leaving a `with` block."""

    def close(self) -> None:
        self.session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Segmenter(SessionOwner):
    """Runs a deployed artifact on pictures. `backend`: auto, ort-cpu, ort-cuda, ort-trt, trt, torch
    (runtime.open's backends; `threads`: CPU threads of ONNX Runtime / PyTorch)."""

    def __init__(
        self, artifact: Union[str, Path, Artifact], backend: str = "auto", *, threads: Optional[int] = None
    ) -> None:
        resolved = _resolve(artifact)
        require_task(
            resolved, SEGMENTATION, "a Segmenter", "use msla_deploy.Classifier (msla-deploy predict runs either kind)"
        )
        #: where the weights came from (the manifest's weights.source; None for a bare .onnx or engine)
        self.weights_source: Optional[str] = resolved.weights_source
        #: what to say about them: the random-weights warning, or None
        self.weights_warning: Optional[str] = resolved.weights_warning
        self.session = _open(resolved, backend, threads)
        try:
            self._head = _describe(self.session, resolved.model_name or "", resolved.num_classes)
            if self._head.num_classes is None:
                raise BadInput(
                    f"{artifact}: cannot tell the model's number of classes",
                    "use an export directory or an ONNX written by msla-deploy export",
                )
            _check_fits(self.session, self._head, resolved.name)
        except BaseException:
            self.session.close()
            raise
        self.threads = threads
        from ..classes import class_names, dataset_for, palette

        head = self._head
        found = dataset_for(head.model_name, head.num_classes)
        self.dataset = found.dataset if found else None
        self.class_names = class_names(head.num_classes, head.model_name)
        self.palette = palette(head.num_classes, head.model_name)
        if self.weights_warning:  # once, here: not on every picture
            warnings.warn(f"{resolved.name}: {self.weights_warning}", RandomWeightsWarning, stacklevel=2)

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
        return {
            **self.session.describe(),
            "labels_from": self.output,
            "resolution": list(self.resolution),
            "batch": self.batch_size,
            "num_classes": self.num_classes,
            "dataset": self.dataset,
        }

    # --- running ------------------------------------------------------------------------------
    def __call__(self, picture: PictureLike) -> Segmentation:
        return self.batch([picture])[0]

    def batch(self, pictures: Sequence[PictureLike]) -> List[Segmentation]:
        """One Segmentation per picture. A static batch runs pictures in groups of that size, the
        last group padded with zeros (their outputs are dropped); a dynamic one in groups of up to
        its largest batch, unpadded."""
        decoded = [decode(p) for p in pictures]
        results: List[Segmentation] = []
        n = self._head.batch
        for start in range(0, len(decoded), n):
            group = decoded[start : start + n]
            results += self._run_group(group)
        return results

    def _run_group(self, group: List[Picture]) -> List[Segmentation]:
        head = self._head
        feed = np.zeros((len(group) if head.dynamic else head.batch, 3, *head.resolution), np.float32)
        for i, picture in enumerate(group):
            feed[i] = processing.preprocess(picture.pixels, head.resolution, threads=self.threads, floats=True)[0]
        outputs = self.session.run({head.input_name: feed.astype(head.input_dtype, copy=False)})
        out = outputs[head.output]
        results = []
        for i, picture in enumerate(group):
            size = picture.image.shape[:2]
            if head.output == OUTPUT_NAME:
                logits = out[i : i + 1]
                labels, exact = processing.labels(logits, size, threads=self.threads)[0], True
                unknown = processing.unlabelled(logits, size)
                nonfinite: Optional[int] = 0 if unknown is None else int(unknown.sum())
            else:
                labels, exact = nearest_resize(out[i], size), tuple(size) == tuple(head.resolution)
                nonfinite = None
            results.append(
                Segmentation(
                    labels=labels.astype(np.uint8 if self.num_classes <= 256 else np.int32),
                    image=picture.image,
                    palette=self.palette,
                    class_names=self.class_names,
                    dataset=self.dataset,
                    exact=exact,
                    nonfinite=nonfinite,
                )
            )
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


def picture_input(session, who: str):
    """The session's one picture input (its TensorSpec) and whether its batch is dynamic: a
    static [N, 3, H, W], or [?, 3, H, W] of a dynamic-batch export. `who` names the caller in errors."""
    if len(session.inputs) != 1:
        raise BadInput(
            f"the artifact has inputs {sorted(session.inputs)}; {who} feeds one picture tensor",
            "export a one-input model (msla-deploy export)",
        )
    spec = next(iter(session.inputs.values()))
    shape = tuple(spec.shape)
    dynamic = session.max_batch is not None
    if len(shape) != 4 or shape[1] != 3 or not (spec.static_but_batch if dynamic else spec.static):
        raise BadInput(
            f"input {spec.name!r} has shape {list(shape)}, not a static [N, 3, H, W]",
            "export with static shapes (msla-deploy export --batch N, or --batch dynamic --max-batch N)",
        )
    return spec, dynamic


def _describe(session, model_name: str, num_classes: Optional[int]) -> _Head:
    """The input to feed and the output to read, from the session's tensor specs."""
    spec, dynamic = picture_input(session, "a segmenter")
    shape = tuple(spec.shape)
    outputs = session.outputs
    if OUTPUT_NAME in outputs:
        name, num_classes = OUTPUT_NAME, tuple(outputs[OUTPUT_NAME].shape)[1]
    elif LABELS_NAME in outputs:
        name = LABELS_NAME
    else:
        raise BadInput(
            f"the artifact has outputs {sorted(outputs)}, neither {OUTPUT_NAME!r} nor {LABELS_NAME!r}",
            "use an artifact of msla-deploy export",
        )
    return _Head(
        output=name,
        input_name=spec.name,
        input_dtype=np.dtype(spec.dtype),
        batch=session.group,
        dynamic=dynamic,
        resolution=(int(shape[2]), int(shape[3])),
        num_classes=num_classes,
        model_name=model_name or "",
    )


def _check_fits(session, head: _Head, label: str) -> None:
    """The tensors one run allocates, from the graph's declared shapes, against the memory
    available: a graph declaring a huge input is refused (exit 2) before anything is allocated."""

    def sized(shape) -> Tuple[int, ...]:  # a symbolic batch runs at most head.batch pictures
        return tuple(
            int(d) if isinstance(d, int) and d > 0 else (head.batch if i == 0 else 1) for i, d in enumerate(shape)
        )

    inputs = {name: (sized(spec.shape), spec.numpy_dtype) for name, spec in session.inputs.items()}
    if head.input_dtype != np.float32:  # the float32 batch it is cast from
        inputs["float32 batch"] = (sized(session.inputs[head.input_name].shape), np.float32)
    outputs = [(sized(spec.shape), spec.numpy_dtype) for spec in session.outputs.values()]
    check_tensors_fit(label, inputs, outputs)


# --- opening the artifact ------------------------------------------------------------------------
def require_task(artifact, task: str, who: str, fix: str) -> None:
    """BadInput unless the artifact's model is of this task (one without a recorded task is segmentation)."""
    found = artifact.task
    if found.name != task:
        if found.name == SAM:  # two graphs and prompts: its own runner, whoever was asked
            fix = "use msla_deploy.SamPredictor (msla-deploy predict --prompts runs it)"
        raise BadInput(f"{artifact.name} is a model for {found.title}; {who} runs {get_task(task).title} models", fix)


def _resolve(target):
    """An Artifact (artifact.resolve) from a path, or the one given."""
    from ..artifact.resolve import Artifact, resolve

    return target if isinstance(target, Artifact) else resolve(Path(target))


def _open(artifact, backend: str, threads: Optional[int]):
    """A session through the runtime layer: an export directory, an .onnx or an engine, on any
    backend it offers."""
    from . import open as open_session

    return open_session(artifact, backend, threads=threads, command="predict")
