"""The `evaluate` command: parse, hand the artifact to its task's protocol (protocols.py: mIoU for
segmentation, top-1 / top-5 for classification, mIoU of prompted masks for SAM by upstream's
protocol on a COCO-format dataset), render. Registered in cli.py.

Exit codes: 0 evaluated (and within the gates), 1 a backend gave a NaN/Inf output or missed a gate
(--max-miou-drop; --min-top1, --max-top1-drop; --min-miou), 2 bad input (a bad dataset file is
named, a flag of the other task's protocol), 3 missing runtime.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ..choices import IGNORE_INDEX, Dataset, SamPrompt
from ..cli_options import (
    AUTO_BACKEND,
    artifact_argument,
    backend_option,
    json_option,
    junit_option,
    report_dir_option,
    threads_option,
)
from ..console import counting_progress, error_line, print_json


def evaluate_command(
    artifact: Path = artifact_argument(),
    data: Path = typer.Option(
        ...,
        "--data",
        help="Segmentation: the dataset root or its split folder (Cityscapes, ADE20K, or images/ + labels/). "
        "Classification: a folder of class folders (ImageNet layout) or a list file of 'PATH INDEX' lines. "
        "SAM: a COCO root (annotations/instances_*.json + images/), or its instances json.",
    ),
    dataset: Dataset = typer.Option(
        Dataset.AUTO,
        "--dataset",
        help="Segmentation: the dataset layout (auto: recognised from the folder; folder: images/ + labels/).",
    ),
    backend: Optional[List[str]] = backend_option(
        None,
        multiple=True,
        help=f"Backend to evaluate (repeatable, one pass over the data; {AUTO_BACKEND}) [default: auto].",
    ),
    against: Optional[str] = typer.Option(
        None,
        "--against",
        help="Reference backend for the mIoU or top-1 drop [default: torch if evaluated, else the first --backend].",
    ),
    prompt: Optional[SamPrompt] = typer.Option(
        None,
        "--prompt",
        help="SAM: prompt each instance with its ground-truth box, or upstream's first click (point) [default: box].",
    ),
    min_miou: Optional[float] = typer.Option(
        None, "--min-miou", help="SAM: exit 1 when a backend's mIoU (all instances) is below this percentage."
    ),
    limit: Optional[int] = typer.Option(None, "--limit", help="Evaluate the first N pictures only."),
    max_miou_drop: Optional[float] = typer.Option(
        None,
        "--max-miou-drop",
        help="Segmentation, SAM: exit 1 when a backend loses more than this many points of mIoU against --against.",
    ),
    min_top1: Optional[float] = typer.Option(
        None, "--min-top1", help="Classification: exit 1 when a backend's top-1 accuracy is below this percentage."
    ),
    max_top1_drop: Optional[float] = typer.Option(
        None,
        "--max-top1-drop",
        help="Classification: exit 1 when a backend loses more than this many points of top-1 against --against.",
    ),
    crop_ratio: Optional[float] = typer.Option(
        None,
        "--crop-ratio",
        help="Classification: the centre crop's share of the resized short side (upstream's protocol) [default: 0.95].",
    ),
    ignore_index: Optional[int] = typer.Option(
        None,
        "--ignore-index",
        help=f"Segmentation, --dataset folder: the label value that counts for no class [default: {IGNORE_INDEX}].",
    ),
    report_dir: Optional[Path] = report_dir_option(
        "evaluation/ in the export directory", "report.json, report.md, junit.xml and pictures"
    ),
    junit: Optional[Path] = junit_option("junit.xml"),
    save_predictions: Optional[Path] = typer.Option(
        None,
        "--save-predictions",
        help="Segmentation: write each backend's labels (train ids, PNG) under DIR/<backend>/. "
        "SAM: DIR/<backend>.json, each instance's IoU and mask (COCO RLE).",
    ),
    skip_bad: bool = typer.Option(
        False, "--skip-bad", help="Skip bad pictures or labels (counted and listed in the report) instead of stopping."
    ),
    threads: Optional[int] = threads_option(),
    json_out: bool = json_option("the report"),
) -> None:
    """mIoU (segmentation), top-1 / top-5 accuracy (classification) or prompted-mask mIoU (SAM) of the
    deployed model on a labelled dataset, upstream's protocol, several backends in one pass."""
    from ..artifact.resolve import resolve
    from .passes import check_common
    from .protocols import Common, check_flags, protocol_for

    backends = list(backend or ["auto"])
    check_common(limit, backends)  # before the artifact is read, as every bad flag
    protocol = protocol_for(resolve(artifact).task.name)  # the one place evaluate asks the task
    given = {
        "--dataset": None if dataset == Dataset.AUTO else dataset,
        "--max-miou-drop": max_miou_drop,
        "--ignore-index": ignore_index,
        "--save-predictions": save_predictions,
        "--min-top1": min_top1,
        "--max-top1-drop": max_top1_drop,
        "--crop-ratio": crop_ratio,
        "--prompt": prompt,
        "--min-miou": min_miou,
    }
    check_flags(protocol, artifact, given)
    common = Common(artifact, data, tuple(backends), against, limit, skip_bad, threads, report_dir, junit)
    options = protocol.options(common, given)  # bad flags exit 2 before the progress display starts
    with counting_progress("evaluating", "images/s") as on_progress:
        report = protocol.evaluate(options, on_progress)
    if json_out:
        print_json(report.to_dict())
    else:
        protocol.render(report)
    if not report.passed:
        error_line("; ".join(report.failures()) + f" (details in {report.files['markdown']})")
        raise typer.Exit(1)
