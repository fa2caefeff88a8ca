"""`evaluate`: mIoU of a deployed model on a labelled dataset, upstream's protocol, several
backends in one pass.

    pictures -> [reader threads] decode, check, preprocess -> [this thread] every backend runs
    the batch -> [metric thread] bicubic upsample + argmax to the label size, confusion
    matrices, disagreement between backends, saved predictions

Each picture is decoded once for all backends; decoding, resizing and the metric overlap with
inference (ONNX Runtime, TensorRT and PyTorch release the GIL while they compute), on threads of
the lowest priority so that they use the cores a CPU backend leaves idle rather than slow it. At
most a few batches are in flight, so memory stays bounded. An artifact whose graph has its own
bicubic labels output (export --head both) is scored from it where a label has the input size.
"""

from __future__ import annotations

import heapq
import os
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from .. import runtime
from ..artifact.names import EVALUATION_DIR, LABELS_NAME, OUTPUT_NAME
from ..artifact.resolve import Artifact, resolve
from ..classes import IGNORE_INDEX, dataset_for, palette
from ..drawing import save_picture
from ..errors import BadInput
from ..runtime import processing
from .datasets import Dataset, Sample, find_dataset, picture_size, read_pair
from .metrics import Confusion
from .pictures import keep_labels, write_disagreement
from .report import write_reports

WORST_IMAGES = 10  # disagreeing images listed per backend pair
WORST_PICTURES = 3  # of which a picture is drawn
READERS = 2
IN_FLIGHT = 2  # batches waiting for the metric thread
# The host graphs (preprocess, upsample + argmax) run on one ONNX Runtime thread each: the
# readers and the metric thread are the host's parallelism, and extra pools beside the model's
# would only take turns with it for the same cores.
HOST_THREADS = 1
# The readers and the metric thread run at the lowest priority (Linux: per thread), so that on a
# CPU backend they take the cores the model leaves idle between its parallel sections instead of
# delaying it; they cannot starve for long, since the model waits for their pictures. On 2 quiet
# cores at 1024x2048 (benchmarks/README.md) that is the difference between 0.7x and 0.9-1.0x of
# bench's images/s (+10: 0.90-0.95x, +19: 0.97-1.02x); with the cores shared by other programs
# the figures scatter too widely to rank the two (bench alone moves by 25% between runs).
HOST_NICENESS = 19  # added to the thread's niceness (19 at most)


def _lower_priority() -> None:
    if not sys.platform.startswith("linux"):  # elsewhere PRIO_PROCESS takes a process id, not a thread's
        return
    try:
        thread = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, thread, min(19, os.getpriority(os.PRIO_PROCESS, thread) + HOST_NICENESS))
    except OSError:  # a sandbox that forbids it: the threads keep the process's priority
        pass


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
        if self.limit is not None and self.limit < 1:
            raise BadInput(f"--limit {self.limit}: must be at least 1", "give the number of pictures to evaluate")
        if self.max_miou_drop is not None and not self.max_miou_drop >= 0:
            raise BadInput(f"--max-miou-drop {self.max_miou_drop}: must be >= 0 (points of mIoU)", "for example --max-miou-drop 0.3")
        if len(set(self.backends)) != len(self.backends):
            raise BadInput(f"--backend given twice ({', '.join(self.backends)})", "name each backend once")
        if not 0 <= self.ignore_index <= 255:
            raise BadInput(f"--ignore-index {self.ignore_index}: label PNGs hold 0-255", "for example --ignore-index 255")


@dataclass
class BackendScore:
    backend: str
    describe: Dict
    confusion: Confusion
    seconds: float = 0.0  # inference time of this backend alone
    drop: Optional[float] = None  # points of mIoU lost against the reference backend
    passed: Optional[bool] = None

    def to_dict(self, names) -> Dict:
        miou = self.confusion.miou()
        return {
            "backend": self.backend,
            "ran": self.describe,
            "miou": miou,
            "pixel_accuracy": self.confusion.pixel_accuracy(),
            "miou_drop_points": self.drop,
            "passed": self.passed,
            "inference_s": round(self.seconds, 3),
            "class_iou": self.confusion.class_table(names),
        }


@dataclass
class PairScore:
    reference: str
    candidate: str
    confusion: Confusion  # reference's labels as the truth, every pixel
    worst: List[Tuple[float, str]] = field(default_factory=list)  # min-heap of (disagreement, image)
    pictures: Dict[str, str] = field(default_factory=dict)  # image -> picture file
    drawn: Dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # the worst few's labels (pictures.keep_labels), until drawn

    def to_dict(self) -> Dict:
        m = self.confusion.matrix
        total = int(m.sum())
        return {
            "reference": self.reference,
            "candidate": self.candidate,
            "miou": self.confusion.miou(),
            "agreement": float(np.trace(m) / total) if total else None,
            "worst_images": [{"image": name, "disagreement": d, "picture": self.pictures.get(name)} for d, name in sorted(self.worst, reverse=True)],
        }


@dataclass
class EvaluateResult:
    artifact: Dict
    dataset: Dict
    protocol: Dict
    against: str
    backends: List[BackendScore]
    pairs: List[PairScore]
    skipped: List[Dict]
    notes: List[str]
    max_miou_drop: Optional[float]
    images: int
    seconds: float
    class_names: Optional[Tuple[str, ...]]
    files: Dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(b.passed is not False for b in self.backends)

    @property
    def images_per_second(self) -> Optional[float]:
        return self.images / self.seconds if self.seconds > 0 else None

    def to_dict(self) -> Dict:
        return {
            "passed": self.passed,
            "artifact": self.artifact,
            "dataset": self.dataset,
            "protocol": self.protocol,
            "against": self.against,
            "max_miou_drop_points": self.max_miou_drop,
            "images": self.images,
            "seconds": round(self.seconds, 3),
            "images_per_second": self.images_per_second,
            "backends": [b.to_dict(self.class_names) for b in self.backends],
            "pairs": [p.to_dict() for p in self.pairs],
            "skipped": self.skipped,
            "notes": self.notes,
            "files": self.files,
        }


def _order_backends(options: EvaluateOptions) -> Tuple[List[str], str]:
    names = list(options.backends)
    against = options.against or ("torch" if "torch" in names else names[0])
    if against not in names:
        names.insert(0, against)
    return names, against


def _protocol(artifact: Artifact, dataset: Dataset, resolution: Tuple[int, int]) -> Tuple[Dict, List[str]]:
    notes = []
    h, w = resolution
    if dataset.kind == "ade20k":
        notes.append(
            f"ADE20K: upstream resizes each picture to short side 512 (long side a multiple of 32); "
            f"a static artifact is evaluated at its own resolution, {h}x{w}, so the figure is not upstream's protocol"
        )
    elif dataset.kind == "cityscapes" and (h, w) != (1024, 2048):
        notes.append(f"Cityscapes: upstream evaluates at 1024x2048; this artifact takes {h}x{w}, so pictures are resized to it")
    protocol = {
        "input_resolution": [h, w],
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


def evaluate(options: EvaluateOptions, on_progress: Optional[Callable[[int, int], None]] = None) -> EvaluateResult:
    """Run the evaluation and write its report (report.json, report.md, junit.xml, pictures)."""
    options.check()
    artifact = resolve(Path(options.artifact))
    report_dir = Path(options.report_dir) if options.report_dir else artifact.default_report_dir(EVALUATION_DIR)
    if report_dir.exists() and not report_dir.is_dir():
        raise BadInput(f"--report-dir {report_dir} is a file", "pass a directory (it is created if missing)")
    resolution, num_classes = artifact.resolution, artifact.num_classes
    if artifact.outputs and OUTPUT_NAME not in {o.name for o in artifact.outputs}:
        raise BadInput(f"{artifact.path} has no {OUTPUT_NAME!r} output (a --head labels export): upstream's protocol upsamples the logits to each label's size",
                       "evaluate an export made with --head logits or --head both")
    if resolution is None or num_classes is None:
        raise BadInput(f"{artifact.path}: no static input resolution or class count", "evaluate an export directory or a static segmentation ONNX")
    dataset = find_dataset(options.data, options.dataset, num_classes, options.ignore_index)
    samples = dataset.samples[: options.limit] if options.limit else dataset.samples
    names, against = _order_backends(options)
    chosen = [runtime.choose(n, artifact, command="evaluate") for n in names]
    for backend in chosen:
        runtime.preflight(backend)  # a missing runtime exits 3 before any session loads
    classes = dataset_for(artifact.model_name or "", num_classes)
    colours = palette(num_classes, artifact.model_name or "")
    protocol, notes = _protocol(artifact, dataset, resolution)

    sessions = []
    try:
        for name, backend in zip(names, chosen):
            sessions.append((name, runtime.open(artifact, backend, threads=options.threads, command="evaluate")))
        batch = sessions[0][1].group  # a dynamic batch runs full groups of its largest batch
        input_name = next(iter(sessions[0][1].inputs))
        scores = {name: BackendScore(name, session.describe(), Confusion(num_classes)) for name, session in sessions}
        graph_labels = _graph_labels_follow_the_protocol(artifact) and any(LABELS_NAME in session.outputs for _, session in sessions)
        if graph_labels:
            protocol["labels"] = (f"the artifact's own labels output (its bicubic resize + argmax) where a label is {resolution[0]}x{resolution[1]}; "
                                  f"elsewhere {protocol['labels']}")
        pairs = [PairScore(against, name, Confusion(num_classes)) for name, _ in sessions if name != against]
        skipped: List[Dict] = []

        def load(sample: Sample):
            try:
                pixels, label = read_pair(dataset, sample)
            except BadInput as exc:
                if not options.skip_bad:
                    raise
                return sample, None, None, exc.one_line()
            return sample, processing.preprocess(pixels, resolution, threads=HOST_THREADS), label, None

        def score(batch_items, outputs: Dict[str, Dict[str, np.ndarray]]) -> None:
            for i, (sample, label) in enumerate(batch_items):
                predicted = {}
                for name, result in outputs.items():
                    if graph_labels and LABELS_NAME in result and label.shape == tuple(resolution):
                        labels = result[LABELS_NAME][i]  # the graph's own resize + argmax, at the label size
                    else:
                        labels = processing.labels(result[OUTPUT_NAME][i : i + 1], label.shape, threads=HOST_THREADS)[0]
                    predicted[name] = labels
                    scores[name].confusion.add(label, labels)
                    if options.save_predictions is not None:
                        save_picture(Path(options.save_predictions) / name / f"{_safe(sample.name)}.png", labels.astype(np.uint8))
                for pair in pairs:
                    ref, cand = predicted[pair.reference], predicted[pair.candidate]
                    pair.confusion.add(ref, cand)
                    differs = float(np.mean(ref != cand))
                    entry = (differs, sample.name)
                    if len(pair.worst) < WORST_IMAGES:
                        heapq.heappush(pair.worst, entry)
                    elif entry > pair.worst[0]:
                        heapq.heapreplace(pair.worst, entry)
                    else:
                        continue
                    if differs > 0:
                        _keep_picture(pair, sample.name, differs, ref, cand)

        def _keep_picture(pair: PairScore, image: str, differs: float, ref, cand) -> None:
            # drawn now, written with the report: a run stopped by bad input leaves no pictures behind
            ranked = sorted(pair.worst, reverse=True)[:WORST_PICTURES]
            if (differs, image) not in ranked:
                return
            pair.drawn[image] = keep_labels(ref, cand)
            keep = {name for _, name in ranked}
            for name in [n for n in pair.drawn if n not in keep]:  # fell out of the worst few
                del pair.drawn[name]

        if samples:
            _build_host_graphs(samples[0], resolution, sessions, graph_labels)
        start = time.perf_counter()
        done = 0
        with ThreadPoolExecutor(READERS, thread_name_prefix="evaluate-read", initializer=_lower_priority) as readers, \
                ThreadPoolExecutor(1, thread_name_prefix="evaluate-metric", initializer=_lower_priority) as metric:
            pending_reads: List[Future] = [readers.submit(load, s) for s in samples[: READERS * batch * 2]]
            next_read = len(pending_reads)
            pending_scores: List[Future] = []
            items: List[Tuple[Sample, np.ndarray]] = []
            inputs: List[np.ndarray] = []

            def flush() -> None:
                nonlocal done
                if not items:
                    return
                # pad the last batch; one picture is fed as it is (a concatenation would copy it)
                x = inputs[0] if batch == 1 else np.concatenate(inputs + [inputs[-1]] * (batch - len(inputs)), axis=0)
                outputs = {}
                for name, session in sessions:
                    t0 = time.perf_counter()
                    result = session.run({input_name: x})
                    scores[name].seconds += time.perf_counter() - t0
                    outputs[name] = {k: v[: len(items)] for k, v in result.items() if k in (OUTPUT_NAME, LABELS_NAME)}
                while len(pending_scores) >= IN_FLIGHT:
                    pending_scores.pop(0).result()
                pending_scores.append(metric.submit(score, list(items), outputs))
                done += len(items)
                items.clear()
                inputs.clear()
                if on_progress:
                    on_progress(done + len(skipped), len(samples))

            while pending_reads:
                sample, x, label, problem = pending_reads.pop(0).result()
                if next_read < len(samples):
                    pending_reads.append(readers.submit(load, samples[next_read]))
                    next_read += 1
                if problem is not None:
                    skipped.append({"image": sample.name, "problem": problem})
                    continue
                items.append((sample, label))
                inputs.append(x)
                if len(items) == batch:
                    flush()
            flush()
            for future in pending_scores:
                future.result()
        seconds = time.perf_counter() - start
    finally:
        for _, session in sessions:
            session.close()

    if done == 0:
        raise BadInput(
            f"--data {options.data}: no picture could be evaluated ({len(skipped)} skipped as bad)", "fix the dataset; the report lists the bad files"
        )
    reference_miou = scores[against].confusion.miou()
    for name, s in scores.items():
        if name == against:
            continue
        miou = s.confusion.miou()
        s.drop = None if miou is None or reference_miou is None else 100.0 * (reference_miou - miou)
        if options.max_miou_drop is not None:
            s.passed = s.drop is not None and s.drop <= options.max_miou_drop
    if skipped:
        notes.append(f"{len(skipped)} bad picture(s) skipped (--skip-bad); listed under 'skipped'")
    absent = [c for c, v in enumerate(scores[against].confusion.iou()) if v is None]
    if absent:
        notes.append(f"{len(absent)} class(es) appear in neither the labels nor the predictions and are left out of the mean: {absent[:10]}")
    art = {
        "path": str(artifact.path),
        "name": artifact.name,
        "model": artifact.model_name,
        "precision": artifact.precision,
        "resolution": list(resolution),
        "batch": batch,
        "num_classes": num_classes,
    }
    result = EvaluateResult(
        art,
        {**dataset.describe(), "evaluated": done},
        protocol,
        against,
        [scores[n] for n, _ in sessions],
        pairs,
        skipped,
        notes,
        options.max_miou_drop,
        done,
        seconds,
        classes.names if classes else None,
    )
    files_of = {s.name: s.image for s in samples}
    for pair in pairs:
        for image, labels in pair.drawn.items():
            file = report_dir / "disagreement" / f"{_safe(pair.candidate)}-vs-{_safe(pair.reference)}-{_safe(image)}.png"
            write_disagreement(file, labels, pair.reference, pair.candidate, image, colours, classes.names if classes else None, files_of.get(image))
            pair.pictures[image] = str(file)
        pair.drawn.clear()
    result.files = write_reports(result.to_dict(), report_dir, options.junit)
    return result
