"""Tasks as data: what a model's inputs and outputs mean, and what each stage does with them.

A task names its graph heads and, for each head, the graph's outputs and what each output is
(`OutputKind`); the stages ask the task instead of assuming segmentation:

- export builds the head from the output kinds (nn/heads.py computes each kind from the logits)
  and records the task in the manifest (model.task) and the ONNX metadata (META_TASK);
- parity compares each output by its kind (parity/metrics.py) against the task's budgets
  (parity/budgets.py, keyed by task name);
- evaluate, predict and serve pick their protocol, writer and Triton config by `Task.name`
  through small registries of their own (each stage owns its implementation).

An artifact written before tasks existed records none: it reads as segmentation (DEFAULT_TASK).
Torch- and numpy-free: `--help`, `models` and the runtime-only install import it.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Tuple

from .errors import BadInput


class OutputKind:
    """What one graph output holds; nn/heads.py computes it, parity/metrics.py compares it."""

    LOGITS = "logits"  # the model's own output: [N, C, h, w] (segmentation) or [N, C] (classification)
    LABELS = "labels"  # segmentation: logits resized to the input and argmax'ed, [N, H, W] int32
    PROBS = "probs"  # classification: softmax over the classes, [N, C]
    TOPK_INDICES = "topk_indices"  # classification: the k best classes, best first, [N, k] int32
    TOPK_SCORES = "topk_scores"  # their softmax probabilities, [N, k]
    # SAM: the encoder's image embeddings [1, 256, 64, 64] (judged by error and cosine), the
    # decoder's low-res mask logits [B, M, 256, 256] (judged by the IoU of the binarised masks,
    # logits > 0) and its predicted IoU per mask [B, M] (judged by their absolute error)
    EMBEDDINGS = "embeddings"
    MASK_LOGITS = "mask_logits"
    MASK_SCORES = "mask_scores"


@dataclass(frozen=True)
class OutputSpec:
    name: str  # the graph output's name
    kind: str  # an OutputKind


SEGMENTATION = "segmentation"
CLASSIFICATION = "classification"
SAM = "sam"  # promptable segmentation: an image encoder and a prompt decoder, two graphs
#: what an artifact that records no task is: every export before tasks existed was segmentation
DEFAULT_TASK = SEGMENTATION

#: classification's topk head: how many classes it returns (upstream's evaluation reports top-5)
TOPK = 5
#: predict's overlays (segmentation, SAM): the colours' weight when --alpha is not given
OVERLAY_ALPHA = 0.5

# the graph output names, one owner (artifact/names.py re-exports the segmentation ones it always had)
LOGITS_NAME = "logits"
LABELS_NAME = "labels"
PROBS_NAME = "probs"
TOPK_INDICES_NAME = "topk_indices"
TOPK_SCORES_NAME = "topk_scores"
# SAM's graph outputs (artifact/sam_io.py names the rest of its two graphs' tensors)
IMAGE_EMBEDDINGS_NAME = "image_embeddings"
MASKS_NAME = "masks"
IOU_PREDICTIONS_NAME = "iou_predictions"

_LOGITS = OutputSpec(LOGITS_NAME, OutputKind.LOGITS)


@dataclass(frozen=True)
class Task:
    name: str
    title: str  # for headers: "semantic segmentation"
    # head -> the graph's outputs in order; the first head is the default (the model's logits)
    heads: Mapping[str, Tuple[OutputSpec, ...]]
    logits_rank: int  # dimensions of the model's logits: 4 ([N, C, h, w]) or 2 ([N, C])
    # export's reference inputs: at least this many (rounded up to the batch), and varied pictures
    # rather than one noise texture (a classifier's one answer per picture needs many pictures,
    # different ones, before "top-1 agreement" says anything; a segmentation map has its pixels)
    reference_samples: int = 1
    varied_reference: bool = False
    resizes: bool = False  # its heads resize the logits (export --upsample applies)
    label_maps: bool = False  # its answers are label maps, scored by mIoU (validate --max-miou-drop applies)
    # the graphs of its artifact, by role: () is one graph (model.onnx); SAM's are two
    graphs: Tuple[str, ...] = ()

    @property
    def head_names(self) -> Tuple[str, ...]:
        return tuple(self.heads)

    def outputs(self, head: str) -> Tuple[OutputSpec, ...]:
        self.check_head(head)
        return self.heads[head]

    def output_names(self, head: str) -> Tuple[str, ...]:
        return tuple(o.name for o in self.outputs(head))

    @property
    def output_kinds(self) -> Dict[str, str]:
        """Every output name the task's heads give -> its OutputKind."""
        return {o.name: o.kind for outputs in self.heads.values() for o in outputs}

    def check_head(self, head: str) -> None:
        if head not in self.heads:
            raise BadInput(
                f"--head {head} is not a {self.name} head",
                f"a {self.name} model takes --head {'|'.join(self.heads)}",
            )

    @property
    def default_head(self) -> str:
        return self.head_names[0]

    def head_or_default(self, head: Optional[str]) -> str:
        """`head`, or the task's first head where the option was left at its default (DEFAULT_HEAD
        is segmentation's and classification's first head; SAM has no logits head)."""
        if head in (None, DEFAULT_HEAD) and DEFAULT_HEAD not in self.heads:
            return self.default_head
        return head

    def num_classes(self, logits_shape: Tuple[int, ...]) -> Optional[int]:
        """The classes of logits of this shape (None for another task's shape)."""
        if self.name == SAM:  # class-agnostic masks
            return None
        if len(logits_shape) == self.logits_rank and isinstance(logits_shape[1], int):
            return int(logits_shape[1])
        return None


TASKS: Dict[str, Task] = {
    SEGMENTATION: Task(
        name=SEGMENTATION,
        title="semantic segmentation",
        heads={
            "logits": (_LOGITS,),
            "labels": (OutputSpec(LABELS_NAME, OutputKind.LABELS),),
            "both": (_LOGITS, OutputSpec(LABELS_NAME, OutputKind.LABELS)),
        },
        logits_rank=4,
        resizes=True,
        label_maps=True,
    ),
    CLASSIFICATION: Task(
        name=CLASSIFICATION,
        title="image classification",
        heads={
            "logits": (_LOGITS,),
            "probs": (OutputSpec(PROBS_NAME, OutputKind.PROBS),),
            "topk": (
                OutputSpec(TOPK_INDICES_NAME, OutputKind.TOPK_INDICES),
                OutputSpec(TOPK_SCORES_NAME, OutputKind.TOPK_SCORES),
            ),
        },
        logits_rank=2,
        reference_samples=16,
        varied_reference=True,
    ),
    # the decoder's heads: "multimask" gives SAM's four masks (0: the single-mask output, 1-3 the
    # multimask ones: the predictor picks per call, as segment-anything does), "single" mask 0 only
    SAM: Task(
        name=SAM,
        title="promptable segmentation (SAM)",
        heads={
            "multimask": (
                OutputSpec(MASKS_NAME, OutputKind.MASK_LOGITS),
                OutputSpec(IOU_PREDICTIONS_NAME, OutputKind.MASK_SCORES),
            ),
            "single": (
                OutputSpec(MASKS_NAME, OutputKind.MASK_LOGITS),
                OutputSpec(IOU_PREDICTIONS_NAME, OutputKind.MASK_SCORES),
            ),
        },
        logits_rank=4,
        reference_samples=2,
        varied_reference=True,
        graphs=("encoder", "decoder"),
    ),
}

#: what `--head` means when it is not given (its default, "logits"): the task's first head
DEFAULT_HEAD = "logits"

TASK_NAMES = tuple(TASKS)


def get_task(name: Optional[str]) -> Task:
    """The task of this name; None (an artifact from before tasks) is segmentation."""
    if name is None or name == "":
        return TASKS[DEFAULT_TASK]
    task = TASKS.get(str(name))
    if task is None:
        close = difflib.get_close_matches(str(name), TASKS, n=1)
        hint = f"did you mean {close[0]}?" if close else f"one of {', '.join(TASKS)}"
        raise BadInput(f"task {name!r} is unknown", hint)
    return task
