"""The `validate` and `reference` commands: parse, call the library, render. Registered in cli.py.

Exit codes: 0 pass, 1 out of budget, 2 bad input, 3 missing runtime (a backend the user named
that cannot run here, including an ONNX Runtime GPU provider that fell back to the CPU).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional, Tuple

import typer
from rich.markup import escape

from ..cli_options import (
    VALIDATE_BACKENDS,
    artifact_argument,
    backend_option,
    json_option,
    junit_option,
    next_command,
    report_dir_option,
)
from ..console import err, key_values, out, parity_table, print_json, print_next, steps_with_progress, weights_cell
from ..errors import CheckFailed

if TYPE_CHECKING:  # annotations only: msla_deploy.parity pulls numpy in, and --help must not wait for it
    from .records import Localization, ValidateReport


def validate_command(
    artifact: Path = artifact_argument(),
    reference: Optional[Path] = typer.Option(
        None, "--reference", help="Reference bundle folder (default: the export's reference/)."
    ),
    backend: str = backend_option(names=VALIDATE_BACKENDS),
    atol: Optional[str] = typer.Option(
        None, "--atol", help="Absolute part of the max-abs-error limit (limit = atol + rtol x peak |reference|)."
    ),
    rtol: Optional[str] = typer.Option(None, "--rtol", help="Peak-relative part of the max-abs-error limit."),
    min_cosine: Optional[str] = typer.Option(None, "--min-cosine", help="Minimum cosine similarity per output."),
    min_argmax_agreement: Optional[str] = typer.Option(
        None,
        "--min-argmax-agreement",
        "--min-top1-agreement",
        help="Minimum share of pixels (segmentation) or pictures (classification: top-1) whose best class is the "
        "reference's: 0.995 or 99.5%.",
    ),
    max_miou_drop: Optional[str] = typer.Option(
        None,
        "--max-miou-drop",
        help="Segmentation: maximum 1 - mIoU of the artifact's labels against the reference's: 0.01 or 1%.",
    ),
    min_mask_iou: Optional[str] = typer.Option(
        None,
        "--min-mask-iou",
        help="SAM: minimum mean IoU of the binarised masks (logits > 0) against PyTorch's: 0.999 or 99.9%.",
    ),
    max_score_error: Optional[str] = typer.Option(
        None, "--max-score-error", help="SAM: maximum absolute error of the predicted mask IoUs (0..1 scores)."
    ),
    report_dir: Optional[Path] = report_dir_option("DIR/validation/, or validation-<file>/ beside a file"),
    junit: Optional[Path] = junit_option(),
    json_out: bool = json_option("the report"),
    localize: bool = typer.Option(
        False,
        "--localize",
        help="Find the first module where the numbers drift (needs PyTorch and the export's manifest).",
    ),
    allow_modified: bool = typer.Option(
        False,
        "--allow-modified",
        help="Validate an export whose files no longer match the sha256 its manifest "
        "recorded (default: that fails, exit 1).",
    ),
) -> None:
    """Run an artifact on its reference inputs and check it against the precision's parity budget."""
    from .validate import ValidateOptions, run_validate

    flags = {
        "atol": atol,
        "rtol": rtol,
        "min-cosine": min_cosine,
        "min-argmax-agreement": min_argmax_agreement,
        "max-miou-drop": max_miou_drop,
        "min-mask-iou": min_mask_iou,
        "max-score-error": max_score_error,
    }
    report = run_validate(
        ValidateOptions(
            artifact=artifact,
            reference=reference,
            backend=backend,
            budget_flags=flags,
            report_dir=report_dir,
            junit=junit,
            localize=localize,
            allow_modified=allow_modified,
        ),
        steps_with_progress(),
    )
    if json_out:
        print_json(report.to_dict())
    else:
        render_validate(report)
    if not report.passed:
        hint = "" if localize or report.localization else "; --localize finds where it starts"
        raise CheckFailed(
            f"validation failed: {'; '.join(report.failures())}", f"report in {report.files['markdown']}{hint}"
        )
    if not json_out:
        print_next(next_after_validate(artifact, backend, report.backend["used"]))


def next_after_validate(artifact: Path, requested: str, used: str) -> List[Tuple[str, str]]:
    """After a pass: an ONNX on ONNX Runtime goes on to TensorRT; an engine to timing and Triton."""
    if used == "triton":
        return [(next_command("bench", artifact, "--backend", requested), "latency and throughput through the server")]
    if used == "trt":
        return [
            (next_command("bench", artifact, "--backend", "trt"), "latency and throughput of the engine"),
            (
                next_command("package", artifact, "--triton", "triton-repo"),
                "a Triton Inference Server model repository",
            ),
        ]
    return [
        (next_command("build", artifact), "a TensorRT engine for this GPU; then validate it with --backend trt"),
        (next_command("bench", artifact, "--backend", used), "latency and throughput"),
    ]


def render_validate(report: ValidateReport) -> None:
    """The report on the terminal: what ran, the metrics table, notes, the drift, where the files are."""
    run, art, budget = report.backend, report.artifact, report.budget
    ran_on = escape(f"{run['runtime']} {run['version']} on {run['ran_on']}")
    if run.get("note"):
        ran_on += f" [yellow]({escape(run['note'])})[/]"
    sources = sorted(set(budget.sources.values()))
    # paths and table names are data, not Rich markup: "[tool.msla-deploy.validate]" must show
    out.print(
        key_values(
            [
                ("artifact", escape(f"{art.path} ({art.model or 'model unknown'})")),
                ("precision", escape(f"{art.precision} ({art.precision_source})")),
                ("weights", weights_cell(art.weights_source, art.weights_warning)),
                ("ran on", ran_on),
                ("reference", escape(f"{report.reference.samples} sample(s), {report.reference.source}")),
                ("budget from", escape("; ".join(sources))),
            ]
        )
    )
    if report.comparisons:  # a SAM artifact: a table per comparison, under its own budget
        _render_comparisons(report)
    else:
        out.print(parity_table(report.outputs, budget.values, f"{run['ran_on']} vs PyTorch fp32 reference"))
    for o in report.outputs:
        if o.vacuous_note:
            out.print(f"[yellow]note:[/] {escape(o.name)}: {escape(o.vacuous_note)}", highlight=False)
    for o in report.outputs:
        if o.miou is not None:
            worst = max((c for c in o.class_iou or [] if c["change"]), key=lambda c: c["change"], default=None)
            text = f"{o.name}: mIoU {100 * o.miou:.3f}% (prediction vs prediction)"
            if worst:
                name = f" {worst['name']}" if worst.get("name") else ""
                text += f", largest IoU change: class {worst['class']}{name} {100 * worst['change']:.2f}%"
            out.print(escape(text), highlight=False)
    _render_localization(report.localization)
    for note in budget.notes:
        err.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
    out.print(escape(f"reports: {report.report_dir}"), highlight=False)


def _render_comparisons(report: ValidateReport) -> None:
    from .reports import comparison_title

    for g in report.graphs:
        ran_on = f"{g.ran_on.get('runtime')} {g.ran_on.get('version')} on {g.ran_on.get('ran_on')}"
        out.print(escape(f"{g.role}: {g.file} ({g.precision}), {ran_on}"), highlight=False)
    for c in report.comparisons:
        # the table's columns: the output alone (the comparison is the title)
        rows = [replace(o, name=o.name.split(": ", 1)[-1]) for o in report.comparison_outputs(c.label)]
        title = f"{comparison_title(c)} vs PyTorch fp32 reference: {'pass' if c.passed else 'FAIL'}"
        out.print(parity_table(rows, c.budget.values, escape(title)))


def _render_localization(loc: Optional[Localization]) -> None:
    if loc is None:
        return
    first = loc.first_offender or "none: every probe is within the limit"
    out.print(f"first module where the numbers drift: [bold]{escape(first)}[/]", highlight=False)
    by_name = {p.module: p for p in loc.probes}
    for name in loc.ranked[:5]:
        p = by_name[name]
        bad = f", {p.nonfinite} NaN/Inf" if p.nonfinite else ""
        relative = "-" if p.relative is None else f"{p.relative:.3g}"
        cosine = "-" if p.cosine is None else f"{p.cosine:.6f}"
        out.print(escape(f"  {name}: max |error| / peak {relative}, cosine {cosine}{bad}"), highlight=False)
    for note in loc.notes:
        err.print(f"[yellow]note:[/] {escape(note)}", highlight=False)


def reference_command(
    artifact_dir: Path = typer.Argument(..., help="Export directory whose reference bundle gets the pictures."),
    inputs: Path = typer.Option(
        ..., "--inputs", help="Folder of pictures: .npy (H x W x 3 RGB, uint8 or [0, 1]) always; .png/.jpg with Pillow."
    ),
    json_out: bool = json_option(),
) -> None:
    """Add real pictures to an export's reference bundle (PyTorch computes their outputs).

    The pictures follow the export's synthetic samples; running it again replaces the pictures added before
    (the synthetic samples stay)."""
    from .reference_images import add_reference_images

    result = add_reference_images(artifact_dir, inputs, steps_with_progress())
    data = {
        "directory": str(result.directory),
        "samples": result.samples,
        "synthetic_samples": result.synthetic,
        "replaced_pictures": result.replaced,
        "images": result.images,
    }
    if json_out:
        print_json(data)
        return
    out.print(
        key_values(
            [
                ("bundle", escape(str(result.directory / "reference"))),
                (
                    "pictures",
                    escape(
                        f"{len(result.images)} ({', '.join(i['file'] for i in result.images[:5])}"
                        f"{', ...' if len(result.images) > 5 else ''})"
                    ),
                ),
                ("samples", f"{result.samples} ({result.synthetic} synthetic + {len(result.images)} pictures)"),
            ]
            + (
                [("replaced", f"{result.replaced} earlier picture{'s' if result.replaced != 1 else ''}")]
                if result.replaced
                else []
            )
        )
    )
