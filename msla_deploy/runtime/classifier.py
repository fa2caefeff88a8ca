"""`Classifier`: a deployed classification model applied to pictures, torch-free.

    clf = Classifier("artifacts/b1-r224/")     # export directory, .onnx or engine of a classifier
    result = clf("cat.jpg", top_k=5)           # path, PIL image or H x W x 3 uint8 array, any size
    result.top                                 # [ClassScore(index, name, probability)], best first
    result.best.name, result.best.probability
    result.probabilities                       # [C] softmax over every class (None for a topk head)
    clf.batch(pictures, top_k=5)               # the artifact's batch, filled and padded
    clf.head                                   # what the graph gives: "logits", "probs" or "topk"

Preprocessing is upstream's ImageNet evaluation (runtime/classify_preprocess.py, shared with
evaluate): the short side resized to ceil(res / 0.95) with Pillow's bicubic, a res x res centre
crop, /255, ImageNet mean/std. Pictures are decoded by the Segmenter's rules (runtime/segmenter.py
`decode`: 8-bit as is, 16-bit grey scaled to [0, 1]).

What each head gives becomes the same answer: logits are turned into probabilities by a softmax
(in float64, max-subtracted), probs are taken as they are, and both are sorted (ties to the lower
class index); a topk head's indices and scores are used as the graph gives them, so it can answer
at most its k classes. Class names: a labels file when given, ImageNet-1k for the zoo's (and
timm's) 1000-class models, else "class <i>" (`class_names_for`).

Runs on every backend runtime.open offers (ort-cpu, ort-cuda, ort-trt, trt, torch, triton://).
A segmentation artifact is refused with the fix (the Segmenter runs it), and so is a classifier
given to the Segmenter.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import BadInput
from ..tasks import CLASSIFICATION, TOPK, OutputKind
from .classify_preprocess import preprocess
from .segmenter import (
    Picture,
    PictureLike,
    RandomWeightsWarning,
    SessionOwner,
    _check_fits,
    _open,
    _resolve,
    decode,
    picture_input,
    require_task,
)

if TYPE_CHECKING:  # resolve imports onnx: only where an Artifact is given
    from ..artifact.resolve import Artifact

__all__ = ["Classifier", "Classification", "ClassScore", "class_names_for", "softmax"]

#: where a classifier's class names came from (Classification.names_from, predict's report)
NAMES_FROM_LABELS = "labels file"
NAMES_FROM_INDEX = "class indices"


@dataclass(frozen=True)
class ClassScore:
    """One class of a picture's answer."""

    index: int
    name: str
    probability: float

    def to_dict(self) -> Dict:
        return {"index": self.index, "name": self.name, "probability": self.probability}


@dataclass
class Classification:
    """The k best classes of one picture, best first."""

    top: List[ClassScore]
    # the arrays stay out of repr(): printing an answer shows its classes, not 1000 numbers and a picture
    image: np.ndarray = field(repr=False)  # the H x W x 3 uint8 RGB picture
    # [C] float64 over every class; None for a topk head (k only)
    probabilities: Optional[np.ndarray] = field(default=None, repr=False)
    # scores the model gave that are NaN/Inf: the ranking of such a picture means nothing (0 for a sound model)
    nonfinite: int = 0

    @property
    def best(self) -> ClassScore:
        return self.top[0]


@dataclass
class _Head:
    """What to feed and what the graph gives (the attributes _check_fits reads included)."""

    input_name: str
    input_dtype: np.dtype
    batch: int  # pictures per run: the static batch, or the largest of a dynamic one
    dynamic: bool
    resolution: Tuple[int, int]
    head: str  # the task's head the outputs are: logits | probs | topk
    scores: str  # the output holding scores: logits, probs or topk_scores
    softmax: bool  # the scores are logits (a softmax makes them probabilities)
    indices: Optional[str]  # topk_indices for a topk head, else None
    k: Optional[int]  # a topk head's k: the most classes it can answer


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis in float64, the maximum subtracted first (no overflow)."""
    x = np.asarray(logits, np.float64)
    shifted = np.exp(x - x.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def ranked(scores: np.ndarray, top_k: int) -> np.ndarray:
    """The indices of the `top_k` largest scores, largest first, ties to the lower index; NaN last."""
    order = np.argsort(-np.where(np.isnan(scores), -np.inf, scores), kind="stable")
    return order[:top_k]


def class_names_for(artifact, num_classes: int, labels: Optional[Path] = None) -> Tuple[Tuple[str, ...], str]:
    """The names of a classifier's classes and where they came from: a labels file, ImageNet-1k
    for a 1000-class model of the zoo or of timm (their index order is ImageNet's), or "class <i>"."""
    from ..classes import IMAGENET1K, IMAGENET1K_NUM_CLASSES, imagenet1k_classes, read_labels

    if labels is not None:
        return read_labels(Path(labels), num_classes), f"{NAMES_FROM_LABELS} {labels}"
    if num_classes == IMAGENET1K_NUM_CLASSES and _imagenet_model(artifact):
        return imagenet1k_classes(), IMAGENET1K
    return tuple(f"class {i}" for i in range(num_classes)), NAMES_FROM_INDEX


def _imagenet_model(artifact) -> bool:
    from .. import zoo

    name = artifact.model_name or ""
    if name.startswith("timm:"):
        return True
    return name in zoo.names() and zoo.get_spec(name).task == CLASSIFICATION


def _describe(session, task) -> _Head:
    spec, dynamic = picture_input(session, "a classifier")
    outputs = session.outputs
    # the first head whose outputs the session gives
    found = next(((h, specs) for h, specs in task.heads.items() if all(s.name in outputs for s in specs)), None)
    if found is None:
        raise BadInput(
            f"the artifact has outputs {sorted(outputs)}, not those of a classification head "
            f"({', '.join('+'.join(task.output_names(h)) for h in task.head_names)})",
            "use a classifier exported by msla-deploy export",
        )
    head, specs = found
    kinds = {s.kind: s.name for s in specs}
    indices = kinds.get(OutputKind.TOPK_INDICES)
    scores = kinds.get(OutputKind.TOPK_SCORES) or kinds.get(OutputKind.PROBS) or kinds[OutputKind.LOGITS]
    shape = tuple(outputs[scores].shape)
    if len(shape) != 2 or not isinstance(shape[1], int):
        raise BadInput(
            f"output {scores!r} has shape {list(shape)}, not [N, classes]", "use a classifier exported by msla-deploy"
        )
    return _Head(
        input_name=spec.name,
        input_dtype=np.dtype(spec.dtype),
        batch=session.group,
        dynamic=dynamic,
        resolution=(int(spec.shape[2]), int(spec.shape[3])),
        head=head,
        scores=scores,
        softmax=scores == kinds.get(OutputKind.LOGITS),
        indices=indices,
        k=int(shape[1]) if indices else None,
    )


class Classifier(SessionOwner):
    """Runs a deployed classification artifact on pictures. `backend`: auto, ort-cpu, ort-cuda,
    ort-trt, trt, torch or triton://HOST:PORT/MODEL (runtime.open's); `threads`: CPU threads of
    ONNX Runtime / PyTorch; `labels`: a file of class names, one a line in index order."""

    def __init__(
        self,
        artifact: Union[str, Path, Artifact],
        backend: str = "auto",
        *,
        threads: Optional[int] = None,
        labels: Optional[Union[str, Path]] = None,
    ) -> None:
        resolved = _resolve(artifact)
        require_task(
            resolved, CLASSIFICATION, "a Classifier", "use msla_deploy.Segmenter (msla-deploy predict runs either kind)"
        )
        num_classes = resolved.num_classes
        if num_classes is None:
            raise BadInput(
                f"{resolved.name}: cannot tell the model's number of classes",
                "use an export directory or an ONNX written by msla-deploy export",
            )
        #: class i's name, and where the names came from (labels file, imagenet-1k, class indices)
        self.class_names, self.names_from = class_names_for(resolved, int(num_classes), labels)
        #: where the weights came from (the manifest's weights.source; None for a bare .onnx or engine)
        self.weights_source: Optional[str] = resolved.weights_source
        #: what to say about them: the random-weights warning, or None
        self.weights_warning: Optional[str] = resolved.weights_warning
        self.model_name = resolved.model_name
        self.session = _open(resolved, backend, threads)
        try:
            self._head = _describe(self.session, resolved.task)
            _check_fits(self.session, self._head, resolved.name)
        except BaseException:
            self.session.close()
            raise
        self.threads = threads
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
        return len(self.class_names)

    @property
    def head(self) -> str:
        """What the graph gives: "logits", "probs" (softmax in the graph) or "topk" (its k best)."""
        return self._head.head

    @property
    def max_top_k(self) -> int:
        """The most classes one answer can hold: every class, or a topk head's k."""
        return self._head.k or self.num_classes

    def describe(self) -> Dict:
        return {
            **self.session.describe(),
            "head": self.head,
            "resolution": list(self.resolution),
            "batch": self.batch_size,
            "num_classes": self.num_classes,
            "class_names": self.names_from,
        }

    # --- running ------------------------------------------------------------------------------
    def check_top_k(self, top_k: Optional[int], flag: str = "top_k") -> int:
        """`top_k` if this artifact can answer that many classes, else BadInput with the fix; None:
        the default, tasks.TOPK (or every class the artifact can answer, if fewer)."""
        if top_k is None:
            return min(TOPK, self.max_top_k)
        if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
            raise BadInput(f"{flag} {top_k!r} must be a whole number of at least 1", f"use e.g. {flag} {TOPK}")
        if top_k > self.max_top_k:
            if self._head.k:
                raise BadInput(
                    f"{flag} {top_k}: this artifact's topk head gives its {self._head.k} best classes only",
                    f"ask for at most {self._head.k}, or export with --head logits (or probs) for any number",
                )
            raise BadInput(
                f"{flag} {top_k}: the model has {self.num_classes} classes", f"ask for at most {self.num_classes}"
            )
        return int(top_k)

    def __call__(self, picture: PictureLike, top_k: Optional[int] = None) -> Classification:
        return self.batch([picture], top_k)[0]

    def batch(self, pictures: Sequence[PictureLike], top_k: Optional[int] = None) -> List[Classification]:
        """One Classification per picture, with its `top_k` best classes (None: 5, or every class
        of a model with fewer). A static batch runs pictures in groups of that size, the
        last group padded with zeros (their outputs are dropped); a dynamic one in groups of up to
        its largest batch, unpadded."""
        top_k = self.check_top_k(top_k)
        decoded = [decode(p) for p in pictures]
        results: List[Classification] = []
        n = self._head.batch
        for start in range(0, len(decoded), n):
            results += self._run_group(decoded[start : start + n], top_k)
        return results

    def _run_group(self, group: List[Picture], top_k: int) -> List[Classification]:
        head = self._head
        feed = np.zeros((len(group) if head.dynamic else head.batch, 3, *head.resolution), np.float32)
        for i, picture in enumerate(group):
            feed[i] = preprocess(picture.pixels, head.resolution)[0]
        outputs = self.session.run({head.input_name: feed.astype(head.input_dtype, copy=False)})
        scores = np.asarray(outputs[head.scores])
        return [self._answer(picture, scores[i], outputs, i, top_k) for i, picture in enumerate(group)]

    def _answer(self, picture: Picture, scores: np.ndarray, outputs, row: int, top_k: int) -> Classification:
        nonfinite = int(np.count_nonzero(~np.isfinite(scores)))
        if self._head.indices is not None:  # topk: the graph's own ranking, as given
            indices = np.asarray(outputs[self._head.indices])[row][:top_k].astype(np.int64)
            probabilities, values = None, np.asarray(scores[:top_k], np.float64)
            bad = [int(i) for i in indices if not 0 <= int(i) < self.num_classes]
            if bad:
                raise BadInput(
                    f"the topk head gave class index {bad[0]}, outside the model's {self.num_classes} classes",
                    "validate the artifact (msla-deploy validate)",
                )
        else:
            probabilities = softmax(scores) if self._head.softmax else np.asarray(scores, np.float64)
            indices = ranked(probabilities, top_k)
            values = probabilities[indices]
        top = [ClassScore(int(i), self.class_names[int(i)], float(v)) for i, v in zip(indices, values)]
        return Classification(top=top, image=picture.image, probabilities=probabilities, nonfinite=nonfinite)
