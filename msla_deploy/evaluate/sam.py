"""`evaluate` for a SAM artifact: mIoU on a COCO-format instance dataset by upstream's protocol
(applications/efficientvit_sam/eval_efficientvit_sam_model.py; the arithmetic in sam_protocol.py),
several backends in one pass. `SamEvaluation` is the pass:

    pictures -> [reader threads] decode the picture, its instances' ground-truth masks (coco.py)
                                 and prompts (the box, or upstream's first click)
             -> [this thread]    every backend (a SamPredictor): set_image, then all the picture's
                                 prompts in one predict call (multimask); the mask of the highest
                                 predicted IoU per prompt scored against the ground truth
             -> report: the SamReport record (sam_report.py), report.json/md, junit.xml; with
                --save-predictions each backend's per-instance results and masks (COCO RLE)

Each picture is decoded once for all backends. Memory: one picture's masks at a time; the
per-instance IoUs (and, with --save-predictions, each chosen mask's RLE) are kept.
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, NamedTuple, Optional

import numpy as np

from .. import rle, runtime
from ..artifact.resolve import resolve
from ..choices import SamPrompt
from ..errors import BadInput, one_line_text
from ..tasks import SAM
from . import sam_protocol as P
from .coco import (
    CocoDataset,
    CocoPicture,
    SkippedInstance,
    describe,
    ground_truth_mask,
    read_coco,
)
from .passes import READERS, check_common, decoded_batches, lower_priority, order_backends, report_folder
from .report import SkippedPicture
from .sam_report import (
    InstancePrediction,
    SamArtifactSummary,
    SamBackendResult,
    SamDatasetSummary,
    SamPredictions,
    SamProtocolRecord,
    SamReport,
    reasons,
    write_reports,
)

BAD_PICTURE_FIX = "replace the file, or pass --skip-bad"
EMPTY_BIN = "a bin without instances has no mean (null; upstream's get_iou_metric divides by zero there)"


@dataclass
class SamOptions:
    artifact: Path
    data: Path
    backends: List[str] = field(default_factory=lambda: ["auto"])
    against: Optional[str] = None
    limit: Optional[int] = None  # pictures
    prompt: str = SamPrompt.BOX.value
    min_miou: Optional[float] = None  # percent, every backend
    max_miou_drop: Optional[float] = None  # points, against the reference
    save_predictions: Optional[Path] = None  # DIR: <backend>.json per backend
    skip_bad: bool = False
    threads: Optional[int] = None
    report_dir: Optional[Path] = None  # default: evaluation/ in the export directory
    junit: Optional[Path] = None  # another copy of junit.xml

    def check(self) -> None:
        check_common(self.limit, self.backends)
        if self.prompt not in SamPrompt.values():
            raise BadInput(f"--prompt {self.prompt}: not one of {', '.join(SamPrompt.values())}", "use --prompt box")
        if self.min_miou is not None and not 0 <= self.min_miou <= 100:
            raise BadInput(f"--min-miou {self.min_miou}: must be a percentage in 0-100", "for example --min-miou 70")
        if self.max_miou_drop is not None and not self.max_miou_drop >= 0:
            raise BadInput(
                f"--max-miou-drop {self.max_miou_drop}: must be >= 0 (points of mIoU)", "for example --max-miou-drop 1"
            )


class Decoded(NamedTuple):
    """A picture from a reader thread: its pixels, ground-truth masks and prompts, or its problem."""

    picture: CocoPicture
    image: Optional[object]  # runtime.segmenter.Picture
    masks: List[np.ndarray]  # H x W bool per instance
    prompts: Optional[np.ndarray]  # [B, 4] boxes, or [B, 3] points: x, y, label
    problem: Optional[str] = None


@dataclass
class BackendRun:
    name: str
    predictor: object  # SamPredictor
    ious: List[float] = field(default_factory=list)
    predictions: List[InstancePrediction] = field(default_factory=list)
    nonfinite: int = 0
    seconds: float = 0.0


def prompts_of(masks: List[np.ndarray], picture: CocoPicture, prompt: str) -> np.ndarray:
    """The prompts of a picture's instances: boxes [B, 4] xyxy, or first clicks [B, 3] (x, y, label)."""
    if prompt == SamPrompt.BOX:
        return np.asarray([P.box_prompt(i.bbox) for i in picture.instances], dtype=np.float64)
    clicks = [P.first_click(m) for m in masks]
    return np.asarray([[x, y, label] for (x, y), label in clicks], dtype=np.float64)


def _file_name(backend: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", backend) + ".json"


class SamEvaluation:
    """One SAM evaluation: checks the inputs when made, `run()` makes the pass and writes the
    report. After `run()`, `runs` holds each backend's per-instance IoUs."""

    def __init__(self, options: SamOptions, on_progress: Optional[Callable[[int, int], None]] = None) -> None:
        from ..runtime.sam_predictor import SAM_BACKENDS

        options.check()
        self.options, self.on_progress = options, on_progress
        self.artifact = artifact = resolve(Path(options.artifact))
        if artifact.task.name != SAM or artifact.manifest is None or artifact.directory is None:
            raise BadInput(
                f"{artifact.path} is not a SAM export directory", "evaluate the directory msla-deploy export wrote"
            )
        self.report_dir = report_folder(artifact, options)
        self.dataset: CocoDataset = read_coco(options.data)
        self.pictures = self.dataset.pictures[: options.limit] if options.limit else self.dataset.pictures
        self.names, self.against = order_backends(options.backends, options.against)
        for name in self.names:  # an unknown backend or a missing runtime exits before anything loads
            runtime.preflight(runtime.choose(name, artifact, allowed=SAM_BACKENDS, command="evaluate"))
        self.runs: List[BackendRun] = []
        self.skipped: List[SkippedPicture] = []
        self.skipped_instances: List[SkippedInstance] = list(self.dataset.skipped)
        self.done = 0
        self.instances = 0
        self.areas: List[float] = []
        self.seconds = 0.0

    # --- the pass ----------------------------------------------------------------------------
    def run(self) -> SamReport:
        """Open the predictors, make the pass, close them; then the report (and predictions) written."""
        try:
            self._open()
            start = time.perf_counter()
            self._pass()
            self.seconds = time.perf_counter() - start
        finally:
            for r in self.runs:
                r.predictor.close()
        return self._report()

    def _open(self) -> None:
        from ..runtime.sam_predictor import SamPredictor

        for name in self.names:
            predictor = SamPredictor(self.artifact, name, threads=self.options.threads)
            self.runs.append(BackendRun(name, predictor))
            if not predictor.multimask:
                raise BadInput(
                    f"{self.artifact.name}'s decoder gives one mask per prompt (single head): upstream's protocol "
                    "keeps the best of three",
                    "evaluate an export made with --head multimask",
                )

    def _pass(self) -> None:
        with ThreadPoolExecutor(READERS, thread_name_prefix="evaluate-read", initializer=lower_priority) as readers:
            for batch in decoded_batches(self.pictures, self._decode, readers, 1, self._skip):
                for decoded in batch:
                    self._score(decoded)
                    self.done += 1
                if self.on_progress:
                    self.on_progress(self.done + len(self.skipped), len(self.pictures))

    def _skip(self, decoded: Decoded) -> None:
        self.skipped.append(SkippedPicture(decoded.picture.file_name, decoded.problem or ""))
        self.skipped_instances += [
            SkippedInstance(i.annotation_id, i.image_id, i.area, "its picture was skipped as bad")
            for i in decoded.picture.instances
        ]

    def _decode(self, picture: CocoPicture) -> Decoded:
        """A reader thread: the picture, its instances' masks and prompts."""
        from ..runtime.segmenter import decode

        try:
            image = decode(picture.path)
        except BadInput as exc:
            if not self.options.skip_bad:
                raise
            return Decoded(picture, None, [], None, exc.one_line())
        height, width = image.image.shape[:2]
        if (height, width) != (picture.height, picture.width):
            raise BadInput(
                f"image {picture.image_id}: {picture.path} is {width}x{height}, the annotations say "
                f"{picture.width}x{picture.height}",
                "fix the image's height and width in the annotations file",
            )
        masks = [ground_truth_mask(i.segmentation, height, width) for i in picture.instances]
        return Decoded(picture, image, masks, prompts_of(masks, picture, self.options.prompt))

    def _score(self, decoded: Decoded) -> None:
        picture, prompts = decoded.picture, decoded.prompts
        for r in self.runs:
            t0 = time.perf_counter()
            r.predictor.set_image(decoded.image)
            if self.options.prompt == SamPrompt.BOX:
                masks, scores, _ = r.predictor.predict(boxes=prompts, multimask=True)
            else:
                masks, scores, _ = r.predictor.predict(points=prompts[:, None, :2], labels=prompts[:, None, 2])
            r.seconds += time.perf_counter() - t0
            best = np.argmax(scores, axis=1)  # the first of equal scores, as upstream's argmax
            r.nonfinite += int((~np.isfinite(scores)).any(axis=1).sum())
            for b, (instance, truth) in enumerate(zip(picture.instances, decoded.masks)):
                chosen = masks[b, best[b]]
                iou = P.mask_iou(chosen, truth)
                r.ious.append(iou)
                if self.options.save_predictions is not None:
                    r.predictions.append(
                        InstancePrediction(
                            instance.annotation_id,
                            instance.image_id,
                            instance.area,
                            iou,
                            float(scores[b, best[b]]),
                            [float(v) for v in prompts[b]],
                            rle.encode(chosen),
                        )
                    )
        self.areas += [i.area for i in picture.instances]
        self.instances += len(picture.instances)

    # --- the report ----------------------------------------------------------------------------
    def _protocol(self) -> SamProtocolRecord:
        box = self.options.prompt == SamPrompt.BOX
        return SamProtocolRecord(
            prompt=str(self.options.prompt),
            prompt_text="the ground-truth box (COCO xywh -> xyxy)" if box else f"one click: {P.FIRST_CLICK}",
            multimask=True,
            iou=P.IOU_TEXT,
            area_bins={name: list(bounds) for name, bounds in P.AREA_BINS.items()},
            bins=P.bins_text(),
            empty_bin=EMPTY_BIN,
        )

    def _backend_results(self) -> List[SamBackendResult]:
        results = []
        for r in self.runs:
            means, counts = P.miou_by_area(self.areas, r.ious)
            results.append(
                SamBackendResult(
                    backend=r.name,
                    ran=r.predictor.describe(),
                    miou=means,
                    instances=counts,
                    miou_drop_points=None,
                    passed=None,
                    inference_s=round(r.seconds, 3),
                    nonfinite_instances=r.nonfinite,
                )
            )
        reference = next(b for b in results if b.backend == self.against).miou[P.ALL]
        for b in results:
            if b.backend != self.against and reference is not None and b.miou[P.ALL] is not None:
                b.miou_drop_points = reference - b.miou[P.ALL]
        return results

    def _notes(self) -> List[str]:
        notes = []
        if self.dataset.skipped:
            notes.append(f"{len(self.dataset.skipped)} annotation(s) with area < 1 skipped, as upstream does")
        if self.options.limit and self.options.limit < len(self.dataset.pictures):
            notes.append(f"--limit {self.options.limit}: the first pictures of the annotations file only")
        if self.skipped:
            notes.append(f"{len(self.skipped)} bad picture(s) skipped (--skip-bad); listed under 'skipped'")
        return notes

    def _report(self) -> SamReport:
        if self.done == 0:
            shown = "; ".join(one_line_text(f"{s.image}: {s.problem}", 240) for s in self.skipped[:3])
            raise BadInput(
                f"--data {self.options.data}: no picture could be evaluated, all {len(self.skipped)} were bad "
                f"({shown})",
                "fix or remove those files",
            )
        predictor = self.runs[0].predictor
        art = self.artifact
        report = SamReport(
            passed=True,
            task=SAM,
            artifact=SamArtifactSummary(
                str(art.path),
                art.name,
                art.model_name,
                predictor.encoder_graph.precision,
                predictor.image_size,
                "multimask" if predictor.multimask else "single",
                predictor.max_prompts,
                art.weights_source,
                art.weights_warning,
            ),
            dataset=SamDatasetSummary(
                **describe(self.dataset),
                pictures=self.done,
                instances=self.instances,
                skipped_small=len(self.dataset.skipped),
            ),
            protocol=self._protocol(),
            against=self.against,
            min_miou_percent=self.options.min_miou,
            max_miou_drop_points=self.options.max_miou_drop,
            pictures=self.done,
            instances=self.instances,
            seconds=round(self.seconds, 3),
            backends=self._backend_results(),
            skipped=list(self.skipped),
            skipped_instances=list(self.skipped_instances),
            notes=self._notes(),
        )
        for b in report.backends:
            gated = self.options.min_miou is not None or (
                b.backend != self.against and self.options.max_miou_drop is not None
            )
            b.passed = False if reasons(report, b) else (True if gated else None)
        report.passed = all(b.passed is not False for b in report.backends)
        if self.options.save_predictions is not None:
            report.predictions = self._write_predictions(Path(self.options.save_predictions))
        write_reports(report, self.report_dir, self.options.junit)
        return report

    def _write_predictions(self, folder: Path) -> dict:
        written = {}
        for r in self.runs:
            path = folder / _file_name(r.name)
            SamPredictions(r.name, str(self.options.prompt), str(self.dataset.annotations_file), r.predictions).write(
                path
            )
            written[r.name] = str(path)
        return written


def evaluate_sam(options: SamOptions, on_progress: Optional[Callable[[int, int], None]] = None) -> SamReport:
    """Run the evaluation of a SAM artifact and write its report (report.json, report.md, junit.xml)."""
    return SamEvaluation(options, on_progress).run()
