"""Which evaluation a model gets: one protocol per task, keyed by `Task.name` (the one place
evaluate asks what the artifact is).

A protocol owns its options (the flags only it takes, with their defaults), its pass and its
console view; the command gives it the options every protocol shares. A flag of another task's
protocol is refused with the artifact's task and the flags it does take (exit 2), so that a
classification gate on a segmentation model (or the reverse) never passes by being ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

from ..choices import IGNORE_INDEX, Dataset, SamPrompt
from ..errors import BadInput
from ..tasks import CLASSIFICATION, SAM, SEGMENTATION


@dataclass(frozen=True)
class Common:
    """The options every protocol takes."""

    artifact: Path
    data: Path
    backends: Tuple[str, ...]
    against: Optional[str]
    limit: Optional[int]
    skip_bad: bool
    threads: Optional[int]
    report_dir: Optional[Path]
    junit: Optional[Path]

    def fields(self) -> Dict[str, Any]:
        return {
            "artifact": self.artifact,
            "data": self.data,
            "backends": list(self.backends),
            "against": self.against,
            "limit": self.limit,
            "skip_bad": self.skip_bad,
            "threads": self.threads,
            "report_dir": self.report_dir,
            "junit": self.junit,
        }


@dataclass(frozen=True)
class Protocol:
    task: str
    what: str  # the metric, for messages
    flags: Tuple[str, ...]  # the options only this protocol takes
    # (common options, {flag: value given or None}) -> the protocol's options, checked
    options: Callable[[Common, Dict[str, Any]], Any]
    evaluate: Callable[[Any, Optional[Callable[[int, int], None]]], Any]  # -> its report record
    render: Callable[[Any], None]


def _segmentation_options(common: Common, given: Dict[str, Any]):
    from .run import EvaluateOptions

    ignore = given.get("--ignore-index")
    options = EvaluateOptions(
        dataset=given.get("--dataset") or Dataset.AUTO,
        max_miou_drop=given.get("--max-miou-drop"),
        ignore_index=IGNORE_INDEX if ignore is None else ignore,
        save_predictions=given.get("--save-predictions"),
        **common.fields(),
    )
    options.check()
    return options


def _segmentation_evaluate(options, on_progress):
    from .run import evaluate

    return evaluate(options, on_progress)


def _segmentation_render(report) -> None:
    from .render import render_segmentation

    render_segmentation(report)


def _classification_options(common: Common, given: Dict[str, Any]):
    from ..runtime.classify_preprocess import CROP_RATIO
    from .classification import ClassifyOptions

    ratio = given.get("--crop-ratio")
    options = ClassifyOptions(
        min_top1=given.get("--min-top1"),
        max_top1_drop=given.get("--max-top1-drop"),
        crop_ratio=CROP_RATIO if ratio is None else ratio,
        **common.fields(),
    )
    options.check()
    return options


def _classification_evaluate(options, on_progress):
    from .classification import evaluate_classifier

    return evaluate_classifier(options, on_progress)


def _classification_render(report) -> None:
    from .render import render_classification

    render_classification(report)


def _sam_options(common: Common, given: Dict[str, Any]):
    from .sam import SamOptions

    prompt = given.get("--prompt")
    options = SamOptions(
        prompt=str(prompt or SamPrompt.BOX),
        min_miou=given.get("--min-miou"),
        max_miou_drop=given.get("--max-miou-drop"),
        save_predictions=given.get("--save-predictions"),
        **common.fields(),
    )
    options.check()
    return options


def _sam_evaluate(options, on_progress):
    from .sam import evaluate_sam

    return evaluate_sam(options, on_progress)


def _sam_render(report) -> None:
    from .render import render_sam

    render_sam(report)


PROTOCOLS: Dict[str, Protocol] = {
    SEGMENTATION: Protocol(
        SEGMENTATION,
        "mIoU",
        ("--dataset", "--max-miou-drop", "--ignore-index", "--save-predictions"),
        _segmentation_options,
        _segmentation_evaluate,
        _segmentation_render,
    ),
    CLASSIFICATION: Protocol(
        CLASSIFICATION,
        "top-1 / top-5 accuracy",
        ("--min-top1", "--max-top1-drop", "--crop-ratio"),
        _classification_options,
        _classification_evaluate,
        _classification_render,
    ),
    SAM: Protocol(
        SAM,
        "mIoU of prompted masks",
        ("--prompt", "--min-miou", "--max-miou-drop", "--save-predictions"),
        _sam_options,
        _sam_evaluate,
        _sam_render,
    ),
}


def protocol_for(task: str) -> Protocol:
    protocol = PROTOCOLS.get(task)
    if protocol is None:
        raise BadInput(f"evaluate has no protocol for a {task} model", f"it evaluates {', '.join(PROTOCOLS)} models")
    return protocol


def check_flags(protocol: Protocol, artifact: Path, given: Dict[str, Any]) -> None:
    """A flag given that belongs to another task's protocol: BadInput naming both tasks."""
    for flag, value in given.items():
        if value is None or flag in protocol.flags:
            continue
        owner = next((p for p in PROTOCOLS.values() if flag in p.flags), None)
        what = f"a {owner.task} option" if owner is not None else "not an option of this protocol"
        raise BadInput(
            f"{flag} is {what}, and {artifact} is a {protocol.task} model",
            f"a {protocol.task} model is evaluated for {protocol.what} with {', '.join(protocol.flags)}; drop {flag}",
        )
