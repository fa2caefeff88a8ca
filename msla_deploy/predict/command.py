"""The `predict` command: parse, call msla_deploy.predict.run, render. Registered in cli.py.

Exit codes: 0 written, 1 some labels came from non-finite (NaN/Inf) logits (the files are
written all the same), 2 bad input (including an existing output without --overwrite, an --out
onto the artifact or an input, or an unreadable picture with --strict), 3 missing runtime.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape
from rich.table import Table

from ..cli_options import artifact_argument, backend_option, json_option, overwrite_option, threads_option
from ..console import counting_progress, err, error_line, key_values, out, print_json, weights_cell


def predict_command(
    artifact: Path = artifact_argument(),
    pictures: List[Path] = typer.Argument(..., help="Picture files and/or folders (scanned recursively)."),
    out_dir: Path = typer.Option(
        ..., "--out", "-o", help="Folder for <name>_labels.png, <name>_color.png, <name>_overlay.png."
    ),
    backend: str = backend_option(),
    label_ids: bool = typer.Option(
        False,
        "--label-ids",
        help="Cityscapes: the _labels.png holds label ids "
        "(the official evaluator's *_gtFine_labelIds values) instead of train ids.",
    ),
    strict: bool = typer.Option(
        False, "--strict", help="Stop at the first unreadable picture (exit 2) instead of skipping it."
    ),
    overwrite: bool = overwrite_option("Replace outputs that already exist."),
    alpha: float = typer.Option(0.5, "--alpha", help="Overlay: weight of the class colours (0..1)."),
    threads: Optional[int] = threads_option(),
    json_out: bool = json_option("the files written and per-picture class areas"),
) -> None:
    """Segment pictures with an artifact: a label PNG, a colour PNG and an overlay PNG per picture."""
    from .run import PredictOptions, run_predict

    options = PredictOptions(
        artifact=artifact,
        inputs=pictures,
        out=out_dir,
        backend=backend,
        label_ids=label_ids,
        strict=strict,
        overwrite=overwrite,
        alpha=alpha,
        threads=threads,
    )
    warn = lambda message: err.print(f"[yellow]warning:[/] {escape(message)}", highlight=False)  # noqa: E731
    with counting_progress("Predicting", minimum=2) as advance:
        on_picture = (
            None if advance is None else lambda done, total, source: advance(done, total, f"Predicting {source.name}")
        )
        result = run_predict(options, on_picture=on_picture, warn=warn)
    report = result.report
    if json_out:
        print_json(report.to_dict())
    else:
        _render(result)
    if not result.passed:
        bad = result.nonfinite_pictures
        error_line(
            f"{len(bad)} of {len(report.pictures)} picture(s) got labels from non-finite (NaN/Inf) logits, "
            f"{report.nonfinite_pixels} pixel(s) in all (first: {bad[0].input}); their labels mean nothing "
            f"(the files were written to {report.out}; validate the artifact)"
        )
        raise typer.Exit(1)


def _render(result) -> None:
    report = result.report
    rt = report.runtime
    weights = weights_cell(report.weights_source, report.weights_warning)
    out.print(
        key_values(
            [
                ("artifact", escape(report.artifact)),
                ("weights", weights),
                (
                    "ran on",
                    f"{rt.get('runtime', '')} {rt.get('version', '')} ({rt.get('ran_on', '')}), labels from "
                    f"{rt.get('labels_from')}",
                ),
                ("label PNG", report.label_values),
                ("written", f"{len(result.written)} file(s) in {escape(report.out)}"),
            ]
        )
    )
    table = Table(title=None, show_edge=False, pad_edge=False, caption=f"weights: {weights}", caption_justify="left")
    for column in ("picture", "size", "NaN/Inf px", "largest classes"):
        table.add_column(
            column, no_wrap=column != "largest classes", justify="right" if column == "NaN/Inf px" else "left"
        )
    for p in report.pictures:
        top = ", ".join(f"{name} {100 * share:.0f}%" for name, share in list(p.areas.items())[:3])
        nonfinite = "-" if p.nonfinite is None else f"[bold red]{p.nonfinite}[/]" if p.nonfinite else "0"
        table.add_row(escape(p.input), "x".join(map(str, p.size)), nonfinite, escape(top))
    out.print(table)
    if report.skipped:
        err.print(
            f"[yellow]{len(report.skipped)} picture(s) skipped[/] (unreadable; --strict makes that an error)",
            highlight=False,
        )
