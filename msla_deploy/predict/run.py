"""`predict`: pictures -> what the artifact's task predicts for each, torch-free.

    pictures (files, folders) -> Segmenter (upstream pre/postprocessing) -> three PNGs each
    pictures (files, folders) -> Classifier (upstream's ImageNet transform) -> top-k classes each
    pictures + --prompts -> SamPredictor (SAM's transforms) -> a mask PNG per prompt, COCO RLE JSON

`run_predict` resolves the artifact and hands the run to its task's predictor (`PREDICTORS`,
keyed by task name): segmentation here, classification in predict/classify.py, SAM in predict/sam.py. The pictures,
their output names and the checks before writing are shared (predict/jobs.py).

Segmentation:

Every problem that can be known before running is raised before the first file is written:
unknown files, output names two pictures would share, an output folder onto the artifact or an
input (artifact/outputs.py's guard: never into the artifact, never onto or inside an input, with
or without `overwrite`), existing outputs without `overwrite`, `label_ids` for a model that is
not Cityscapes, a graph too large for the memory. Each output is written atomically (temp file,
then rename). An unreadable picture (or one with no fixed white level: 32-bit integer or float)
is reported and skipped, or with `strict` stops the run (the pictures before it keep their
complete outputs).

The report says where the weights came from (the random-weights warning when they are random)
and, per picture, how many pixels got their label from non-finite logits: any is a failed run
(`PredictResult.passed`), with the files written all the same.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Dict, List, Optional

import numpy as np

from ..artifact.files import write_bytes_atomic
from ..artifact.outputs import guard_for
from ..artifact.resolve import Artifact, resolve
from ..drawing import png_bytes
from ..errors import BadInput
from ..records import Record
from ..runtime.segmenter import RandomWeightsWarning, Segmentation, Segmenter
from ..tasks import CLASSIFICATION, OVERLAY_ALPHA, SAM, SEGMENTATION
from .classify import classify
from .jobs import (  # noqa: F401 (PICTURE_SUFFIXES, Job: re-exported)
    PICTURE_SUFFIXES,
    Job,
    PredictOptions,
    PredictRun,
    check_outputs,
    collect_jobs,
    decoded_pictures,
)
from .sam import predict_sam

# per picture: <stem> + suffix
OUTPUT_SUFFIXES = {"labels": "_labels.png", "color": "_color.png", "overlay": "_overlay.png"}


@dataclass
class PredictedPicture:
    input: str
    size: List[int]  # [H, W]
    files: Dict[str, str]  # labels | color | overlay -> path
    exact: bool  # labels upsampled from the logits (False: a labels-only artifact, nearest resize)
    nonfinite: Optional[int]  # pixels labelled from NaN/Inf logits (None: a labels head cannot tell)
    areas: Dict[str, float]  # class -> fraction of the picture


@dataclass
class PredictReport(Record):
    """What `predict --json` prints: where it ran, the weights' source, every picture's files."""

    KIND = "msla-deploy/predict"

    artifact: str
    runtime: Dict[str, Any]  # the session's description
    weights_source: Optional[str]
    weights_warning: Optional[str]
    out: str
    label_values: str  # "train ids" | "cityscapes label ids"
    pictures: List[PredictedPicture] = field(default_factory=list)
    skipped: List[Dict[str, str]] = field(default_factory=list)  # {input, error}
    nonfinite_pixels: int = 0


@dataclass
class PredictResult(PredictRun):
    task: ClassVar[str] = SEGMENTATION

    def _failure(self, bad: list) -> str:
        report = self.report
        return (
            f"{len(bad)} of {len(report.pictures)} picture(s) got labels from non-finite (NaN/Inf) logits, "
            f"{report.nonfinite_pixels} pixel(s) in all (first: {bad[0].input}); their labels mean nothing "
            f"(the files were written to {report.out}; validate the artifact)"
        )


def label_picture(result: Segmentation, label_ids: bool) -> np.ndarray:
    labels = result.label_ids() if label_ids else result.labels
    if labels.dtype != np.uint8:  # more than 256 classes: a 16-bit grey PNG
        return labels.astype(np.uint16)
    return labels


def run_predict(
    options: PredictOptions,
    on_picture: Optional[Callable[[int, int, Path], None]] = None,
    warn: Optional[Callable[[str], None]] = None,
):
    """Predict every picture with the artifact's task's predictor (PREDICTORS); `on_picture(done,
    total, source)` after each, `warn(message)` for skips. A PredictResult for segmentation, a
    classify.ClassifyResult for classification."""
    if options.alpha is not None and not 0.0 <= options.alpha <= 1.0:
        raise BadInput(f"--alpha {options.alpha} is outside 0..1", f"use e.g. {OVERLAY_ALPHA}")
    artifact = resolve(Path(options.artifact))
    if artifact.task.name != SAM:
        everything = options.everything or any(v is not None for v in (options.everything_options or {}).values())
        for flag, value in (
            ("--prompts", options.prompts),
            ("--multimask", options.multimask),
            ("--everything", everything),
        ):
            if value:
                raise BadInput(
                    f"{flag} is for SAM models; {options.artifact} is a model for {artifact.task.title}",
                    f"leave {flag} out",
                )
    return PREDICTORS[artifact.task.name](artifact, options, on_picture, warn)


def _only_for_classification(options: PredictOptions, artifact: Artifact) -> None:
    for flag, value in (("--top-k", options.top_k), ("--labels", options.labels)):
        if value is not None:
            raise BadInput(
                f"{flag} is for classification models; {options.artifact} is a model for {artifact.task.title}",
                f"leave {flag} out",
            )


def segment(
    artifact: Artifact,
    options: PredictOptions,
    on_picture: Optional[Callable[[int, int, Path], None]] = None,
    warn: Optional[Callable[[str], None]] = None,
) -> PredictResult:
    """Segmentation: three PNGs per picture into --out."""
    _only_for_classification(options, artifact)
    if options.out is None:
        raise BadInput(
            f"{options.artifact} is a segmentation model: predict writes its label pictures into --out",
            "pass --out DIR",
        )
    jobs = collect_jobs(options.inputs, OUTPUT_SUFFIXES)
    out = Path(options.out)
    check_outputs(jobs, out, options.overwrite, guard_for(artifact, inputs=options.inputs), OUTPUT_SUFFIXES)
    with warnings.catch_warnings():  # random weights: the report and its header say so, louder
        warnings.simplefilter("ignore", RandomWeightsWarning)
        segmenter = Segmenter(artifact, options.backend, threads=options.threads)
    if options.label_ids and segmenter.dataset != "cityscapes":
        raise BadInput(
            f"--label-ids: {options.artifact} does not predict Cityscapes classes "
            f"({segmenter.dataset or 'unknown label set'})",
            "leave --label-ids out: the label PNG then holds train ids",
        )
    pictures, skipped, written = [], [], []
    with segmenter:
        for job, picture in decoded_pictures(jobs, skipped, strict=options.strict, warn=warn, on_picture=on_picture):
            result = segmenter(picture)
            files = job.outputs(out, OUTPUT_SUFFIXES)
            content = {
                "labels": png_bytes(label_picture(result, options.label_ids)),
                "color": png_bytes(result.colorize()),
                "overlay": png_bytes(result.overlay(options.overlay_alpha)),
            }
            for kind, path in files.items():
                write_bytes_atomic(path, content[kind])
                written.append(path)
            pictures.append(
                PredictedPicture(
                    str(job.source),
                    [int(result.labels.shape[0]), int(result.labels.shape[1])],
                    {kind: str(path) for kind, path in files.items()},
                    result.exact,
                    result.nonfinite,
                    result.areas(),
                )
            )
        described = segmenter.describe()
    report = PredictReport(
        artifact=str(options.artifact),
        runtime=described,
        weights_source=segmenter.weights_source,
        weights_warning=segmenter.weights_warning,
        out=str(out),
        label_values="cityscapes label ids" if options.label_ids else "train ids",
        pictures=pictures,
        skipped=skipped,
        nonfinite_pixels=sum(p.nonfinite or 0 for p in pictures),
    )
    return PredictResult(report, written)


#: task name -> its predictor(artifact, options, on_picture, warn)
PREDICTORS = {SEGMENTATION: segment, CLASSIFICATION: classify, SAM: predict_sam}
