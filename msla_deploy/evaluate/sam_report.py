"""SAM's evaluation report: SamReport (report.json's typed record, built by sam.py), report.md
(CI summary) and junit.xml (one case per gate), written with reporting.py's generic writers as the
other protocols' reports are; and SamPredictions, one backend's per-instance results
(--save-predictions), from which the figures can be recomputed independently.

mIoU figures are percentages, as upstream's get_iou_metric prints them (not fractions)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from ..records import Record
from ..reporting import junit_suite, write_report_files
from .coco import SkippedInstance
from .report import SkippedPicture
from .sam_protocol import ALL, SCOPES


@dataclass
class SamArtifactSummary:
    path: str
    name: str
    model: Optional[str]
    precision: str  # the encoder's
    encoder_side: int
    head: str  # multimask | single
    max_prompts: Optional[int]  # per decoder call
    weights_source: Optional[str] = None
    weights_warning: Optional[str] = None


@dataclass
class SamDatasetSummary:
    root: str
    annotations_file: str
    images_dir: str
    images: int  # listed in the json
    annotations: int  # listed in the json
    pictures: int  # evaluated (images with an instance, after --limit and --skip-bad)
    instances: int  # evaluated
    skipped_small: int  # annotations with area < 1 (upstream skips them)


@dataclass
class SamProtocolRecord:
    """How the figures were computed, in words (the report says it beside the numbers)."""

    prompt: str  # box | point
    prompt_text: str
    multimask: bool
    iou: str
    area_bins: Dict[str, List[Optional[float]]]  # bin -> [lowest, highest] area, inclusive; null: unbounded
    bins: str
    empty_bin: str


@dataclass
class SamBackendResult:
    backend: str
    ran: Dict[str, Any]  # the predictor's description (encoder session, decoder, sizes)
    miou: Dict[str, Optional[float]]  # all, small, medium, large: percent; None: no instance in the bin
    instances: Dict[str, int]  # the same keys: how many instances each mean is over
    miou_drop_points: Optional[float]  # reference's all - this one's; None for the reference
    passed: Optional[bool]  # None: not gated
    inference_s: float  # set_image + predict, this backend alone
    nonfinite_instances: int  # instances whose predicted IoUs had a NaN or infinite value (each fails it)


@dataclass
class SamReport(Record):
    """evaluate's result for a SAM artifact: report.json, what --json prints, what report.md and
    junit.xml show."""

    KIND = "msla-deploy/evaluate-sam-report"
    VERSION = 1

    passed: bool
    task: str
    artifact: SamArtifactSummary
    dataset: SamDatasetSummary
    protocol: SamProtocolRecord
    against: str  # the reference backend
    min_miou_percent: Optional[float]
    max_miou_drop_points: Optional[float]
    pictures: int
    instances: int
    seconds: float
    backends: List[SamBackendResult]
    skipped: List[SkippedPicture]  # bad pictures (--skip-bad)
    skipped_instances: List[SkippedInstance]  # area < 1, and the instances of skipped pictures
    notes: List[str]
    predictions: Dict[str, str] = field(default_factory=dict)  # backend -> its --save-predictions file
    files: Dict[str, str] = field(default_factory=dict)  # json, markdown, junit (and junit_extra)

    @property
    def reference(self) -> SamBackendResult:
        return next(b for b in self.backends if b.backend == self.against)

    @property
    def failed(self) -> List[SamBackendResult]:
        return [b for b in self.backends if b.passed is False]

    def failures(self) -> List[str]:
        """Why each failed backend failed, one phrase each (the verdict line and junit.xml)."""
        return ["; ".join(reasons(self, b)) for b in self.failed]


@dataclass
class InstancePrediction:
    annotation_id: Any
    image_id: Any
    area: float
    iou: float  # percent
    score: float  # the chosen mask's predicted IoU
    prompt: List[float]  # [x0, y0, x1, y1] (box) or [x, y, label] (point)
    segmentation: Dict[str, Any]  # the chosen mask: COCO compressed RLE {size, counts}


@dataclass
class SamPredictions(Record):
    """One backend's per-instance results (--save-predictions DIR/<backend>.json)."""

    KIND = "msla-deploy/evaluate-sam-predictions"
    VERSION = 1

    backend: str
    prompt: str
    annotations_file: str
    instances: List[InstancePrediction]


def pct(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.3f}"


def missed_min(report: SamReport, b: SamBackendResult) -> bool:
    gate = report.min_miou_percent
    return gate is not None and (b.miou[ALL] is None or b.miou[ALL] < gate)


def missed_drop(report: SamReport, b: SamBackendResult) -> bool:
    gate = report.max_miou_drop_points
    if gate is None or b.backend == report.against:
        return False
    return b.miou_drop_points is None or b.miou_drop_points > gate


def nonfinite_text(b: SamBackendResult, instances: int) -> str:
    return f"NaN/Inf predicted IoU in {b.nonfinite_instances} of {instances} instance(s)"


def reasons(report: SamReport, b: SamBackendResult) -> List[str]:
    """What fails this backend, one phrase each (empty: it passes)."""
    found = [f"{b.backend} gave {nonfinite_text(b, report.instances)}"] if b.nonfinite_instances else []
    if missed_min(report, b):
        found.append(f"{b.backend}: mIoU {pct(b.miou[ALL])} % is below --min-miou {report.min_miou_percent:g}")
    if missed_drop(report, b):
        drop = "-" if b.miou_drop_points is None else f"{b.miou_drop_points:.3f}"
        found.append(
            f"{b.backend} loses {drop} points of mIoU against {report.against} (budget {report.max_miou_drop_points:g})"
        )
    return found


def drop_text(report: SamReport, b: SamBackendResult) -> str:
    if b.backend == report.against:
        return "reference"
    return "-" if b.miou_drop_points is None else f"{b.miou_drop_points:.3f}"


def markdown(report: SamReport) -> str:
    art, data, proto = report.artifact, report.dataset, report.protocol
    gates = ["every predicted IoU finite"]
    if report.min_miou_percent is not None:
        gates.append(f"mIoU >= {report.min_miou_percent:g} %")
    if report.max_miou_drop_points is not None:
        gates.append(f"mIoU drop <= {report.max_miou_drop_points:g} points")
    lines = [
        f"## msla-deploy evaluate (SAM, {proto.prompt} prompts): {'PASS' if report.passed else 'FAIL'}"
        + (" (RANDOM WEIGHTS)" if art.weights_warning else ""),
        "",
    ]
    if art.weights_warning:
        lines += [f"> **{art.weights_warning}**", ""]
    lines += [
        f"- **artifact**: `{art.path}` ({art.model or 'model unknown'}, encoder {art.precision} at {art.encoder_side}, "
        f"{art.head} head)",
        f"- **weights**: {art.weights_source or 'not recorded'}",
        f"- **dataset**: `{data.annotations_file}`, {data.instances} instance(s) in {data.pictures} picture(s); "
        f"{data.skipped_small} annotation(s) with area < 1 skipped"
        + (f", {len(report.skipped)} bad picture(s) skipped" if report.skipped else ""),
        f"- **protocol**: prompt {proto.prompt_text}; multimask, {proto.iou}; mIoU by area: {proto.bins}; "
        f"{proto.empty_bin}",
        f"- **reference backend**: `{report.against}`; gate: {', '.join(gates)}",
        f"- **time**: {report.seconds:.1f} s (all backends, decoding included)",
        "",
    ]
    lines += [f"> {note}" for note in report.notes] + ([""] if report.notes else [])
    lines += [
        "| backend | ran on | mIoU % | small | medium | large | drop (points) | NaN/Inf | inference s | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for b in report.backends:
        verdict = {True: "pass", False: "**FAIL**", None: ""}[b.passed]
        nonfinite = f"**{b.nonfinite_instances}**" if b.nonfinite_instances else "0"
        bins = " | ".join(f"{pct(b.miou[s])} ({b.instances[s]})" for s in SCOPES[1:])
        lines.append(
            f"| `{b.backend}` | {b.ran.get('ran_on', '')} | {pct(b.miou[ALL])} | {bins} | {drop_text(report, b)} | "
            f"{nonfinite} | {b.inference_s:.2f} | {verdict} |"
        )
    lines.append("")
    failures = report.failures()
    if failures:
        lines += ["**Failed:**", ""] + [f"- {f}" for f in failures] + [""]
    if report.predictions:
        lines += ["Predictions: " + ", ".join(f"`{path}`" for path in report.predictions.values()), ""]
    if report.skipped:
        lines += ["### Skipped (bad input)", ""] + [f"- `{s.image}`: {s.problem}" for s in report.skipped] + [""]
    return "\n".join(lines).rstrip() + "\n"


def junit_xml(report: SamReport) -> bytes:
    cases = []
    for b in report.backends:
        failure = "; ".join(reasons(report, b))
        if b.nonfinite_instances:
            cases.append((f"{b.backend}: finite predicted IoUs", False, nonfinite_text(b, report.instances), failure))
        if report.min_miou_percent is not None:
            detail = f"mIoU {pct(b.miou[ALL])} %; minimum {report.min_miou_percent:g} %"
            cases.append(
                (f"{b.backend}: mIoU >= {report.min_miou_percent:g} %", not missed_min(report, b), detail, failure)
            )
        if b.backend != report.against:
            gate = report.max_miou_drop_points
            detail = (
                f"mIoU {pct(b.miou[ALL])} % vs {pct(report.reference.miou[ALL])} % on `{report.against}`: drop "
                f"{drop_text(report, b)} points" + ("" if gate is None else f", budget {gate:g}")
            )
            cases.append(
                (f"{b.backend}: mIoU drop against {report.against}", not missed_drop(report, b), detail, failure)
            )
    classname = f"msla-deploy.evaluate.{report.artifact.model or report.artifact.name}"
    return junit_suite("msla-deploy evaluate", classname, cases, report.seconds)


def write_reports(report: SamReport, folder, extra_junit=None) -> Dict[str, str]:
    """report.json, report.md and junit.xml in `folder`; recorded in `report.files` and returned."""
    return write_report_files(report, folder, markdown(report), junit_xml(report), extra_junit)
