"""`predict` for a SAM artifact: the masks of each picture's prompts, torch-free.

    pictures + --prompts prompts.json -> SamPredictor (encoder once per picture, decoder once per
    picture for all its prompts) -> a mask PNG per prompt, an overlay per picture, one COCO RLE JSON

The prompts file (docs/sam.md, "predict"), COCO-style, coordinates in the picture's pixels:

    {"images": [{"file_name": "street.png", "id": 7,
                 "boxes": [[x0, y0, x1, y1], ...],
                 "points": [[[x, y], ...], ...], "labels": [[1, 0, ...], ...]}]}

Each picture has boxes, points (with labels), or both: prompt i is box i with the points of row i
(the rows of points all of one length). `file_name` names the picture whose path ends with it
("street.png", or "sub/street.png" where two pictures share a name); `id` is the COCO image id
written with its masks (default: its place in the file, from 1). Every picture needs an entry and
every entry a picture.

Written into --out, per picture: `<stem>_mask<i>.png` (prompt i's mask: 255 inside, 0 outside,
at the picture's size) and `<stem>_overlay.png` (the picture with every mask in its colour, the
boxes and points drawn); and once, `coco_results.json`: a COCO results list, one entry per mask
(image_id, file_name, prompt, category_id 1 (class-agnostic), segmentation {size, counts} as
compressed RLE, score (the predicted IoU), bbox [x, y, w, h], area).

With --multimask each prompt gets SAM's three masks and the one with the highest predicted IoU is
kept (SAM's advice for ambiguous single clicks); without it, the single-mask output. Everything
checkable is checked before the first file is written: the prompts file, its match with the
pictures, every prompt against its picture's size and the decoder's profile, and the outputs
(predict/jobs.py's checks). A mask whose logits or score are NaN/Inf fails the run (exit 1), with
the files written all the same.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Dict, List, Optional, Tuple

import numpy as np

from .. import rle
from ..artifact.files import write_bytes_atomic
from ..artifact.outputs import guard_for
from ..drawing import SERIES, png_bytes
from ..errors import BadInput
from ..records import Record
from ..runtime.sam_predictor import Prompts, SamPredictor, check_prompts
from ..runtime.segmenter import RandomWeightsWarning
from ..tasks import SAM
from .jobs import Job, PredictOptions, PredictRun, check_outputs, collect_jobs, decoded_pictures

OVERLAY_SUFFIX = {"overlay": "_overlay.png"}
#: the COCO results file, one per run, in --out
RESULTS_NAME = "coco_results.json"
#: COCO's category of every mask: SAM's masks have no class
CATEGORY_ID = 1
PROMPTS_FIX = 'write {"images": [{"file_name": ..., "boxes": [[x0, y0, x1, y1]]}]} (docs/sam.md, "predict")'
#: overlay colours: foreground and background points
FOREGROUND, BACKGROUND = (44, 160, 44), (214, 39, 40)


@dataclass
class ImagePrompts:
    """One entry of the prompts file."""

    file_name: str
    image_id: int
    boxes: Optional[list] = None
    points: Optional[list] = None
    labels: Optional[list] = None

    def prompts(self) -> Prompts:
        return Prompts(self.points, self.labels, self.boxes, None)


def read_prompts(path: Path) -> List[ImagePrompts]:
    """The prompts file's entries, or BadInput naming what is wrong."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise BadInput(f"--prompts {path}: cannot read it ({exc.strerror or exc})", PROMPTS_FIX) from None
    except ValueError as exc:
        raise BadInput(f"--prompts {path}: not JSON ({exc})", PROMPTS_FIX) from None
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list) or not images:
        raise BadInput(f'--prompts {path}: no "images" list', PROMPTS_FIX)
    entries, seen = [], set()
    for index, item in enumerate(images):
        where = f"--prompts {path}: images[{index}]"
        if not isinstance(item, dict) or not isinstance(item.get("file_name"), str):
            raise BadInput(f"{where} has no file_name", PROMPTS_FIX)
        unknown = sorted(set(item) - {"file_name", "id", "image_id", "boxes", "points", "labels"})
        if unknown:
            raise BadInput(f"{where} has an unknown key {unknown[0]!r}", PROMPTS_FIX)
        image_id = item.get("id", item.get("image_id", index + 1))
        if isinstance(image_id, bool) or not isinstance(image_id, int):
            raise BadInput(f"{where}: id {image_id!r} is not a whole number", PROMPTS_FIX)
        if item["file_name"] in seen:
            raise BadInput(f"{where}: {item['file_name']} is listed twice", "give each picture one entry")
        seen.add(item["file_name"])
        entry = ImagePrompts(item["file_name"], image_id, item.get("boxes"), item.get("points"), item.get("labels"))
        try:
            entry.prompts()
        except BadInput as exc:
            raise BadInput(f"{where} ({entry.file_name}): {exc.problem}", exc.fix) from None
        entries.append(entry)
    return entries


def match_prompts(jobs: List[Job], entries: List[ImagePrompts], path: Path) -> Dict[Path, ImagePrompts]:
    """Each picture's entry: the picture whose path ends with the entry's file_name ("street.png",
    "sub/street.png"); where several do, the one at that path below the folder given."""
    found: Dict[Path, ImagePrompts] = {}
    for entry in entries:
        parts = Path(entry.file_name).parts
        named = [job for job in jobs if job.source.parts[-len(parts) :] == parts]
        if len(named) > 1:
            named = [job for job in named if (job.stem.parent / job.source.name).parts == parts] or named
        if len(named) > 1:
            raise BadInput(
                f"--prompts {path}: {entry.file_name} names {len(named)} pictures ({named[0].source}, "
                f"{named[1].source})",
                "give more of its path as file_name",
            )
        if not named:
            raise BadInput(
                f"--prompts {path}: {entry.file_name} is none of the pictures given", "pass it, or remove its entry"
            )
        if named[0].source in found:
            raise BadInput(
                f"--prompts {path}: {found[named[0].source].file_name} and {entry.file_name} both name "
                f"{named[0].source}",
                "give each picture one entry",
            )
        found[named[0].source] = entry
    missing = [job.source for job in jobs if job.source not in found]
    if missing:
        more = f" ({len(missing)} pictures have none)" if len(missing) > 1 else ""
        raise BadInput(
            f"{missing[0]} has no entry in --prompts {path}{more}", "add its prompts, or leave the picture out"
        )
    return found


def mask_suffixes(count: int) -> Dict[str, str]:
    return {**{f"mask{i}": f"_mask{i}.png" for i in range(count)}, **OVERLAY_SUFFIX}


def picture_size(path: Path) -> Optional[Tuple[int, int]]:
    """(H, W) from the file's header, or None where Pillow cannot tell (the run skips such a picture)."""
    try:
        from PIL import Image

        with Image.open(path) as image:
            return int(image.size[1]), int(image.size[0])
    except Exception:  # unreadable: decoded_pictures reports it, or stops the run with --strict
        return None


@dataclass
class PromptMask:
    prompt: int
    file: str
    score: float
    area: int  # pixels inside
    bbox: List[float]  # [x, y, w, h]


@dataclass
class SamPicture:
    input: str
    image_id: int
    size: List[int]  # [H, W]
    overlay: str
    masks: List[PromptMask] = field(default_factory=list)
    nonfinite: int = 0  # NaN/Inf values among its masks' low-res logits and scores


@dataclass
class SamPredictReport(Record):
    """What `predict --json` prints for a SAM artifact: where it ran, the weights' source, the masks."""

    KIND = "msla-deploy/predict-sam"

    artifact: str
    runtime: Dict[str, Any]  # both sessions' description (SamPredictor.describe)
    weights_source: Optional[str]
    weights_warning: Optional[str]
    prompts: str
    multimask: bool
    out: str
    results: str  # the COCO results file
    pictures: List[SamPicture] = field(default_factory=list)
    skipped: List[Dict[str, str]] = field(default_factory=list)  # {input, error}


@dataclass
class SamPredictResult(PredictRun):
    task: ClassVar[str] = SAM

    def _failure(self, bad: list) -> str:
        return (
            f"{len(bad)} of {len(self.report.pictures)} picture(s) got NaN/Inf mask logits or scores (first: "
            f"{bad[0].input}); their masks mean nothing (the files were written to {self.report.out}; validate the "
            "artifact)"
        )


def overlay(image: np.ndarray, masks: np.ndarray, prompts: Prompts, alpha: float) -> np.ndarray:
    """The picture with mask i blended in SERIES colour i, then each box outlined and each point
    dotted (green foreground, red background)."""
    from ..drawing import pil, to_image

    mixed = image.astype(np.float32)
    for i, mask in enumerate(masks):
        colour = np.asarray(SERIES[i % len(SERIES)], np.float32)
        mixed[mask] = (1.0 - alpha) * mixed[mask] + alpha * colour
    drawn = to_image(np.clip(np.rint(mixed), 0, 255).astype(np.uint8))
    _, ImageDraw, _ = pil()
    draw = ImageDraw.Draw(drawn)
    width = max(1, round(max(image.shape[:2]) / 400))
    for i in range(prompts.count):
        colour = SERIES[i % len(SERIES)]
        if prompts.boxes is not None:
            draw.rectangle([float(v) for v in prompts.boxes[i]], outline=colour, width=width)
        if prompts.points is not None:
            for (x, y), label in zip(prompts.points[i], prompts.labels[i]):
                if label < 0:
                    continue
                r = 2 * width + 2
                fill = FOREGROUND if label > 0 else BACKGROUND
                draw.ellipse([x - r, y - r, x + r, y + r], fill=fill, outline=(255, 255, 255), width=max(1, width // 2))
    return np.asarray(drawn, np.uint8)


def _check_options(options: PredictOptions, artifact) -> None:
    for flag, value in (("--top-k", options.top_k), ("--labels", options.labels), ("--label-ids", options.label_ids)):
        if value:
            raise BadInput(
                f"{flag} is not for SAM models; {options.artifact} is a model for {artifact.task.title}",
                f"leave {flag} out",
            )
    from ..everything_params import PARAMETER_OPTIONS

    given = [name for name, value in (options.everything_options or {}).items() if value is not None]
    if given:
        raise BadInput(f"{PARAMETER_OPTIONS[given[0]]} is for --everything", "pass --everything, or leave it out")
    if options.prompts is None:
        raise BadInput(
            f"{options.artifact} is a SAM model: predict needs each picture's prompts",
            "pass --prompts FILE.json (docs/sam.md), or --everything",
        )
    if options.out is None:
        raise BadInput(f"{options.artifact} is a SAM model: predict writes its masks into --out", "pass --out DIR")


def predict_sam(
    artifact,
    options: PredictOptions,
    on_picture: Optional[Callable[[int, int, Path], None]] = None,
    warn: Optional[Callable[[str], None]] = None,
) -> SamPredictResult:
    """SAM: every picture's prompts -> mask PNGs, an overlay, and one COCO results file in --out
    (with --everything: predict/sam_everything.py)."""
    if options.everything:
        from .sam_everything import predict_everything

        return predict_everything(artifact, options, on_picture, warn)
    _check_options(options, artifact)
    out = Path(options.out)
    entries = read_prompts(Path(options.prompts))
    jobs = collect_jobs(options.inputs, OVERLAY_SUFFIX)
    matched = match_prompts(jobs, entries, Path(options.prompts))
    guard = guard_for(artifact, inputs=options.inputs)
    with warnings.catch_warnings():  # random weights: the report and its header say so, louder
        warnings.simplefilter("ignore", RandomWeightsWarning)
        predictor = SamPredictor(artifact, options.backend, threads=options.threads)
    with predictor:
        if options.multimask and not predictor.multimask:
            raise BadInput(
                f"--multimask: {options.artifact}'s decoder gives one mask per prompt (single head)",
                "leave --multimask out, or export with --head multimask",
            )
        for job in jobs:  # every prompt against its picture and the decoder, before anything is written
            entry = matched[job.source]
            size = picture_size(job.source)
            if size is not None:
                try:
                    check_prompts(entry.prompts(), size, predictor.max_points)
                except BadInput as exc:
                    raise BadInput(f"--prompts {options.prompts}: {entry.file_name}: {exc.problem}", exc.fix) from None
            check_outputs([job], out, options.overwrite, guard, mask_suffixes(entry.prompts().count))
        results_file = out / RESULTS_NAME
        if results_file.exists() and not options.overwrite:
            raise BadInput(
                f"{results_file} exists (from an earlier run?)",
                "pass --overwrite to replace it, or another --out folder",
            )
        pictures: List[SamPicture] = []
        skipped: List[Dict[str, str]] = []
        written: List[Path] = []
        results: List[Dict[str, Any]] = []
        for job, picture in decoded_pictures(jobs, skipped, strict=options.strict, warn=warn, on_picture=on_picture):
            entry = matched[job.source]
            done = _predict_one(predictor, job, picture.image, entry, options, out)
            pictures.append(done[0])
            written += done[1]
            results += done[2]
        described = predictor.describe()
    write_bytes_atomic(results_file, (json.dumps(results) + "\n").encode("utf-8"))
    written.append(results_file)
    report = SamPredictReport(
        artifact=str(options.artifact),
        runtime=described,
        weights_source=predictor.weights_source,
        weights_warning=predictor.weights_warning,
        prompts=str(options.prompts),
        multimask=bool(options.multimask),
        out=str(out),
        results=str(results_file),
        pictures=pictures,
        skipped=skipped,
    )
    return SamPredictResult(report, written)


def _predict_one(predictor: SamPredictor, job: Job, image: np.ndarray, entry: ImagePrompts, options, out: Path):
    """One picture: its masks, files and COCO results."""
    prompts = entry.prompts()
    predictor.set_image(image)
    masks, scores, low_res = predictor.predict(
        points=entry.points, labels=entry.labels, boxes=entry.boxes, multimask=options.multimask
    )
    best = np.argmax(np.where(np.isnan(scores), -np.inf, scores), axis=1)  # one mask per prompt
    rows = np.arange(len(best))
    chosen, chosen_scores = masks[rows, best], scores[rows, best]
    nonfinite = int(np.count_nonzero(~np.isfinite(low_res[rows, best])) + np.count_nonzero(~np.isfinite(chosen_scores)))
    files = job.outputs(out, mask_suffixes(len(chosen)))
    written, results, records = [], [], []
    for i, mask in enumerate(chosen):
        path = files[f"mask{i}"]
        write_bytes_atomic(path, png_bytes(mask.astype(np.uint8) * 255))
        written.append(path)
        box, area, score = rle.bbox(mask), int(mask.sum()), float(chosen_scores[i])
        records.append(PromptMask(i, str(path), score, area, box))
        results.append(
            {
                "image_id": entry.image_id,
                "file_name": entry.file_name,
                "prompt": i,
                "category_id": CATEGORY_ID,
                "segmentation": rle.encode(mask),
                "score": score if np.isfinite(score) else None,
                "bbox": box,
                "area": area,
            }
        )
    write_bytes_atomic(files["overlay"], png_bytes(overlay(image, chosen, prompts, options.overlay_alpha)))
    written.append(files["overlay"])
    picture = SamPicture(
        input=str(job.source),
        image_id=entry.image_id,
        size=[int(image.shape[0]), int(image.shape[1])],
        overlay=str(files["overlay"]),
        masks=records,
        nonfinite=nonfinite,
    )
    return picture, written, results
