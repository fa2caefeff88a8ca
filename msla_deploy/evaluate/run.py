"""`evaluate`: mIoU of a deployed model on a labelled dataset, upstream's protocol, several
backends in one pass. `Evaluation` is the pass, one method per stage:

    pictures -> [reader threads] decode: read, check, preprocess
             -> [this thread]    infer: every backend runs the batch
             -> [metric thread]  score: bicubic upsample + argmax to the label size, confusion
                                 matrices, disagreement between backends, saved predictions
             -> report: the EvaluateReport record (report.py), report.json/md, junit.xml

Each picture is decoded once for all backends; decoding, resizing and the metric overlap with
inference (ONNX Runtime, TensorRT and PyTorch release the GIL while they compute), on threads of
the lowest priority so that they use the cores a CPU backend leaves idle rather than slow it. At
most a few batches are in flight, so memory stays bounded. An artifact whose graph has its own
bicubic labels output (export --head both) is scored from it where a label has the input size.
"""

from __future__ import annotations

import heapq
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, NamedTuple, Optional, Tuple

import numpy as np

from .. import runtime
from ..artifact.names import LABELS_NAME, OUTPUT_NAME
from ..artifact.resolve import Artifact, resolve
from ..classes import IGNORE_INDEX, dataset_for, palette
from ..drawing import save_picture
from ..errors import BadInput, one_line_text
from ..iou import NO_LABEL, Confusion
from ..runtime import processing
from ..tasks import SEGMENTATION
from .datasets import Dataset, Sample, find_dataset, picture_size, read_pair
from .passes import READERS, check_common, decoded_batches, lower_priority, order_backends, report_folder
from .pictures import keep_labels, write_disagreement
from .report import (
    ArtifactSummary,
    BackendResult,
    DatasetSummary,
    EvaluateReport,
    PairResult,
    Protocol,
    SkippedPicture,
    WorstImage,
    write_reports,
)

WORST_IMAGES = 10  # disagreeing images listed per backend pair
WORST_PICTURES = 3  # of which a picture is drawn
SKIPPED_SHOWN = 3  # bad files named in the error line when none was usable
IN_FLIGHT = 2  # batches waiting for the metric thread
# The host graphs (preprocess, upsample + argmax) run on one ONNX Runtime thread each: the
# readers and the metric thread are the host's parallelism, and extra pools beside the model's
# would only take turns with it for the same cores.
HOST_THREADS = 1


def _graph_labels_follow_the_protocol(artifact: Artifact) -> bool:
    """An in-graph labels output (export --head both) can stand in for the host's upsample +
    argmax only where the graph resizes bicubically (--upsample bilinear is not the protocol)."""
    model = artifact.onnx_model
    if model is None:  # an engine alone: what it resizes with is not known here
        return False
    modes = {a.s.decode() for n in model.graph.node if n.op_type == "Resize" for a in n.attribute if a.name == "mode"}
    return modes == {"cubic"}


@dataclass
class EvaluateOptions:
    artifact: Path
    data: Path
    dataset: str = "auto"
    backends: List[str] = field(default_factory=lambda: ["auto"])
    against: Optional[str] = None
    limit: Optional[int] = None
    max_miou_drop: Optional[float] = None  # points
    ignore_index: int = IGNORE_INDEX
    save_predictions: Optional[Path] = None
    skip_bad: bool = False
    threads: Optional[int] = None
    report_dir: Optional[Path] = None  # default: evaluation/ in the export directory
    junit: Optional[Path] = None  # another copy of junit.xml

    def check(self) -> None:
        check_common(self.limit, [])
        if self.max_miou_drop is not None and not self.max_miou_drop >= 0:
            raise BadInput(
                f"--max-miou-drop {self.max_miou_drop}: must be >= 0 (points of mIoU)",
                "for example --max-miou-drop 0.3",
            )
        check_common(None, self.backends)
        if not 0 <= self.ignore_index <= 255:
            raise BadInput(
                f"--ignore-index {self.ignore_index}: label PNGs hold 0-255", "for example --ignore-index 255"
            )


@dataclass
class BackendTally:
    """One backend's running figures during the pass."""

    backend: str
    describe: Dict
    confusion: Confusion
    seconds: float = 0.0  # inference time of this backend alone
    nonfinite_pixels: int = 0  # output pixels with a NaN or infinite logit
    nonfinite_pictures: int = 0  # pictures with any

    def count_nonfinite(self, logits: np.ndarray) -> None:
        """One picture's [C, h, w] logits: its pixels with a logit that is not finite."""
        bad = int(np.count_nonzero(~np.isfinite(logits).all(axis=0)))
        self.nonfinite_pixels += bad
        self.nonfinite_pictures += bool(bad)

    def result(self, names: Optional[Tuple[str, ...]], drop: Optional[float], passed: Optional[bool]) -> BackendResult:
        return BackendResult(
            backend=self.backend,
            ran=self.describe,
            miou=self.confusion.miou(),
            pixel_accuracy=self.confusion.pixel_accuracy(),
            miou_drop_points=drop,
            passed=passed,
            inference_s=round(self.seconds, 3),
            class_iou=self.confusion.class_table(names),
            nonfinite_pixels=self.nonfinite_pixels,
            nonfinite_pictures=self.nonfinite_pictures,
        )


@dataclass
class PairTally:
    """A candidate backend's labels against the reference backend's, during the pass."""

    reference: str
    candidate: str
    # the reference's labels as the truth, every pixel (one without a label is no truth)
    confusion: Confusion
    worst: List[Tuple[float, str]] = field(default_factory=list)  # min-heap of (disagreement, image)
    pictures: Dict[str, str] = field(default_factory=dict)  # image -> picture file
    drawn: Dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # the worst few, until written

    def add(
        self, image: str, ref: np.ndarray, cand: np.ndarray, draw: Callable[[np.ndarray, np.ndarray], np.ndarray]
    ) -> None:
        self.confusion.add(ref, cand)
        differs = float(np.mean(ref != cand))
        entry = (differs, image)
        if len(self.worst) < WORST_IMAGES:
            heapq.heappush(self.worst, entry)
        elif entry > self.worst[0]:
            heapq.heapreplace(self.worst, entry)
        else:
            return
        if differs > 0:
            self._keep_picture(entry, ref, cand, draw)

    def _keep_picture(self, entry: Tuple[float, str], ref: np.ndarray, cand: np.ndarray, draw) -> None:
        # drawn now, written with the report: a run stopped by bad input leaves no pictures behind
        ranked = sorted(self.worst, reverse=True)[:WORST_PICTURES]
        if entry not in ranked:
            return
        self.drawn[entry[1]] = draw(ref, cand)
        keep = {name for _, name in ranked}
        for name in [n for n in self.drawn if n not in keep]:  # fell out of the worst few
            del self.drawn[name]

    def save_pictures(
        self, folder: Path, colours: np.ndarray, names: Optional[List[str]], files_of: Dict[str, Path]
    ) -> None:
        for image, labels in self.drawn.items():
            file = folder / f"{_safe(self.candidate)}-vs-{_safe(self.reference)}-{_safe(image)}.png"
            write_disagreement(file, labels, self.reference, self.candidate, image, colours, names, files_of.get(image))
            self.pictures[image] = str(file)
        self.drawn.clear()

    def result(self) -> PairResult:
        worst = [WorstImage(name, d, self.pictures.get(name)) for d, name in sorted(self.worst, reverse=True)]
        return PairResult(self.reference, self.candidate, self.confusion.miou(), self.confusion.pixel_accuracy(), worst)


class Decoded(NamedTuple):
    """A picture from a reader thread: its model input and label, or the problem that skips it."""

    sample: Sample
    x: Optional[np.ndarray]  # 1 x 3 x H x W, preprocessed
    label: Optional[np.ndarray]
    problem: Optional[str] = None


def _check_artifact(artifact: Artifact) -> None:
    """A segmentation artifact with logits, a static input resolution and a class count."""
    if artifact.task.name != SEGMENTATION:  # the command asks protocols.py; the Python API may not have
        raise BadInput(
            f"{artifact.path} is a {artifact.task.name} model, not a segmentation one",
            "evaluate it with msla-deploy evaluate (or evaluate.classification.evaluate_classifier)",
        )
    if artifact.outputs and OUTPUT_NAME not in {o.name for o in artifact.outputs}:
        raise BadInput(
            f"{artifact.path} has no {OUTPUT_NAME!r} output (a --head labels export): "
            "upstream's protocol upsamples the logits to each label's size",
            "evaluate an export made with --head logits or --head both",
        )
    if artifact.resolution is None or artifact.num_classes is None:
        raise BadInput(
            f"{artifact.path}: no static input resolution or class count",
            "evaluate an export directory or a static segmentation ONNX",
        )


def _protocol(dataset: Dataset, resolution: Tuple[int, int]) -> Tuple[Dict[str, str], List[str]]:
    notes = []
    h, w = resolution
    if dataset.kind == "ade20k":
        notes.append(
            f"ADE20K: upstream resizes each picture to short side 512 (long side a multiple of 32); "
            f"a static artifact is evaluated at its own resolution, {h}x{w}, so the figure is not upstream's protocol"
        )
    elif dataset.kind == "cityscapes" and (h, w) != (1024, 2048):
        notes.append(
            f"Cityscapes: upstream evaluates at 1024x2048; this artifact takes {h}x{w}, so pictures are resized to it"
        )
    protocol = {
        "resize": "cubic (cv2 INTER_CUBIC-like, a=-0.75, half-pixel) when sizes differ",
        "normalise": "RGB / 255, ImageNet mean/std",
        "labels": "logits upsampled bicubically (align_corners=False) to the label size, argmax",
        "miou": "per-class intersection and union summed over the set; mean over classes with a non-empty union",
    }
    return protocol, notes


def _build_host_graphs(sample: Sample, resolution: Tuple[int, int], sessions, graph_labels: bool) -> None:
    """Build the preprocess and upsample graphs for the first picture's size before the timed
    pass, as the sessions are (the upsample's exactness check runs a dense upsample once); a
    picture of another size builds its own on the way."""
    try:
        size = picture_size(sample.image)
    except BadInput:
        return  # a bad first picture is the pass's to report
    processing.preprocess(np.zeros(size + (3,), np.uint8), resolution, threads=HOST_THREADS)
    if graph_labels and size == tuple(resolution):
        return
    for spec in {s.outputs[OUTPUT_NAME] for _, s in sessions if OUTPUT_NAME in s.outputs}:
        if len(spec.shape) == 4 and all(isinstance(d, int) and d > 0 for d in spec.shape[1:]):
            processing.labels(np.zeros((1,) + tuple(spec.shape[1:]), spec.dtype), size, threads=HOST_THREADS)


def _safe(name: str) -> str:
    return name.replace("/", "__")


class Evaluation:
    """One evaluation: checks the inputs when made, `run()` makes the pass and writes the report.

    After `run()`, `backends` and `pairs` hold the running tallies (confusion matrices) the
    report was made from."""

    def __init__(self, options: EvaluateOptions, on_progress: Optional[Callable[[int, int], None]] = None) -> None:
        options.check()
        self.options, self.on_progress = options, on_progress
        self.artifact = artifact = resolve(Path(options.artifact))
        self.report_dir = report_folder(artifact, options)
        _check_artifact(artifact)
        self.resolution: Tuple[int, int] = tuple(artifact.resolution)  # type: ignore[arg-type]
        self.num_classes: int = artifact.num_classes
        self.dataset = find_dataset(options.data, options.dataset, self.num_classes, options.ignore_index)
        self.samples = self.dataset.samples[: options.limit] if options.limit else self.dataset.samples
        self.names, self.against = order_backends(options.backends, options.against)
        self.chosen = [runtime.choose(n, artifact, command="evaluate") for n in self.names]
        for backend in self.chosen:
            runtime.preflight(backend)  # a missing runtime exits 3 before any session loads
        self.classes = dataset_for(artifact.model_name or "", self.num_classes)
        self.colours = palette(self.num_classes, artifact.model_name or "")
        self.protocol, self.notes = _protocol(self.dataset, self.resolution)
        self.sessions: List[Tuple[str, object]] = []
        self.backends: List[BackendTally] = []
        self.pairs: List[PairTally] = []
        self.skipped: List[SkippedPicture] = []
        self.done = 0
        self.seconds = 0.0
        self.graph_labels = False  # score an in-graph labels output where it follows the protocol
        self.batch = 1
        self.input_name = ""

    # --- the pass ----------------------------------------------------------------------------
    def run(self) -> EvaluateReport:
        """Open the sessions, make the pass, close them; then the report, written to report_dir."""
        try:
            self._open_sessions()
            if self.samples:
                _build_host_graphs(self.samples[0], self.resolution, self.sessions, self.graph_labels)
            start = time.perf_counter()
            self._pass()
            self.seconds = time.perf_counter() - start
        finally:
            for _, session in self.sessions:
                session.close()
        return self._report()

    def _open_sessions(self) -> None:
        for name, backend in zip(self.names, self.chosen):
            self.sessions.append(
                (name, runtime.open(self.artifact, backend, threads=self.options.threads, command="evaluate"))
            )
        first = self.sessions[0][1]
        self.batch = first.group  # a dynamic batch runs full groups of its largest batch
        self.input_name = next(iter(first.inputs))
        self.backends = [
            BackendTally(name, session.describe(), Confusion(self.num_classes)) for name, session in self.sessions
        ]
        self.pairs = [
            PairTally(self.against, name, Confusion(self.num_classes, ignore_index=NO_LABEL))
            for name, _ in self.sessions
            if name != self.against
        ]
        self.graph_labels = _graph_labels_follow_the_protocol(self.artifact) and any(
            LABELS_NAME in s.outputs for _, s in self.sessions
        )
        if self.graph_labels:
            h, w = self.resolution
            self.protocol["labels"] = (
                f"the artifact's own labels output (its bicubic resize + argmax) where a label is {h}x{w}; "
                f"elsewhere {self.protocol['labels']}"
            )

    def _pass(self) -> None:
        """Readers decode ahead, this thread infers full batches, the metric thread scores them;
        at most a few batches are in flight."""
        with ThreadPoolExecutor(
            READERS, thread_name_prefix="evaluate-read", initializer=lower_priority
        ) as readers, ThreadPoolExecutor(1, thread_name_prefix="evaluate-metric", initializer=lower_priority) as metric:
            pending: List[Future] = []
            for batch in self._batches(readers):
                outputs = self._infer(batch)
                while len(pending) >= IN_FLIGHT:
                    pending.pop(0).result()
                pending.append(metric.submit(self._score, batch, outputs))
                self.done += len(batch)
                if self.on_progress:
                    self.on_progress(self.done + len(self.skipped), len(self.samples))
            for future in pending:
                future.result()

    def _batches(self, readers: ThreadPoolExecutor) -> Iterator[List[Decoded]]:
        """Decoded pictures in order, in groups of the batch (the last one short); bad pictures
        are skipped here (with --skip-bad) or raise (without)."""
        return decoded_batches(
            self.samples,
            self._decode,
            readers,
            self.batch,
            lambda d: self.skipped.append(SkippedPicture(d.sample.name, d.problem)),
        )

    # --- the stages ----------------------------------------------------------------------------
    def _decode(self, sample: Sample) -> Decoded:
        """A reader thread: the picture and its label, checked, and the model input."""
        try:
            pixels, label = read_pair(self.dataset, sample)
        except BadInput as exc:
            if not self.options.skip_bad:
                raise
            return Decoded(sample, None, None, exc.one_line())
        return Decoded(sample, processing.preprocess(pixels, self.resolution, threads=HOST_THREADS), label)

    def _infer(self, batch: List[Decoded]) -> Dict[str, Dict[str, np.ndarray]]:
        """This thread: every backend runs the batch; their logits (and labels) per backend."""
        # pad the last batch; one picture is fed as it is (a concatenation would copy it)
        inputs = [d.x for d in batch]
        x = inputs[0] if self.batch == 1 else np.concatenate(inputs + [inputs[-1]] * (self.batch - len(inputs)), axis=0)
        outputs = {}
        for (name, session), tally in zip(self.sessions, self.backends):
            t0 = time.perf_counter()
            result = session.run({self.input_name: x})
            tally.seconds += time.perf_counter() - t0
            outputs[name] = {k: v[: len(batch)] for k, v in result.items() if k in (OUTPUT_NAME, LABELS_NAME)}
        return outputs

    def _score(self, batch: List[Decoded], outputs: Dict[str, Dict[str, np.ndarray]]) -> None:
        """The metric thread: labels at each label's size, confusion matrices, pairs, saved predictions."""
        for i, decoded in enumerate(batch):
            predicted = {}
            for tally in self.backends:
                tally.count_nonfinite(outputs[tally.backend][OUTPUT_NAME][i])
                labels = self._labels(outputs[tally.backend], i, decoded.label.shape)
                predicted[tally.backend] = labels
                tally.confusion.add(decoded.label, labels)
                if self.options.save_predictions is not None:
                    folder = Path(self.options.save_predictions) / tally.backend
                    save_picture(folder / f"{_safe(decoded.sample.name)}.png", labels.astype(np.uint8))
            for pair in self.pairs:
                pair.add(decoded.sample.name, predicted[pair.reference], predicted[pair.candidate], self._draw)

    def _labels(self, result: Dict[str, np.ndarray], i: int, size: Tuple[int, int]) -> np.ndarray:
        """Picture i's labels at `size`: the graph's own resize + argmax where it has one at that
        size, else the host's; NO_LABEL where they come from NaN or infinite logits."""
        logits = result[OUTPUT_NAME][i : i + 1]
        if self.graph_labels and LABELS_NAME in result and tuple(size) == tuple(self.resolution):
            labels = result[LABELS_NAME][i]
            unknown = processing.unlabelled(logits, size)
            return labels if unknown is None else np.where(unknown[0], NO_LABEL, labels)
        return processing.labels(logits, size, threads=HOST_THREADS, no_label=NO_LABEL)[0]

    def _draw(self, ref: np.ndarray, cand: np.ndarray) -> np.ndarray:
        return keep_labels(ref, cand)  # drawn when the report is written (pictures.write_disagreement)

    # --- the report ----------------------------------------------------------------------------
    def _report(self) -> EvaluateReport:
        """The record from the tallies; report.json, report.md, junit.xml and the pictures written."""
        if self.done == 0:  # no report is written: the line itself names the bad files
            shown = "; ".join(one_line_text(f"{s.image}: {s.problem}", 240) for s in self.skipped[:SKIPPED_SHOWN])
            more = f"; and {len(self.skipped) - SKIPPED_SHOWN} more" if len(self.skipped) > SKIPPED_SHOWN else ""
            raise BadInput(
                f"--data {self.options.data}: no picture could be evaluated, all {len(self.skipped)} were bad "
                f"({shown}{more})",
                "fix or remove those files",
            )
        gate = self.options.max_miou_drop
        reference = next(t for t in self.backends if t.backend == self.against)
        reference_miou = reference.confusion.miou()
        names = self.classes.names if self.classes else None
        backends = []
        for tally in self.backends:
            drop = passed = None
            if tally.backend != self.against:
                miou = tally.confusion.miou()
                drop = None if miou is None or reference_miou is None else 100.0 * (reference_miou - miou)
                passed = None if gate is None else (drop is not None and drop <= gate)
            if tally.nonfinite_pixels:  # with or without --max-miou-drop, the reference too
                passed = False
            backends.append(tally.result(names, drop, passed))
        notes = list(self.notes)
        if self.skipped:
            notes.append(f"{len(self.skipped)} bad picture(s) skipped (--skip-bad); listed under 'skipped'")
        absent = [c for c, v in enumerate(reference.confusion.iou()) if v is None]
        if absent:
            notes.append(
                f"{len(absent)} class(es) appear in neither the labels nor the predictions and are left out of the "
                f"mean: {absent[:10]}"
            )
        files_of = {s.name: s.image for s in self.samples}
        for pair in self.pairs:
            pair.save_pictures(self.report_dir / "disagreement", self.colours, names, files_of)
        report = EvaluateReport(
            passed=all(b.passed is not False for b in backends),
            artifact=ArtifactSummary.of(self.artifact, self.resolution, self.batch, self.num_classes),
            dataset=DatasetSummary(**self.dataset.describe(), evaluated=self.done),
            protocol=Protocol(input_resolution=list(self.resolution), **self.protocol),
            against=self.against,
            max_miou_drop_points=gate,
            images=self.done,
            seconds=round(self.seconds, 3),
            images_per_second=self.done / self.seconds if self.seconds > 0 else None,
            backends=backends,
            pairs=[p.result() for p in self.pairs],
            skipped=list(self.skipped),
            notes=notes,
        )
        write_reports(report, self.report_dir, self.options.junit)
        return report


def evaluate(options: EvaluateOptions, on_progress: Optional[Callable[[int, int], None]] = None) -> EvaluateReport:
    """Run the evaluation and write its report (report.json, report.md, junit.xml, pictures)."""
    return Evaluation(options, on_progress).run()
