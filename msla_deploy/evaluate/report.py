"""The evaluation report: EvaluateReport (report.json's typed record, built by run.py), report.md
(CI summary) and junit.xml (one case per backend gated by --max-miou-drop), the last two read
from the record and written with parity/reports.py's generic writers."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from ..parity.reports import junit_suite, write_report_files
from ..records import Record

WORST_CLASSES = 8


@dataclass
class ArtifactSummary:
    path: str
    name: str
    model: Optional[str]
    precision: str
    resolution: List[int]  # [H, W]
    batch: int
    num_classes: int


@dataclass
class DatasetSummary:
    kind: str  # cityscapes | ade20k | folder
    root: str
    images: int  # in the dataset (before --limit)
    num_classes: int
    ignore: Any  # the folder layout's ignore value, or "per the dataset's layout"
    evaluated: int


@dataclass
class Protocol:
    """How the figures were computed, in words (the report says it beside the numbers)."""

    input_resolution: List[int]
    resize: str
    normalise: str
    labels: str
    miou: str


@dataclass
class BackendResult:
    backend: str
    ran: Dict[str, Any]  # the session's own description (runtime, providers, device)
    miou: Optional[float]  # None: no class had a pixel to score
    pixel_accuracy: Optional[float]
    miou_drop_points: Optional[float]  # against the reference backend; None for the reference
    passed: Optional[bool]  # None: not gated (the reference, or no --max-miou-drop)
    inference_s: float  # this backend's inference alone
    # Confusion.class_table rows: {class, name, iou, label_pixels, predicted_pixels}
    # (dicts: "class" is the key reports have always had, and a Python keyword)
    class_iou: List[Dict[str, Any]]


@dataclass
class WorstImage:
    image: str
    disagreement: float  # fraction of the pixels whose labels differ
    picture: Optional[str]  # the disagreement picture, for the worst few


@dataclass
class PairResult:
    """A backend's labels against the reference backend's (prediction vs prediction)."""

    reference: str
    candidate: str
    miou: Optional[float]
    agreement: Optional[float]  # fraction of pixels with the same label
    worst_images: List[WorstImage]


@dataclass
class SkippedPicture:
    image: str
    problem: str


@dataclass
class EvaluateReport(Record):
    """evaluate's result: report.json, what --json prints and what report.md and junit.xml show."""

    KIND = "msla-deploy/evaluate-report"
    VERSION = 1

    passed: bool
    artifact: ArtifactSummary
    dataset: DatasetSummary
    protocol: Protocol
    against: str  # the reference backend
    max_miou_drop_points: Optional[float]
    images: int
    seconds: float
    images_per_second: Optional[float]
    backends: List[BackendResult]
    pairs: List[PairResult]
    skipped: List[SkippedPicture]
    notes: List[str]
    files: Dict[str, str] = field(default_factory=dict)  # json, markdown, junit (and junit_extra)

    @property
    def reference(self) -> BackendResult:
        return next(b for b in self.backends if b.backend == self.against)

    @property
    def failed(self) -> List[BackendResult]:
        return [b for b in self.backends if b.passed is False]


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def markdown(report: EvaluateReport) -> str:
    art, data = report.artifact, report.dataset
    gate = report.max_miou_drop_points
    lines = [
        f"## msla-deploy evaluate: {'PASS' if report.passed else 'FAIL'}",
        "",
        f"- **artifact**: `{art.path}` ({art.model or 'model unknown'}, {art.precision}, "
        f"input {art.resolution[0]}x{art.resolution[1]})",
        f"- **dataset**: {data.kind} `{data.root}`, {data.evaluated} picture(s)"
        + (f", {len(report.skipped)} skipped as bad" if report.skipped else ""),
        f"- **reference backend**: `{report.against}`; gate: " + ("none" if gate is None else f"mIoU drop <= {gate:g} points"),
        f"- **throughput**: {report.images_per_second:.2f} images/s over {report.seconds:.1f} s "
        "(all backends, decoding and metrics included)"
        if report.images_per_second
        else "",
        "",
    ]
    lines += [f"> {note}" for note in report.notes] + ([""] if report.notes else [])
    lines += _backend_table(report) + _class_table(report)
    for pair in report.pairs:
        lines += _pair_section(pair)
    if report.skipped:
        lines += ["### Skipped (bad input)", ""] + [f"- `{s.image}`: {s.problem}" for s in report.skipped] + [""]
    return "\n".join(lines).rstrip() + "\n"


def _drop(b: BackendResult, against: str) -> str:
    if b.backend == against:
        return "reference"
    return "-" if b.miou_drop_points is None else f"{b.miou_drop_points:.3f}"


def _backend_table(report: EvaluateReport) -> List[str]:
    lines = ["| backend | ran on | mIoU % | pixel acc % | drop (points) | verdict |", "|---|---|---|---|---|---|"]
    for b in report.backends:
        verdict = {True: "pass", False: "**FAIL**", None: ""}[b.passed]
        lines.append(f"| `{b.backend}` | {b.ran.get('ran_on', '')} | {_pct(b.miou)} | {_pct(b.pixel_accuracy)} | "
                     f"{_drop(b, report.against)} | {verdict} |")
    return lines + [""]


def _class_table(report: EvaluateReport) -> List[str]:
    header = "| class | " + " | ".join(f"`{b.backend}` IoU %" for b in report.backends) + " | label px |"
    lines = ["### Per-class IoU", "", header, "|---" * (len(report.backends) + 2) + "|"]
    for i, row in enumerate(report.reference.class_iou):
        name = f"{row['class']} {row['name']}" if row.get("name") else str(row["class"])
        cells = [_pct(b.class_iou[i]["iou"]) for b in report.backends]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {row['label_pixels']} |")
    return lines + [""]


def _pair_section(pair: PairResult) -> List[str]:
    lines = [
        f"### `{pair.candidate}` against `{pair.reference}` (prediction vs prediction)",
        "",
        f"mIoU {_pct(pair.miou)} %, pixels agreeing {_pct(pair.agreement)} %",
        "",
    ]
    worst = [w for w in pair.worst_images if w.disagreement > 0]
    if worst:
        lines += ["| image | pixels disagreeing % | picture |", "|---|---|---|"]
        lines += [f"| `{w.image}` | {100 * w.disagreement:.3f} | {('`' + Path(w.picture).name + '`') if w.picture else ''} |" for w in worst]
        lines += ["", "Pictures: the reference backend's labels in their colours, darkened; white where the other backend's label differs.", ""]
    return lines


def junit_xml(report: EvaluateReport) -> bytes:
    gate = report.max_miou_drop_points
    reference_miou = report.reference.miou
    cases = []
    for b in report.backends:
        if b.backend == report.against:
            continue
        detail = (
            f"mIoU {_pct(b.miou)} % vs {_pct(reference_miou)} % on `{report.against}`: drop "
            + ("-" if b.miou_drop_points is None else f"{b.miou_drop_points:.3f}")
            + " points"
            + ("" if gate is None else f", budget {gate:g}")
        )
        passed = b.passed is not False
        failure = "" if passed else f"{b.backend} loses more than {gate:g} points of mIoU"
        cases.append((f"{b.backend}: mIoU drop against {report.against}", passed, detail, failure))
    classname = f"msla-deploy.evaluate.{report.artifact.model or report.artifact.name}"
    return junit_suite("msla-deploy evaluate", classname, cases, report.seconds)


def write_reports(report: EvaluateReport, folder: Path, extra_junit: Optional[Path] = None) -> Dict[str, str]:
    """report.json, report.md and junit.xml in `folder` (parity/reports.py's writer); the files
    written are recorded in the report (`report.files`) and returned."""
    report.files = write_report_files(report.to_dict(), folder, markdown(report), junit_xml(report), extra_junit)
    return report.files
