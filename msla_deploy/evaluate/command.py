"""The `evaluate` command: parse, call msla_deploy.evaluate.run, render. Registered in cli.py.

Exit codes: 0 evaluated (and within --max-miou-drop), 1 a backend gave a NaN/Inf logit or lost
more mIoU than allowed, 2 bad input (a bad dataset file is named), 3 missing runtime.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, List, Optional

import typer
from rich.markup import escape

from ..choices import IGNORE_INDEX, Dataset
from ..cli_options import (
    AUTO_BACKEND,
    artifact_argument,
    backend_option,
    json_option,
    junit_option,
    report_dir_option,
    threads_option,
)
from ..console import counting_progress, err, error_line, key_values, out, print_json, weights_cell

if TYPE_CHECKING:
    from .report import EvaluateReport


def evaluate_command(
    artifact: Path = artifact_argument(),
    data: Path = typer.Option(
        ..., "--data", help="Dataset root or its split folder (Cityscapes, ADE20K, or images/ + labels/)."
    ),
    dataset: Dataset = typer.Option(
        Dataset.AUTO, "--dataset", help="Dataset layout (auto: recognised from the folder; folder: images/ + labels/)."
    ),
    backend: Optional[List[str]] = backend_option(
        None,
        multiple=True,
        help=f"Backend to evaluate (repeatable, one pass over the data; {AUTO_BACKEND}) [default: auto].",
    ),
    against: Optional[str] = typer.Option(
        None,
        "--against",
        help="Reference backend for the mIoU drop [default: torch if evaluated, else the first --backend].",
    ),
    limit: Optional[int] = typer.Option(None, "--limit", help="Evaluate the first N pictures only."),
    max_miou_drop: Optional[float] = typer.Option(
        None,
        "--max-miou-drop",
        help="Exit 1 when a backend loses more than this many points of mIoU against --against.",
    ),
    ignore_index: int = typer.Option(
        IGNORE_INDEX, "--ignore-index", help="--dataset folder: the label value that counts for no class."
    ),
    report_dir: Optional[Path] = report_dir_option(
        "evaluation/ in the export directory", "report.json, report.md, junit.xml and pictures"
    ),
    junit: Optional[Path] = junit_option("junit.xml"),
    save_predictions: Optional[Path] = typer.Option(
        None, "--save-predictions", help="Write each backend's labels (train ids, PNG) under DIR/<backend>/."
    ),
    skip_bad: bool = typer.Option(
        False, "--skip-bad", help="Skip bad pictures or labels (counted and listed in the report) instead of stopping."
    ),
    threads: Optional[int] = threads_option(),
    json_out: bool = json_option("the report"),
) -> None:
    """mIoU of the deployed model on a labelled dataset (upstream's protocol), several backends in one pass."""
    from .run import EvaluateOptions, evaluate

    options = EvaluateOptions(
        artifact=artifact,
        data=data,
        dataset=dataset,
        backends=list(backend or ["auto"]),
        against=against,
        limit=limit,
        max_miou_drop=max_miou_drop,
        ignore_index=ignore_index,
        save_predictions=save_predictions,
        skip_bad=skip_bad,
        threads=threads,
        report_dir=report_dir,
        junit=junit,
    )
    options.check()  # bad flags exit 2 before the progress display starts
    with counting_progress("evaluating", "images/s") as on_progress:
        report = evaluate(options, on_progress)
    if json_out:
        print_json(report.to_dict())
    else:
        _render(report)
    if not report.passed:
        error_line("; ".join(report.failures()) + f" (details in {report.files['markdown']})")
        raise typer.Exit(1)


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def _render(report: "EvaluateReport") -> None:
    from rich import box
    from rich.table import Table

    art, data = report.artifact, report.dataset
    skipped = f", {len(report.skipped)} skipped" if report.skipped else ""
    speed = f"{report.images_per_second:.2f} images/s ({report.seconds:.1f} s)" if report.images_per_second else "-"
    out.print(
        key_values(
            [
                (
                    "artifact",
                    escape(
                        f"{art.path} ({art.model or 'model unknown'}, {art.precision}, "
                        f"{art.resolution[0]}x{art.resolution[1]})"
                    ),
                ),
                ("weights", weights_cell(art.weights_source, art.weights_warning)),
                ("dataset", escape(f"{data.kind} {data.root}: {data.evaluated} picture(s){skipped}")),
                ("speed", speed),
                ("report", escape(report.files.get("markdown", ""))),
            ]
        )
    )
    table = Table(title="mIoU", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("backend", "mIoU %", "pixel acc %", "drop (points)", "NaN/Inf px (pictures)", "verdict"):
        table.add_column(column, justify="left" if column == "backend" else "right", no_wrap=True)
    for b in report.backends:
        if b.backend == report.against:
            drop = "reference"
        else:
            drop = "-" if b.miou_drop_points is None else f"{b.miou_drop_points:.3f}"
        verdict = {True: "[green]pass[/]", False: "[red]FAIL[/]", None: ""}[b.passed]
        nonfinite = f"[red]{b.nonfinite_pixels} ({b.nonfinite_pictures})[/]" if b.nonfinite_pixels else "0"
        table.add_row(escape(b.backend), _pct(b.miou), _pct(b.pixel_accuracy), drop, nonfinite, verdict)
    out.print(table)
    for pair in report.pairs:
        out.print(
            f"{escape(pair.candidate)} vs {escape(pair.reference)}: prediction mIoU {_pct(pair.miou)} %, pixels "
            f"agreeing {_pct(pair.agreement)} %",
            highlight=False,
        )
    for note in report.notes:
        err.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
