"""`predict --everything` for a SAM artifact: every mask of each picture (runtime/sam_everything.py),
torch-free.

    pictures -> SamPredictor (encoder once per picture, the point grid through the decoder in
    batches) -> SAM's automatic-mask-generator filtering -> a masks JSON and an overlay per picture

Written into --out, per picture: `<stem>_masks.json` (an EverythingMasks record: the parameters,
the picture's size and segment-anything's mask records, best first: segmentation as COCO RLE,
area, bbox XYWH, predicted_iou, stability_score, point_coords, crop_box) and `<stem>_overlay.png`
(the picture with every mask in its colour, largest first, so small masks stay visible). The
generator's parameters are options of `predict` (--points-per-side, ...); their defaults are the
runtime's record (EverythingParams), not repeated here. Everything checkable is checked before
the first file is written (predict/jobs.py's checks). A picture whose decoder outputs hold NaN/Inf
fails the run (exit 1), with its files written all the same.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Dict, List, Optional

import numpy as np

from ..artifact.files import write_bytes_atomic
from ..artifact.outputs import guard_for
from ..drawing import SERIES, png_bytes
from ..errors import BadInput
from ..everything_params import PARAMETER_OPTIONS, EverythingParams
from ..records import Record
from ..runtime.sam_everything import generate
from ..runtime.sam_predictor import SamPredictor
from ..runtime.segmenter import RandomWeightsWarning
from ..tasks import SAM
from .jobs import Job, PredictOptions, PredictRun, check_outputs, collect_jobs, decoded_pictures

EVERYTHING_SUFFIXES = {"masks": "_masks.json", "overlay": "_overlay.png"}


@dataclass
class EverythingMasks(Record):
    """One picture's segment-everything masks (`<stem>_masks.json`): segment-anything's records."""

    KIND = "msla-deploy/sam-everything-masks"

    input: str
    size: List[int]  # [H, W]
    parameters: Dict[str, Any]
    masks: List[Dict[str, Any]] = field(default_factory=list)


@dataclass
class EverythingPicture:
    input: str
    size: List[int]  # [H, W]
    masks_file: str
    overlay: str
    masks: int  # masks kept
    counts: Dict[str, int]  # masks after each step (runtime/sam_everything.py)
    seconds: float
    nonfinite: int = 0  # decoder masks whose predicted IoU or low-res logits hold NaN/Inf


@dataclass
class SamEverythingReport(Record):
    """What `predict --everything --json` prints."""

    KIND = "msla-deploy/predict-sam-everything"

    artifact: str
    runtime: Dict[str, Any]
    weights_source: Optional[str]
    weights_warning: Optional[str]
    parameters: Dict[str, Any]
    out: str
    pictures: List[EverythingPicture] = field(default_factory=list)
    skipped: List[Dict[str, str]] = field(default_factory=list)  # {input, error}


@dataclass
class SamEverythingResult(PredictRun):
    task: ClassVar[str] = SAM

    def _failure(self, bad: list) -> str:
        return (
            f"{len(bad)} of {len(self.report.pictures)} picture(s) got NaN/Inf decoder outputs (first: "
            f"{bad[0].input}); their masks mean nothing (the files were written to {self.report.out}; validate the "
            "artifact)"
        )


def given_parameters(options: PredictOptions) -> Dict[str, Any]:
    """The generator's parameters given as options (name -> value)."""
    return {name: value for name, value in (options.everything_options or {}).items() if value is not None}


def everything_params(options: PredictOptions) -> EverythingParams:
    """The generator's parameters from predict's options (those not given keep the record's default)."""
    given = given_parameters(options)
    try:
        return EverythingParams.from_kwargs(**given)
    except BadInput as exc:  # name the option, not the Python parameter
        problem = exc.problem
        for name, flag in PARAMETER_OPTIONS.items():
            if problem.startswith(name + " "):
                problem = flag + problem[len(name) :]
        raise BadInput(problem, exc.fix) from None


def _check_options(options: PredictOptions, artifact) -> None:
    for flag, value in (
        ("--prompts", options.prompts),
        ("--multimask", options.multimask),
        ("--top-k", options.top_k),
        ("--labels", options.labels),
        ("--label-ids", options.label_ids),
    ):
        if value:
            raise BadInput(f"--everything makes its own prompts (a grid of points): {flag} does not go with it")
    if options.out is None:
        raise BadInput(f"{options.artifact} is a SAM model: predict writes its masks into --out", "pass --out DIR")


def overlay(image: np.ndarray, records: List[Dict[str, Any]], alpha: float) -> np.ndarray:
    """The picture with every mask blended in its colour (largest first) and its point dotted."""
    from .. import rle
    from ..drawing import pil, to_image

    mixed = image.astype(np.float32)
    order = sorted(range(len(records)), key=lambda i: -records[i]["area"])
    for rank, i in enumerate(order):
        mask = rle.decode(records[i]["segmentation"])
        colour = np.asarray(SERIES[rank % len(SERIES)], np.float32)
        mixed[mask] = (1.0 - alpha) * mixed[mask] + alpha * colour
    drawn = to_image(np.clip(np.rint(mixed), 0, 255).astype(np.uint8))
    _, ImageDraw, _ = pil()
    draw = ImageDraw.Draw(drawn)
    r = max(1, round(max(image.shape[:2]) / 300))
    for rank, i in enumerate(order):
        x, y = records[i]["point_coords"][0]
        draw.ellipse([x - r, y - r, x + r, y + r], fill=SERIES[rank % len(SERIES)], outline=(255, 255, 255))
    return np.asarray(drawn, np.uint8)


def predict_everything(
    artifact,
    options: PredictOptions,
    on_picture: Optional[Callable[[int, int, Path], None]] = None,
    warn: Optional[Callable[[str], None]] = None,
) -> SamEverythingResult:
    """SAM --everything: every picture's masks -> a masks JSON and an overlay per picture in --out."""
    _check_options(options, artifact)
    params = everything_params(options)
    out = Path(options.out)
    jobs = collect_jobs(options.inputs, EVERYTHING_SUFFIXES)
    check_outputs(jobs, out, options.overwrite, guard_for(artifact, inputs=options.inputs), EVERYTHING_SUFFIXES)
    with warnings.catch_warnings():  # random weights: the report and its header say so, louder
        warnings.simplefilter("ignore", RandomWeightsWarning)
        predictor = SamPredictor(artifact, options.backend, threads=options.threads)
    pictures: List[EverythingPicture] = []
    skipped: List[Dict[str, str]] = []
    written: List[Path] = []
    with predictor:
        if not predictor.multimask:
            raise BadInput(
                f"--everything: {options.artifact}'s decoder gives one mask per prompt (single head)",
                "export with --head multimask",
            )
        for job, picture in decoded_pictures(jobs, skipped, strict=options.strict, warn=warn, on_picture=on_picture):
            done = _everything_one(predictor, job, picture.image, params, options, out)
            pictures.append(done[0])
            written += done[1]
        described = predictor.describe()
    report = SamEverythingReport(
        artifact=str(options.artifact),
        runtime=described,
        weights_source=predictor.weights_source,
        weights_warning=predictor.weights_warning,
        parameters=asdict(params),
        out=str(out),
        pictures=pictures,
        skipped=skipped,
    )
    return SamEverythingResult(report, written)


def _everything_one(predictor: SamPredictor, job: Job, image: np.ndarray, params, options, out: Path):
    result = generate(predictor, image, params)
    files = job.outputs(out, EVERYTHING_SUFFIXES)
    size = [int(image.shape[0]), int(image.shape[1])]
    record = EverythingMasks(input=str(job.source), size=size, parameters=asdict(params), masks=result.records)
    record.write(files["masks"])
    write_bytes_atomic(files["overlay"], png_bytes(overlay(image, result.records, options.overlay_alpha)))
    picture = EverythingPicture(
        input=str(job.source),
        size=size,
        masks_file=str(files["masks"]),
        overlay=str(files["overlay"]),
        masks=len(result.records),
        counts=dict(result.counts),
        seconds=float(result.timings_s.get("total", 0.0)),
        nonfinite=int(result.counts.get("nonfinite", 0)),
    )
    return picture, [files["masks"], files["overlay"]]
