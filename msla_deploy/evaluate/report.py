"""The evaluation report: EvaluateReport (report.json's typed record, built by run.py), report.md
(CI summary) and junit.xml (one case per backend gated by --max-miou-drop), the last two read
from the record and written with parity/reports.py's generic writers."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from ..records import Record
from ..reporting import junit_suite, write_report_files

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
    # the manifest's weights.source (checkpoint, random, factory); None: no manifest
    weights_source: Optional[str] = None
    weights_warning: Optional[str] = None  # said in the header and the report when the weights are random

    @classmethod
    def of(cls, artifact: Any, resolution: Sequence[int], batch: int, num_classes: int) -> "ArtifactSummary":
        """The summary of an artifact (artifact.resolve.Artifact) as it is evaluated."""
        a = artifact
        return cls(
            str(a.path),
            a.name,
            a.model_name,
            a.precision,
            list(resolution),
            batch,
            num_classes,
            weights_source=a.weights_source,
            weights_warning=a.weights_warning,
        )


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
    # pixels of the model's output (its logits' resolution) with a NaN or infinite logit, and the
    # pictures that had any: a single one fails the backend (NaN argmaxes to class 0, and a
    # random-weight reference scores ~0, so an mIoU gate alone would pass an all-NaN artifact)
    nonfinite_pixels: int = 0
    nonfinite_pictures: int = 0


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

    def failures(self) -> List[str]:
        """Why each failed backend failed, one phrase each (the verdict line and junit.xml)."""
        return [_failure(self, b) for b in self.failed]


def nonfinite_text(b: BackendResult, images: int) -> str:
    return f"NaN/Inf logits at {b.nonfinite_pixels} output pixel(s) in {b.nonfinite_pictures} of {images} picture(s)"


def _failure(report: EvaluateReport, b: BackendResult) -> str:
    gate = report.max_miou_drop_points
    reasons = [f"{b.backend} gave {nonfinite_text(b, report.images)}"] if b.nonfinite_pixels else []
    if b.backend != report.against and gate is not None:
        if b.miou_drop_points is None:
            reasons.append(f"{b.backend}: no mIoU")
        elif b.miou_drop_points > gate:
            reasons.append(
                f"{b.backend} loses {b.miou_drop_points:.3f} points of mIoU against {report.against} (budget {gate:g})"
            )
    return "; ".join(reasons)


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def markdown(report: EvaluateReport) -> str:
    art, data = report.artifact, report.dataset
    gate = report.max_miou_drop_points
    lines = [
        f"## msla-deploy evaluate: {'PASS' if report.passed else 'FAIL'}"
        + (" (RANDOM WEIGHTS)" if art.weights_warning else ""),
        "",
    ]
    if art.weights_warning:  # a PASS at 0.05% mIoU must not read as a result
        lines += [f"> **{art.weights_warning}**", ""]
    lines += [
        f"- **artifact**: `{art.path}` ({art.model or 'model unknown'}, {art.precision}, "
        f"input {art.resolution[0]}x{art.resolution[1]})",
        f"- **weights**: {art.weights_source or 'not recorded (no manifest)'}",
        f"- **dataset**: {data.kind} `{data.root}`, {data.evaluated} picture(s)"
        + (f", {len(report.skipped)} skipped as bad" if report.skipped else ""),
        f"- **reference backend**: `{report.against}`; gate: every logit finite"
        + ("" if gate is None else f", mIoU drop <= {gate:g} points"),
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
    lines = [
        "| backend | ran on | mIoU % | pixel acc % | drop (points) | NaN/Inf px (pictures) | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for b in report.backends:
        verdict = {True: "pass", False: "**FAIL**", None: ""}[b.passed]
        nonfinite = f"**{b.nonfinite_pixels} ({b.nonfinite_pictures})**" if b.nonfinite_pixels else "0"
        lines.append(
            f"| `{b.backend}` | {b.ran.get('ran_on', '')} | {_pct(b.miou)} | {_pct(b.pixel_accuracy)} | "
            f"{_drop(b, report.against)} | {nonfinite} | {verdict} |"
        )
    failures = report.failures()
    return lines + [""] + ((["**Failed:**", ""] + [f"- {f}" for f in failures] + [""]) if failures else [])


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
        lines += [
            f"| `{w.image}` | {100 * w.disagreement:.3f} | {('`' + Path(w.picture).name + '`') if w.picture else ''} |"
            for w in worst
        ]
        lines += [
            "",
            "Pictures: the reference backend's labels in their colours, darkened; white where the other backend's "
            "label differs.",
            "",
        ]
    return lines


def junit_xml(report: EvaluateReport) -> bytes:
    gate = report.max_miou_drop_points
    reference_miou = report.reference.miou
    cases = []
    for b in report.backends:
        passed = b.passed is not False
        failure = "" if passed else _failure(report, b)
        if b.backend == report.against:
            # the reference has no drop to gate: a case of its own only when its logits are not finite
            if b.nonfinite_pixels:
                cases.append((f"{b.backend}: finite logits", False, nonfinite_text(b, report.images), failure))
            continue
        detail = (
            f"mIoU {_pct(b.miou)} % vs {_pct(reference_miou)} % on `{report.against}`: drop "
            + ("-" if b.miou_drop_points is None else f"{b.miou_drop_points:.3f}")
            + " points"
            + ("" if gate is None else f", budget {gate:g}")
            + f"; {nonfinite_text(b, report.images)}"
        )
        cases.append((f"{b.backend}: mIoU drop against {report.against}", passed, detail, failure))
    classname = f"msla-deploy.evaluate.{report.artifact.model or report.artifact.name}"
    return junit_suite("msla-deploy evaluate", classname, cases, report.seconds)


def write_reports(report: EvaluateReport, folder: Path, extra_junit: Optional[Path] = None) -> Dict[str, str]:
    """report.json, report.md and junit.xml in `folder` (parity/reports.py's writer); the files
    written are recorded in the report (`report.files`) and returned."""
    report.files = write_report_files(report.to_dict(), folder, markdown(report), junit_xml(report), extra_junit)
    return report.files
