"""The `predict` command: parse, call msla_deploy.predict.run, render (by the artifact's task:
`RENDERERS`). Registered in cli.py.

Exit codes: 0 done, 1 some labels (classes) came from non-finite (NaN/Inf) logits (the files are
written and the answers reported all the same), 2 bad input (including an existing output without
--overwrite, an --out onto the artifact or an input, an unreadable picture with --strict, a
--top-k the artifact cannot answer), 3 missing runtime.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape
from rich.table import Table

from ..cli_options import artifact_argument, backend_option, json_option, overwrite_option, threads_option
from ..console import counting_progress, err, error_line, key_values, out, print_json, weights_cell
from ..tasks import CLASSIFICATION, OVERLAY_ALPHA, SAM, SEGMENTATION, TOPK


def _everything_option(name: str, text: str):
    """A --everything parameter: its flag (predict/sam_everything.py) and its default (the runtime's record)."""
    from ..everything_params import PARAMETER_OPTIONS, EverythingParams

    default = getattr(EverythingParams(), name)
    return typer.Option(
        None, PARAMETER_OPTIONS[name], help=f"SAM --everything: {text} [default: {default}].", show_default=False
    )


def predict_command(
    artifact: Path = artifact_argument(),
    pictures: List[Path] = typer.Argument(..., help="Picture files and/or folders (scanned recursively)."),
    out_dir: Optional[Path] = typer.Option(
        None,
        "--out",
        "-o",
        help="Folder for <name>_labels.png, <name>_color.png, <name>_overlay.png (segmentation: required); "
        "a classifier writes <name>_classes.png (the picture beside its top-k chart) there.",
        show_default=False,
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
    alpha: Optional[float] = typer.Option(
        None, "--alpha", help=f"Overlay: weight of the colours (0..1; default {OVERLAY_ALPHA}). Not for classifiers."
    ),
    threads: Optional[int] = threads_option(),
    top_k: Optional[int] = typer.Option(
        None,
        "--top-k",
        "-k",
        help=f"Classification: classes per picture [default: {TOPK}; a topk head gives at most its k].",
        show_default=False,
    ),
    labels: Optional[Path] = typer.Option(
        None,
        "--labels",
        help="Classification: class names, one a line in class-index order "
        "[default: ImageNet-1k for the zoo's 1000-class models, else 'class <i>'].",
        show_default=False,
    ),
    prompts: Optional[Path] = typer.Option(
        None,
        "--prompts",
        help="SAM: a JSON of each picture's boxes and/or points (docs/sam.md, predict); writes <name>_mask<i>.png "
        "per prompt, <name>_overlay.png and coco_results.json (COCO RLE) into --out.",
        show_default=False,
    ),
    multimask: bool = typer.Option(
        False, "--multimask", help="SAM: three masks per prompt, the one with the highest predicted IoU kept."
    ),
    everything: bool = typer.Option(
        False,
        "--everything",
        help="SAM: segment everything (SAM's automatic mask generator: a grid of points, its filters); writes "
        "<name>_masks.json (COCO RLE) and <name>_overlay.png into --out. Not with --prompts.",
    ),
    points_per_side: Optional[int] = _everything_option("points_per_side", "points along each side of the grid"),
    points_per_batch: Optional[int] = _everything_option(
        "points_per_batch", "points per decoder call (at most the decoder profile's prompts)"
    ),
    pred_iou_thresh: Optional[float] = _everything_option("pred_iou_thresh", "keep masks of predicted IoU above"),
    stability_score_thresh: Optional[float] = _everything_option(
        "stability_score_thresh", "keep masks of stability score at least"
    ),
    box_nms_thresh: Optional[float] = _everything_option("box_nms_thresh", "box IoU above which NMS drops a mask"),
    min_mask_region_area: Optional[int] = _everything_option(
        "min_mask_region_area", "holes and islands smaller than this are removed (0: off)"
    ),
    json_out: bool = json_option("the files written and per-picture class areas (classification: the top-k)"),
) -> None:
    """Predict pictures with an artifact. Segmentation: a label PNG, a colour PNG and an overlay PNG
    per picture. Classification: the top-k classes of each picture, with names. SAM: a mask PNG per
    prompt of --prompts, an overlay per picture and one COCO RLE JSON."""
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
        top_k=top_k,
        labels=labels,
        prompts=prompts,
        multimask=multimask,
        everything=everything,
        everything_options={
            "points_per_side": points_per_side,
            "points_per_batch": points_per_batch,
            "pred_iou_thresh": pred_iou_thresh,
            "stability_score_thresh": stability_score_thresh,
            "box_nms_thresh": box_nms_thresh,
            "min_mask_region_area": min_mask_region_area,
        },
    )
    warn = lambda message: err.print(f"[yellow]warning:[/] {escape(message)}", highlight=False)  # noqa: E731
    with counting_progress("Predicting", minimum=2) as advance:
        on_picture = (
            None if advance is None else lambda done, total, source: advance(done, total, f"Predicting {source.name}")
        )
        result = run_predict(options, on_picture=on_picture, warn=warn)
    if json_out:
        print_json(result.report.to_dict())
    else:
        _render(result)
    failure = result.failure()
    if failure:
        error_line(failure)
        raise typer.Exit(1)


def _render_segmentation(result) -> None:
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


def _render_classification(result) -> None:
    report = result.report
    rt = report.runtime
    weights = weights_cell(report.weights_source, report.weights_warning)
    rows = [
        ("artifact", escape(report.artifact)),
        ("weights", weights),
        ("ran on", f"{rt.get('runtime', '')} {rt.get('version', '')} ({rt.get('ran_on', '')}), head {report.head}"),
        ("class names", escape(report.class_names)),
    ]
    if report.out is not None:
        rows.append(("written", f"{len(result.written)} chart(s) in {escape(report.out)}"))
    out.print(key_values(rows))
    for p in report.pictures:
        title = f"{escape(p.input)} ({p.size[1]}x{p.size[0]})"
        if p.nonfinite:
            title += f" [bold red]{p.nonfinite} NaN/Inf score(s): the ranking means nothing[/]"
        table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
        table.add_column("rank", justify="right")
        table.add_column("class", justify="right")
        table.add_column("name")
        table.add_column("probability", justify="right")
        for c in p.top:
            table.add_row(str(c.rank), str(c.index), escape(c.name), f"{100 * c.probability:.2f}%")
        out.print(table)
    if report.weights_warning:
        out.print(f"weights: {weights}")
    if report.skipped:
        err.print(
            f"[yellow]{len(report.skipped)} picture(s) skipped[/] (unreadable; --strict makes that an error)",
            highlight=False,
        )


def _render_sam(result) -> None:
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
                    f"{rt.get('runtime', '')} {rt.get('version', '')} ({rt.get('ran_on', '')}), encoder "
                    f"{rt.get('image_size')}, {'best of 3 masks' if report.multimask else 'single mask'} per prompt",
                ),
                ("prompts", escape(report.prompts)),
                (
                    "written",
                    f"{len(result.written)} file(s) in {escape(report.out)} (COCO RLE: {escape(report.results)})",
                ),
            ]
        )
    )
    table = Table(title=None, show_edge=False, pad_edge=False, caption=f"weights: {weights}", caption_justify="left")
    for column in ("picture", "size", "prompts", "scores (predicted IoU)", "mask area"):
        table.add_column(column, no_wrap=column == "picture", justify="left" if column == "picture" else "right")
    for p in report.pictures:
        area = p.size[0] * p.size[1] or 1
        scores = ", ".join(f"{m.score:.3f}" for m in p.masks[:4]) + (" ..." if len(p.masks) > 4 else "")
        areas = ", ".join(f"{100 * m.area / area:.0f}%" for m in p.masks[:4]) + (" ..." if len(p.masks) > 4 else "")
        if p.nonfinite:
            scores = f"[bold red]{p.nonfinite} NaN/Inf[/] " + scores
        table.add_row(escape(p.input), f"{p.size[1]}x{p.size[0]}", str(len(p.masks)), scores, areas)
    out.print(table)
    if report.skipped:
        err.print(
            f"[yellow]{len(report.skipped)} picture(s) skipped[/] (unreadable; --strict makes that an error)",
            highlight=False,
        )


def _render_sam_everything(result) -> None:
    report = result.report
    rt = report.runtime
    weights = weights_cell(report.weights_source, report.weights_warning)
    p = report.parameters
    out.print(
        key_values(
            [
                ("artifact", escape(report.artifact)),
                ("weights", weights),
                ("ran on", f"{rt.get('runtime', '')} {rt.get('version', '')} ({rt.get('ran_on', '')})"),
                (
                    "grid",
                    f"{p['points_per_side']}x{p['points_per_side']} points, {p['points_per_batch']} per batch; "
                    f"predicted IoU > {p['pred_iou_thresh']}, stability >= {p['stability_score_thresh']}, "
                    f"NMS {p['box_nms_thresh']}",
                ),
                ("written", f"{len(result.written)} file(s) in {escape(report.out)}"),
            ]
        )
    )
    table = Table(title=None, show_edge=False, pad_edge=False, caption=f"weights: {weights}", caption_justify="left")
    for column in ("picture", "size", "masks", "IoU kept", "stable", "after NMS", "time"):
        table.add_column(column, no_wrap=column == "picture", justify="left" if column == "picture" else "right")
    for pic in report.pictures:
        c = pic.counts
        masks = f"[bold red]{pic.masks} ({pic.nonfinite} NaN/Inf)[/]" if pic.nonfinite else str(pic.masks)
        table.add_row(
            escape(pic.input),
            f"{pic.size[1]}x{pic.size[0]}",
            masks,
            f"{c.get('pred_iou', 0)}/{c.get('masks', 0)}",
            str(c.get("stability", 0)),
            str(c.get("nms", 0)),
            f"{pic.seconds:.2f} s",
        )
    out.print(table)
    if report.skipped:
        err.print(
            f"[yellow]{len(report.skipped)} picture(s) skipped[/] (unreadable; --strict makes that an error)",
            highlight=False,
        )


def _render(result) -> None:
    from ..predict.sam_everything import SamEverythingReport

    if isinstance(result.report, SamEverythingReport):
        _render_sam_everything(result)
    else:
        RENDERERS[result.task](result)


#: task name -> how its result is printed
RENDERERS = {SEGMENTATION: _render_segmentation, CLASSIFICATION: _render_classification, SAM: _render_sam}
