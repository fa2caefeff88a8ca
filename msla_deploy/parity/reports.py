"""validate's report in the three forms CI wants (reporting.py writes them): report.json (the
ValidateReport record), report.md (a table for a CI summary page) and junit.xml (one test case per
output and budget criterion)."""

from __future__ import annotations

from typing import Dict, List, Optional

from ..reporting import (
    JUnitCase,
    cell,
    junit_suite,
    percent,
    table,
    write_report_files,
)
from .config import BudgetChoice
from .records import Comparison, ValidatedOutput, ValidateReport

__all__ = ["markdown", "junit_xml", "write_reports"]

# budget criterion -> (metric label, Budget fields it comes from)
CRITERIA = {
    "finite": ("NaN / Inf", ("allow_nonfinite",)),
    "max_abs": ("max abs error", ("max_abs_rel", "max_abs_floor")),
    "cosine": ("cosine similarity", ("min_cosine",)),
    "argmax_agreement": ("argmax agreement", ("min_argmax_agreement",)),
    "miou_drop": ("mIoU drop (prediction vs prediction)", ("max_miou_drop",)),
    "mask_iou": ("mask IoU", ("min_mask_iou",)),
    "score_error": ("predicted-IoU error", ("max_score_error",)),
}
TOP_CLASSES = 8
TOP_PROBES = 10


def _source(choice: BudgetChoice, criterion: str) -> str:
    sources = choice.sources
    labels = []
    for name in CRITERIA[criterion][1]:
        label = sources.get(name, "")
        label = label.split(" (")[0] if label.startswith("pyproject") else label
        if label not in labels:
            labels.append(label)
    return "; ".join(labels)


def _check_cell(o: ValidatedOutput, name: str, text: str) -> str:
    check = next((c for c in o.checks if c.name == name), None)
    return text if check is None or check.passed else text + " **FAIL**"


def _limit(outputs: List[ValidatedOutput], name: str) -> str:
    """The criterion's limit where every output checked by it has the same one (a max-abs limit
    follows each output's peak: then the per-output limits are in report.json)."""
    limits = {c.limit for o in outputs for c in o.checks if c.name == name}
    if not limits:
        return "not checked"
    return limits.pop() if len(limits) == 1 else "see report.json"


def _metrics_table(
    outputs: List[ValidatedOutput], choice: BudgetChoice, names: Optional[List[str]] = None
) -> List[str]:
    """One column per output, one row per metric; `names` (column titles) for a SAM comparison,
    whose outputs have no classes: no argmax or mIoU rows."""
    budget = choice.values
    rows = []

    def row(label: str, cells: List[str], limit: str = "", source: str = "") -> None:
        rows.append([label, *cells, limit, source])

    row(
        "NaN / Inf",
        [_check_cell(o, "finite", f"{o.nan_count} / {o.inf_count}") for o in outputs],
        _limit(outputs, "finite"),
        _source(choice, "finite"),
    )
    max_abs_budget = (
        "not checked"
        if budget.max_abs_rel is None
        else f"{_limit(outputs, 'max_abs')} ({budget.max_abs_rel:g} x peak + {budget.max_abs_floor:g})"
    )
    row(
        "max abs error",
        [_check_cell(o, "max_abs", cell(o.max_abs, ".3g")) for o in outputs],
        max_abs_budget,
        _source(choice, "max_abs"),
    )
    row("max abs error / peak", [cell(o.relative_max_abs, ".2e") for o in outputs])
    row("mean abs error", [cell(o.mean_abs, ".3g") for o in outputs])
    row("p99 abs error", [cell(o.p99_abs, ".3g") for o in outputs])
    row("max rel error (floor 1e-3 x peak)", [cell(o.max_rel, ".3g") for o in outputs])
    row(
        "cosine similarity",
        [_check_cell(o, "cosine", cell(o.cosine, ".7f")) for o in outputs],
        _limit(outputs, "cosine"),
        _source(choice, "cosine"),
    )
    if names is None:  # classes: argmax and mIoU
        row(
            "argmax agreement",
            [_check_cell(o, "argmax_agreement", percent(o.argmax_agreement)) for o in outputs],
            _limit(outputs, "argmax_agreement"),
            _source(choice, "argmax_agreement"),
        )
        miou_budget = "not checked" if budget.max_miou_drop is None else _limit(outputs, "miou_drop")
        row(
            "mIoU (prediction vs prediction)",
            [_check_cell(o, "miou_drop", percent(o.miou)) for o in outputs],
            miou_budget if miou_budget == "not checked" else f"drop {miou_budget}",
            _source(choice, "miou_drop"),
        )
    if any(o.mask_iou is not None for o in outputs):  # SAM's masks
        row(
            "mask IoU (worst mask)",
            [
                _check_cell(o, "mask_iou", "-" if o.mask_iou is None else f"{o.mask_iou:.5f} ({o.mask_iou_min:.4f})")
                for o in outputs
            ],
            _limit(outputs, "mask_iou"),
            _source(choice, "mask_iou"),
        )
    if any(c.name == "score_error" for o in outputs for c in o.checks):  # SAM's predicted IoUs
        row(
            "predicted-IoU error",
            [_check_cell(o, "score_error", cell(o.max_abs, ".3g") if _has(o, "score_error") else "-") for o in outputs],
            _limit(outputs, "score_error"),
            _source(choice, "score_error"),
        )
    row("verdict", ["pass" if o.passed else "**FAIL**" for o in outputs])
    names = names or [o.name for o in outputs]
    return table(["metric", *(f"`{n}`" for n in names), "budget", "budget from"], rows)


def _has(o: ValidatedOutput, check: str) -> bool:
    return any(c.name == check for c in o.checks)


def comparison_title(comparison: Comparison) -> str:
    """ "pair: encoder -> decoder (fp16 budget)"; a comparison of one graph is named by it."""
    graphs = " -> ".join(comparison.graphs)
    named = comparison.label if comparison.label.startswith(graphs) else f"{comparison.label}: {graphs}"
    return f"{named} ({comparison.budget.precision} budget)"


def _comparison_tables(report: ValidateReport) -> List[str]:
    """A multi-graph artifact (SAM): a table per comparison, each under its own budget."""
    lines: List[str] = []
    for comparison in report.comparisons:
        outputs = report.comparison_outputs(comparison.label)
        verdict = "pass" if comparison.passed else "**FAIL**"
        lines += [
            f"### {comparison_title(comparison)}: {verdict}",
            "",
            f"Fed: {comparison.inputs}.",
            "",
        ]
        names = [o.name.split(": ", 1)[-1] for o in outputs]
        lines += _metrics_table(outputs, comparison.budget, names) + [""]
    return lines


def _class_changes(o: ValidatedOutput) -> List[str]:
    changed = sorted((c for c in o.class_iou or [] if c["change"]), key=lambda c: -c["change"])
    if not changed:
        return []
    rows = [
        [
            f"{c['class']} {c['name']}" if c.get("name") else str(c["class"]),
            f"{c['iou']:.4f}",
            f"{100 * c['change']:.2f}%",
            str(c["reference_pixels"]),
            str(c["candidate_pixels"]),
        ]
        for c in changed[:TOP_CLASSES]
    ]
    return (
        [f"### Classes whose IoU changed most (`{o.name}`)", ""]
        + table(["class", "IoU", "change", "reference px", "artifact px"], rows)
        + [""]
    )


def _localization(report: ValidateReport) -> List[str]:
    loc = report.localization
    if loc is None:
        return []
    first = f"`{loc.first_offender}`" if loc.first_offender else "none (every probe within the limit)"
    crit = loc.criterion
    lines = [
        "### Where the numbers drift",
        "",
        f"First offender: {first} (limit: max |error| <= {crit.max_relative:g} x peak, cosine >= {crit.min_cosine:g})",
        "",
    ]
    by_name = {p.module: p for p in loc.probes}
    rows = []
    for rank, name in enumerate(loc.ranked[:TOP_PROBES], 1):
        p = by_name[name]
        rows.append(
            [
                str(rank),
                f"`{name}`",
                cell(p.relative, ".3g"),
                cell(p.cosine, ".6f"),
                str(p.nonfinite),
                "yes" if p.offender else "",
            ]
        )
    lines += table(["rank", "module", "max abs / peak", "cosine", "NaN/Inf", "over"], rows)
    return lines + [""] + [f"> {note}" for note in loc.notes] + ([""] if loc.notes else [])


def markdown(report: ValidateReport) -> str:
    art, run = report.artifact, report.backend
    verdict = "PASS" if report.passed else "FAIL"
    lines = [
        f"## msla-deploy validate: {verdict}" + (" (RANDOM WEIGHTS)" if art.weights_warning else ""),
        "",
    ]
    if art.weights_warning:  # a pass proves the deployment matches PyTorch, not that the model is any good
        lines += [f"> **{art.weights_warning}**", ""]
    lines += [
        f"- **artifact**: `{art.path}` ({art.model or 'model unknown'}, {art.precision})",
        f"- **weights**: {art.weights_source or 'not recorded (no manifest)'}",
        f"- **ran on**: {run['runtime']} {run['version']}, {run['ran_on']} (backend `{run['requested']}` -> "
        f"`{run['used']}`)" + (f" - {run['note']}" if run.get("note") else ""),
        f"- **reference**: {report.reference.samples} sample(s), {report.reference.source}",
        "",
    ]
    if report.warnings:
        lines += [f"> **warning**: {w}" for w in report.warnings] + [""]
    outputs = report.outputs
    if report.graphs:
        lines += [
            f"- **{g.role}**: `{g.file}` ({g.precision}) on {g.ran_on.get('runtime')} {g.ran_on.get('version')}, "
            f"{g.ran_on.get('ran_on')}"
            for g in report.graphs
        ] + [""]
    lines += _comparison_tables(report) if report.comparisons else _metrics_table(outputs, report.budget) + [""]
    lines += [f"> **note** (`{o.name}`): {o.vacuous_note}" for o in outputs if o.vacuous_note]
    lines += [""] if any(o.vacuous_note for o in outputs) else []
    measured = sorted({tool for o in outputs for tool in o.measured_by.values()})
    if measured:
        lines += [
            f"max / mean / p99 abs error and cosine measured by {', '.join(measured)}; the rest by msla-deploy "
            "(numpy).",
            "",
        ]
    failures = [f"`{o.name}`: {f}" for o in outputs for f in o.failures]
    if failures:
        lines += ["**Failed:**", ""] + [f"- {f}" for f in failures] + [""]
    for o in outputs:
        lines += _class_changes(o)
    lines += _localization(report)
    if report.pictures:
        lines += ["### Pictures", ""]
        for name, files in report.pictures.items():
            lines.append(
                f"- `{name}`: label disagreement `{files['disagreement']}` (white: label differs), error heatmap "
                f"`{files['error_heatmap']}` "
                f"(absolute scale: black 0, yellow = {files['error_scale']:.3g}, red beyond it, magenta NaN/Inf)"
            )
        lines.append("")
    for note in report.budget.notes:
        lines.append(f"> {note}")
    return "\n".join(lines).rstrip() + "\n"


def junit_xml(report: ValidateReport) -> bytes:
    """One <testcase> per output and budget criterion; a failed criterion carries <failure>."""
    cases = [
        JUnitCase(f"{o.name}: {CRITERIA[c.name][0]}", c.passed, f"measured {c.value}, budget {c.limit}", c.message)
        for o in report.outputs
        for c in o.checks
    ]
    classname = f"msla-deploy.validate.{report.artifact.model or report.artifact.name}"
    return junit_suite("msla-deploy validate", classname, cases, report.timings_s.get("total", 0))


def write_reports(report: ValidateReport, folder, extra_junit: Optional[str] = None) -> Dict[str, str]:
    """validate's report.json, report.md and junit.xml in `folder`; junit also at `extra_junit`.
    The record's `files` says where they went (also returned)."""
    return write_report_files(report, folder, markdown(report), junit_xml(report), extra_junit)
