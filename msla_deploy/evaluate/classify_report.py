"""The classification evaluation's report: ClassifyReport (report.json's typed record, built by
classification.py), report.md (CI summary) and junit.xml (one case per gate), written with
reporting.py's generic writers as segmentation's report is."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from ..records import Record
from ..reporting import junit_suite, write_report_files
from .report import ArtifactSummary, SkippedPicture

WORST_CLASSES = 20  # classes listed in report.md (the reference's lowest top-1 first)


@dataclass
class ClassDatasetSummary:
    kind: str  # imagefolder | list
    root: str  # what --data named
    images: int  # in the dataset (before --limit)
    classes: int  # class folders, or the highest index of the list + 1
    evaluated: int


@dataclass
class ClassifyProtocol:
    """How the figures were computed, in words (the report says it beside the numbers)."""

    input_resolution: List[int]  # [H, W]
    crop_ratio: float
    resize_short_side: int
    resize: str
    crop: str
    normalise: str
    scored: str  # which output the ranking came from
    metric: str


@dataclass
class ClassifyBackendResult:
    backend: str
    ran: Dict[str, Any]  # the session's own description (runtime, providers, device)
    output: str  # the output ranked (logits, probs, topk_indices)
    top1: Optional[float]  # fractions
    top5: Optional[float]  # None: the output ranks fewer classes than top-5 needs
    top1_drop_points: Optional[float]  # against the reference backend; None for the reference
    passed: Optional[bool]  # None: not gated
    inference_s: float
    nonfinite_pictures: int  # pictures whose scores had a NaN or infinite value (each fails the backend)
    # AccuracyTally.class_table rows: {class, name, images, top1, topk}, classes with pictures only
    class_accuracy: List[Dict[str, Any]]


@dataclass
class AgreementResult:
    """A backend's predictions against the reference backend's (prediction vs prediction)."""

    reference: str
    candidate: str
    top1_agreement: Optional[float]  # fraction of pictures with the same top-1 class
    top5_overlap: Optional[float]  # mean share of the top-5 classes the two have in common
    differing: int  # pictures whose top-1 differ
    differing_images: List[str]  # the first few of them


@dataclass
class ClassifyReport(Record):
    """evaluate's result for a classifier: report.json, what --json prints, what report.md and
    junit.xml show."""

    KIND = "msla-deploy/evaluate-classification-report"
    VERSION = 1

    passed: bool
    task: str
    artifact: ArtifactSummary
    dataset: ClassDatasetSummary
    protocol: ClassifyProtocol
    against: str  # the reference backend
    min_top1_percent: Optional[float]
    max_top1_drop_points: Optional[float]
    images: int
    seconds: float
    images_per_second: Optional[float]
    backends: List[ClassifyBackendResult]
    pairs: List[AgreementResult]
    skipped: List[SkippedPicture]
    notes: List[str]
    files: Dict[str, str] = field(default_factory=dict)  # json, markdown, junit (and junit_extra)

    @property
    def reference(self) -> ClassifyBackendResult:
        return next(b for b in self.backends if b.backend == self.against)

    @property
    def failed(self) -> List[ClassifyBackendResult]:
        return [b for b in self.backends if b.passed is False]

    def failures(self) -> List[str]:
        """Why each failed backend failed, one phrase each (the verdict line and junit.xml)."""
        return ["; ".join(reasons(self, b)) for b in self.failed]


def _pct(value: Optional[float]) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def nonfinite_text(b: ClassifyBackendResult, images: int) -> str:
    return f"NaN/Inf scores in {b.nonfinite_pictures} of {images} picture(s)"


def missed_min_top1(report: ClassifyReport, b: ClassifyBackendResult) -> bool:
    gate = report.min_top1_percent
    return gate is not None and (b.top1 is None or 100 * b.top1 < gate)


def missed_max_drop(report: ClassifyReport, b: ClassifyBackendResult) -> bool:
    gate = report.max_top1_drop_points
    if gate is None or b.backend == report.against:
        return False
    return b.top1_drop_points is None or b.top1_drop_points > gate


def reasons(report: ClassifyReport, b: ClassifyBackendResult) -> List[str]:
    """What fails this backend, one phrase each (empty: it passes)."""
    found = [f"{b.backend} gave {nonfinite_text(b, report.images)}"] if b.nonfinite_pictures else []
    if missed_min_top1(report, b):
        found.append(f"{b.backend}: top-1 {_pct(b.top1)} % is below --min-top1 {report.min_top1_percent:g}")
    if missed_max_drop(report, b):
        drop = "-" if b.top1_drop_points is None else f"{b.top1_drop_points:.3f}"
        found.append(
            f"{b.backend} loses {drop} points of top-1 against {report.against} "
            f"(budget {report.max_top1_drop_points:g})"
        )
    return found


def markdown(report: ClassifyReport) -> str:
    art, data, proto = report.artifact, report.dataset, report.protocol
    gates = ["every score finite"]
    if report.min_top1_percent is not None:
        gates.append(f"top-1 >= {report.min_top1_percent:g} %")
    if report.max_top1_drop_points is not None:
        gates.append(f"top-1 drop <= {report.max_top1_drop_points:g} points")
    lines = [
        f"## msla-deploy evaluate (classification): {'PASS' if report.passed else 'FAIL'}"
        + (" (RANDOM WEIGHTS)" if art.weights_warning else ""),
        "",
    ]
    if art.weights_warning:
        lines += [f"> **{art.weights_warning}**", ""]
    lines += [
        f"- **artifact**: `{art.path}` ({art.model or 'model unknown'}, {art.precision}, "
        f"input {art.resolution[0]}x{art.resolution[1]}, {art.num_classes} classes)",
        f"- **weights**: {art.weights_source or 'not recorded (no manifest)'}",
        f"- **dataset**: {data.kind} `{data.root}`, {data.evaluated} picture(s) of {data.classes} class(es)"
        + (f", {len(report.skipped)} skipped as bad" if report.skipped else ""),
        f"- **protocol**: {proto.resize}; {proto.crop}; {proto.normalise}; {proto.metric}",
        f"- **reference backend**: `{report.against}`; gate: {', '.join(gates)}",
    ]
    if report.images_per_second:
        lines.append(
            f"- **throughput**: {report.images_per_second:.2f} images/s over {report.seconds:.1f} s "
            "(all backends, decoding included)"
        )
    lines.append("")
    lines += [f"> {note}" for note in report.notes] + ([""] if report.notes else [])
    lines += _backend_table(report) + _class_table(report)
    for pair in report.pairs:
        lines += [
            f"### `{pair.candidate}` against `{pair.reference}` (prediction vs prediction)",
            "",
            f"top-1 agreement {_pct(pair.top1_agreement)} %, top-5 overlap {_pct(pair.top5_overlap)} %, "
            f"{pair.differing} picture(s) with another top-1 class"
            + (": " + ", ".join(f"`{name}`" for name in pair.differing_images) if pair.differing_images else ""),
            "",
        ]
    if report.skipped:
        lines += ["### Skipped (bad input)", ""] + [f"- `{s.image}`: {s.problem}" for s in report.skipped] + [""]
    return "\n".join(lines).rstrip() + "\n"


def _drop(report: ClassifyReport, b: ClassifyBackendResult) -> str:
    if b.backend == report.against:
        return "reference"
    return "-" if b.top1_drop_points is None else f"{b.top1_drop_points:.3f}"


def _backend_table(report: ClassifyReport) -> List[str]:
    lines = [
        "| backend | ran on | output | top-1 % | top-5 % | drop (points) | NaN/Inf pictures | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for b in report.backends:
        verdict = {True: "pass", False: "**FAIL**", None: ""}[b.passed]
        nonfinite = f"**{b.nonfinite_pictures}**" if b.nonfinite_pictures else "0"
        lines.append(
            f"| `{b.backend}` | {b.ran.get('ran_on', '')} | {b.output} | {_pct(b.top1)} | {_pct(b.top5)} | "
            f"{_drop(report, b)} | {nonfinite} | {verdict} |"
        )
    failures = report.failures()
    return lines + [""] + ((["**Failed:**", ""] + [f"- {f}" for f in failures] + [""]) if failures else [])


def _class_table(report: ClassifyReport) -> List[str]:
    rows = report.reference.class_accuracy
    if not rows:
        return []
    by_class = [{r["class"]: r for r in b.class_accuracy} for b in report.backends]
    shown = sorted(rows, key=lambda r: (r["top1"], r["class"]))[:WORST_CLASSES]
    which = "every class" if len(shown) == len(rows) else f"the {len(shown)} of {len(rows)} classes lowest"
    header = "| class | pictures | " + " | ".join(f"`{b.backend}` top-1 %" for b in report.backends) + " |"
    lines = [
        f"### Per-class top-1 ({which} on `{report.against}`; all of them in report.json)",
        "",
        header,
        "|---" * (len(report.backends) + 2) + "|",
    ]
    for row in shown:
        name = f"{row['class']} {row['name']}" if row.get("name") else str(row["class"])
        cells = [_pct(b.get(row["class"], {}).get("top1")) for b in by_class]
        lines.append(f"| {name} | {row['images']} | " + " | ".join(cells) + " |")
    return lines + [""]


def junit_xml(report: ClassifyReport) -> bytes:
    cases = []
    for b in report.backends:
        failure = "; ".join(reasons(report, b))
        if b.nonfinite_pictures:
            cases.append((f"{b.backend}: finite scores", False, nonfinite_text(b, report.images), failure))
        if report.min_top1_percent is not None:
            detail = f"top-1 {_pct(b.top1)} %, top-5 {_pct(b.top5)} %; minimum {report.min_top1_percent:g} %"
            cases.append(
                (
                    f"{b.backend}: top-1 >= {report.min_top1_percent:g} %",
                    not missed_min_top1(report, b),
                    detail,
                    failure,
                )
            )
        if b.backend != report.against:
            gate = report.max_top1_drop_points
            detail = (
                f"top-1 {_pct(b.top1)} % vs {_pct(report.reference.top1)} % on `{report.against}`: drop "
                + ("-" if b.top1_drop_points is None else f"{b.top1_drop_points:.3f}")
                + " points"
                + ("" if gate is None else f", budget {gate:g}")
                + f"; {nonfinite_text(b, report.images)}"
            )
            cases.append(
                (f"{b.backend}: top-1 drop against {report.against}", not missed_max_drop(report, b), detail, failure)
            )
    classname = f"msla-deploy.evaluate.{report.artifact.model or report.artifact.name}"
    return junit_suite("msla-deploy evaluate", classname, cases, report.seconds)


def write_reports(report: ClassifyReport, folder, extra_junit=None) -> Dict[str, str]:
    """report.json, report.md and junit.xml in `folder`; recorded in `report.files` and returned."""
    return write_report_files(report, folder, markdown(report), junit_xml(report), extra_junit)
