"""`evaluate` for a classifier: top-1 / top-5 accuracy on an ImageNet-style folder or a list file,
upstream's protocol (applications/efficientvit_cls/eval_efficientvit_cls_model.py), several
backends in one pass. `ClassifyEvaluation` is the pass:

    pictures -> [reader threads] decode + upstream's transform (runtime/classify_preprocess.py)
             -> [this thread]    every backend runs the batch; its outputs ranked (accuracy.py),
                                 counted per class, and against the reference backend's
             -> report: the ClassifyReport record (classify_report.py), report.json/md, junit.xml

Each picture is decoded once for all backends, on reader threads of the lowest priority, a few
batches ahead; the metric is a ranking of [N, classes] scores, cheap enough to run between
batches. Memory stays bounded: only counts are kept.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

import numpy as np

from .. import runtime
from ..artifact.resolve import Artifact, resolve
from ..errors import BadInput, one_line_text
from ..runtime.classify_preprocess import CROP_RATIO, check_crop_ratio, preprocess_file, resize_short_side
from ..tasks import CLASSIFICATION, TOPK, Task
from .accuracy import AccuracyTally, AgreementTally, ranks_from, scored_output
from .classify_report import (
    AgreementResult,
    ClassDatasetSummary,
    ClassifyBackendResult,
    ClassifyProtocol,
    ClassifyReport,
    reasons,
    write_reports,
)
from .imagenet import IMAGEFOLDER, ClassDataset, ClassSample, find_class_dataset
from .passes import READERS, check_common, decoded_batches, lower_priority, order_backends, report_folder
from .report import ArtifactSummary, SkippedPicture

SKIPPED_SHOWN = 3  # bad files named in the error line when none was usable
BAD_PICTURE_FIX = "replace the file, or pass --skip-bad"


@dataclass
class ClassifyOptions:
    artifact: Path
    data: Path
    backends: List[str] = field(default_factory=lambda: ["auto"])
    against: Optional[str] = None
    limit: Optional[int] = None
    min_top1: Optional[float] = None  # percent, every backend
    max_top1_drop: Optional[float] = None  # points, against the reference
    crop_ratio: float = CROP_RATIO
    skip_bad: bool = False
    threads: Optional[int] = None
    report_dir: Optional[Path] = None  # default: evaluation/ in the export directory
    junit: Optional[Path] = None  # another copy of junit.xml

    def check(self) -> None:
        check_common(self.limit, self.backends)
        if self.min_top1 is not None and not 0 <= self.min_top1 <= 100:
            raise BadInput(f"--min-top1 {self.min_top1}: must be a percentage in 0-100", "for example --min-top1 79.3")
        if self.max_top1_drop is not None and not self.max_top1_drop >= 0:
            raise BadInput(
                f"--max-top1-drop {self.max_top1_drop}: must be >= 0 (points of top-1)",
                "for example --max-top1-drop 0.5",
            )
        check_crop_ratio(self.crop_ratio)


class Decoded(NamedTuple):
    """A picture from a reader thread: its model input, or the problem that skips it."""

    sample: ClassSample
    x: Optional[np.ndarray]  # 1 x 3 x H x W float32
    problem: Optional[str] = None


@dataclass
class BackendRun:
    """One backend during the pass: its session, what it outputs, its counts."""

    name: str
    session: object
    output: str  # the output ranked
    kind: str  # its OutputKind
    kinds: Dict[str, str]  # every output it has that the task names -> OutputKind
    tally: AccuracyTally
    seconds: float = 0.0


def _check_artifact(artifact: Artifact) -> Task:
    task = artifact.task
    if task.name != CLASSIFICATION:
        raise BadInput(
            f"{artifact.path} is a {task.name} model, not a classifier",
            "evaluate it with the segmentation options (msla-deploy evaluate --help)",
        )
    if artifact.resolution is None or artifact.num_classes is None:
        raise BadInput(
            f"{artifact.path}: no static input resolution or class count",
            "evaluate an export directory or a static classification ONNX",
        )
    return task


class ClassifyEvaluation:
    """One classification evaluation: checks the inputs when made, `run()` makes the pass and
    writes the report. After `run()`, `runs` and `pairs` hold the counts the report was made from."""

    def __init__(self, options: ClassifyOptions, on_progress: Optional[Callable[[int, int], None]] = None) -> None:
        options.check()
        self.options, self.on_progress = options, on_progress
        self.artifact = artifact = resolve(Path(options.artifact))
        self.task = _check_artifact(artifact)
        self.report_dir = report_folder(artifact, options)
        self.resolution: Tuple[int, int] = tuple(artifact.resolution)  # type: ignore[arg-type]
        self.num_classes: int = artifact.num_classes  # type: ignore[assignment]
        self.dataset: ClassDataset = find_class_dataset(options.data, self.num_classes, not options.skip_bad)
        self.samples = self.dataset.samples[: options.limit] if options.limit else self.dataset.samples
        self.names, self.against = order_backends(options.backends, options.against)
        self.chosen = [runtime.choose(n, artifact, command="evaluate") for n in self.names]
        for backend in self.chosen:
            runtime.preflight(backend)  # a missing runtime exits 3 before any session loads
        self.runs: List[BackendRun] = []
        self.pairs: List[AgreementTally] = []
        self.skipped: List[SkippedPicture] = []
        self.done = 0
        self.seconds = 0.0
        self.batch = 1
        self.input_name = ""
        self.input_dtype = np.float32

    # --- the pass ----------------------------------------------------------------------------
    def run(self) -> ClassifyReport:
        """Open the sessions, make the pass, close them; then the report, written to report_dir."""
        try:
            self._open_sessions()
            start = time.perf_counter()
            self._pass()
            self.seconds = time.perf_counter() - start
        finally:
            for r in self.runs:
                r.session.close()
        return self._report()

    def _open_sessions(self) -> None:
        known = self.task.output_kinds
        for name, backend in zip(self.names, self.chosen):
            session = runtime.open(self.artifact, backend, threads=self.options.threads, command="evaluate")
            kinds = {n: known[n] for n in session.outputs if n in known}
            try:
                output, kind = scored_output(kinds)
            except KeyError:
                session.close()
                raise BadInput(
                    f"--backend {name}: the model has no classification output to rank (it gives "
                    f"{', '.join(sorted(session.outputs)) or 'none'})",
                    "evaluate an export made with --head logits, probs or topk",
                ) from None
            tally = AccuracyTally(self.num_classes, TOPK)
            self.runs.append(BackendRun(name, session, output, kind, kinds, tally))
        first = self.runs[0].session
        self.batch = first.group  # a dynamic batch runs full groups of its largest batch
        self.input_name = next(iter(first.inputs))
        self.input_dtype = first.inputs[self.input_name].numpy_dtype
        self.pairs = [AgreementTally(self.against, r.name, TOPK) for r in self.runs if r.name != self.against]

    def _pass(self) -> None:
        with ThreadPoolExecutor(READERS, thread_name_prefix="evaluate-read", initializer=lower_priority) as readers:
            batches = decoded_batches(
                self.samples,
                self._decode,
                readers,
                self.batch,
                lambda d: self.skipped.append(SkippedPicture(d.sample.name, d.problem)),
            )
            for batch in batches:
                self._score(batch, self._infer(batch))
                self.done += len(batch)
                if self.on_progress:
                    self.on_progress(self.done + len(self.skipped), len(self.samples))

    def _decode(self, sample: ClassSample) -> Decoded:
        """A reader thread: the picture, decoded and transformed as upstream's evaluation does."""
        try:
            x = preprocess_file(sample.image, self.resolution, self.options.crop_ratio, BAD_PICTURE_FIX)
        except BadInput as exc:
            if not self.options.skip_bad:
                raise
            return Decoded(sample, None, exc.one_line())
        return Decoded(sample, x)

    def _infer(self, batch: List[Decoded]) -> Dict[str, np.ndarray]:
        """Every backend runs the batch: its ranked classes, [n, <=k] per backend."""
        inputs = [d.x for d in batch]  # pad the last batch to the model's
        x = inputs[0] if self.batch == 1 else np.concatenate(inputs + [inputs[-1]] * (self.batch - len(inputs)), axis=0)
        if x.dtype != self.input_dtype:  # an fp16 graph input
            x = x.astype(self.input_dtype)
        ranks = {}
        for r in self.runs:
            t0 = time.perf_counter()
            result = r.session.run({self.input_name: x})
            r.seconds += time.perf_counter() - t0
            ranks[r.name] = ranks_from({k: v[: len(batch)] for k, v in result.items()}, r.output, r.kind, r.kinds, TOPK)
        return ranks

    def _score(self, batch: List[Decoded], ranks: Dict[str, np.ndarray]) -> None:
        labels = np.asarray([d.sample.label for d in batch], np.int64)
        for r in self.runs:
            r.tally.add(labels, ranks[r.name])
        names = [d.sample.name for d in batch]
        for pair in self.pairs:
            pair.add(names, ranks[pair.reference], ranks[pair.candidate])

    # --- the report ----------------------------------------------------------------------------
    def _protocol(self) -> ClassifyProtocol:
        h, w = self.resolution
        ratio = self.options.crop_ratio
        short = resize_short_side(self.resolution, ratio)
        outputs = sorted({f"{r.output} ({r.kind})" for r in self.runs})
        return ClassifyProtocol(
            input_resolution=[h, w],
            crop_ratio=ratio,
            resize_short_side=short,
            resize=f"RGB, short side resized to {short} = ceil({max(h, w)} / {ratio:g}) with Pillow's bicubic, "
            "long side int(short x long / short)",
            crop=f"centre crop {h}x{w} (offsets int(round(difference / 2)))",
            normalise="/255, ImageNet mean/std, float32",
            scored=", ".join(outputs),
            metric="top-k: the label among the k highest scores (a tie goes to the lower class index)",
        )

    def _notes(self) -> List[str]:
        notes = []
        data = self.dataset
        if data.kind == IMAGEFOLDER and data.classes < self.num_classes:
            notes.append(
                f"the folder has {data.classes} class folder(s) and the model {self.num_classes} classes: the i-th "
                "folder (sorted by name) is scored as class i"
            )
        if self.options.limit and self.options.limit < len(data.samples) and data.kind == IMAGEFOLDER:
            last = self.samples[-1].label
            notes.append(
                f"--limit {self.options.limit}: the first pictures in class order, classes 0-{last} only "
                "(a list file in another order samples every class)"
            )
        if self.skipped:
            notes.append(f"{len(self.skipped)} bad picture(s) skipped (--skip-bad); listed under 'skipped'")
        return notes

    def _backend_results(self) -> List[ClassifyBackendResult]:
        names = self.dataset.class_names
        reference = next(r for r in self.runs if r.name == self.against).tally.top1_accuracy()
        results = []
        for r in self.runs:
            top1 = r.tally.top1_accuracy()
            drop = None
            if r.name != self.against and top1 is not None and reference is not None:
                drop = 100.0 * (reference - top1)
            results.append(
                ClassifyBackendResult(
                    backend=r.name,
                    ran=r.session.describe(),
                    output=r.output,
                    top1=top1,
                    top5=r.tally.topk_accuracy(),
                    top1_drop_points=drop,
                    passed=None,
                    inference_s=round(r.seconds, 3),
                    nonfinite_pictures=r.tally.nonfinite_pictures,
                    class_accuracy=r.tally.class_table(names),
                )
            )
        return results

    def _report(self) -> ClassifyReport:
        """The record from the counts; report.json, report.md and junit.xml written."""
        if self.done == 0:  # no report is written: the line itself names the bad files
            shown = "; ".join(one_line_text(f"{s.image}: {s.problem}", 240) for s in self.skipped[:SKIPPED_SHOWN])
            more = f"; and {len(self.skipped) - SKIPPED_SHOWN} more" if len(self.skipped) > SKIPPED_SHOWN else ""
            raise BadInput(
                f"--data {self.options.data}: no picture could be evaluated, all {len(self.skipped)} were bad "
                f"({shown}{more})",
                "fix or remove those files",
            )
        report = ClassifyReport(
            passed=True,
            task=self.task.name,
            artifact=ArtifactSummary.of(self.artifact, self.resolution, self.batch, self.num_classes),
            dataset=ClassDatasetSummary(**self.dataset.describe(), evaluated=self.done),
            protocol=self._protocol(),
            against=self.against,
            min_top1_percent=self.options.min_top1,
            max_top1_drop_points=self.options.max_top1_drop,
            images=self.done,
            seconds=round(self.seconds, 3),
            images_per_second=self.done / self.seconds if self.seconds > 0 else None,
            backends=self._backend_results(),
            pairs=[
                AgreementResult(
                    p.reference, p.candidate, p.top1_agreement(), p.topk_overlap(), p.differing_count, p.differing
                )
                for p in self.pairs
            ],
            skipped=list(self.skipped),
            notes=self._notes(),
        )
        for b in report.backends:
            gated = self.options.min_top1 is not None or (
                b.backend != self.against and self.options.max_top1_drop is not None
            )
            b.passed = False if reasons(report, b) else (True if gated else None)
        report.passed = all(b.passed is not False for b in report.backends)
        write_reports(report, self.report_dir, self.options.junit)
        return report


def evaluate_classifier(
    options: ClassifyOptions, on_progress: Optional[Callable[[int, int], None]] = None
) -> ClassifyReport:
    """Run the evaluation of a classifier and write its report (report.json, report.md, junit.xml)."""
    return ClassifyEvaluation(options, on_progress).run()
