"""How evaluate prints its reports on the console: a short header and one Rich table per protocol
(the files say the rest: report.md, report.json)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich import box
from rich.markup import escape
from rich.table import Table

from ..console import err, key_values, out, weights_cell

if TYPE_CHECKING:
    from .classify_report import ClassifyReport
    from .report import EvaluateReport
    from .sam_report import SamReport

VERDICT = {True: "[green]pass[/]", False: "[red]FAIL[/]", None: ""}


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def render_segmentation(report: "EvaluateReport") -> None:
    """The header, the mIoU table and the pairs, as evaluate prints a segmentation report."""
    art, data = report.artifact, report.dataset
    skipped = f", {len(report.skipped)} skipped" if report.skipped else ""
    speed = f"{report.images_per_second:.2f} images/s ({report.seconds:.1f} s)" if report.images_per_second else "-"
    out.print(
        key_values(
            [
                ("artifact", _artifact_cell(art)),
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
        verdict = VERDICT[b.passed]
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


def _artifact_cell(art) -> str:
    return escape(
        f"{art.path} ({art.model or 'model unknown'}, {art.precision}, {art.resolution[0]}x{art.resolution[1]})"
    )


def render_classification(report: "ClassifyReport") -> None:
    """The header, the top-1 / top-5 table and the pairs, as evaluate prints a classifier's report."""
    art, data, proto = report.artifact, report.dataset, report.protocol
    skipped = f", {len(report.skipped)} skipped" if report.skipped else ""
    speed = f"{report.images_per_second:.2f} images/s ({report.seconds:.1f} s)" if report.images_per_second else "-"
    h, w = proto.input_resolution
    out.print(
        key_values(
            [
                ("artifact", _artifact_cell(art)),
                ("weights", weights_cell(art.weights_source, art.weights_warning)),
                (
                    "dataset",
                    escape(f"{data.kind} {data.root}: {data.evaluated} picture(s), {data.classes} class(es){skipped}"),
                ),
                (
                    "protocol",
                    escape(
                        f"short side {proto.resize_short_side} bicubic, centre crop {h}x{w} "
                        f"(crop ratio {proto.crop_ratio:g}), ImageNet mean/std"
                    ),
                ),
                ("speed", speed),
                ("report", escape(report.files.get("markdown", ""))),
            ]
        )
    )
    table = Table(title="accuracy", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("backend", "output", "top-1 %", "top-5 %", "drop (points)", "NaN/Inf pictures", "verdict"):
        table.add_column(column, justify="left" if column in ("backend", "output") else "right", no_wrap=True)
    for b in report.backends:
        if b.backend == report.against:
            drop = "reference"
        else:
            drop = "-" if b.top1_drop_points is None else f"{b.top1_drop_points:.3f}"
        nonfinite = f"[red]{b.nonfinite_pictures}[/]" if b.nonfinite_pictures else "0"
        table.add_row(
            escape(b.backend), escape(b.output), _pct(b.top1), _pct(b.top5), drop, nonfinite, VERDICT[b.passed]
        )
    out.print(table)
    for pair in report.pairs:
        out.print(
            f"{escape(pair.candidate)} vs {escape(pair.reference)}: top-1 agreement {_pct(pair.top1_agreement)} %, "
            f"top-5 overlap {_pct(pair.top5_overlap)} %",
            highlight=False,
        )
    for note in report.notes:
        err.print(f"[yellow]note:[/] {escape(note)}", highlight=False)


def render_sam(report: "SamReport") -> None:
    """The header and the mIoU table (all instances and by area), as evaluate prints a SAM report."""
    from .sam_report import drop_text, pct

    art, data, proto = report.artifact, report.dataset, report.protocol
    skipped = f", {len(report.skipped)} bad picture(s) skipped" if report.skipped else ""
    out.print(
        key_values(
            [
                (
                    "artifact",
                    escape(f"{art.path} ({art.model or 'model unknown'}, {art.precision}, {art.encoder_side})"),
                ),
                ("weights", weights_cell(art.weights_source, art.weights_warning)),
                (
                    "dataset",
                    escape(
                        f"{data.annotations_file}: {data.instances} instance(s) in {data.pictures} picture(s), "
                        f"{data.skipped_small} with area < 1 skipped{skipped}"
                    ),
                ),
                ("protocol", escape(f"{proto.prompt} prompts, multimask, the mask of the highest predicted IoU")),
                ("time", f"{report.seconds:.1f} s"),
                ("report", escape(report.files.get("markdown", ""))),
            ]
        )
    )
    table = Table(title="mIoU % (instances)", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("backend", "all", "small", "medium", "large", "drop (points)", "NaN/Inf", "verdict"):
        table.add_column(column, justify="left" if column == "backend" else "right", no_wrap=True)
    for b in report.backends:
        cells = [f"{pct(b.miou[s])} ({b.instances[s]})" for s in ("all", "small", "medium", "large")]
        nonfinite = f"[red]{b.nonfinite_instances}[/]" if b.nonfinite_instances else "0"
        table.add_row(escape(b.backend), *cells, drop_text(report, b), nonfinite, VERDICT[b.passed])
    out.print(table)
    for note in report.notes:
        err.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
