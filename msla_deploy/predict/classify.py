"""`predict` for a classification artifact: the k best classes of each picture, torch-free.

    pictures (files, folders) -> Classifier (upstream's ImageNet transform) -> top-k (index, name, probability)

The answer is printed (a table per picture, or --json: a `ClassifyReport`); with --out, a chart
per picture is written too, `<stem>_classes.png`: the picture beside its top-k bar chart. Every
check that can be made before running is made before the first picture: --top-k against what
the artifact can answer (a topk head gives its k classes only), the --labels file, and with --out
the same output checks as segmentation's (predict/jobs.py). An unreadable picture is reported and
skipped, or with --strict stops the run. A picture whose scores hold NaN/Inf has a ranking that
means nothing: the run fails (exit 1), its answers reported all the same.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Dict, List, Optional

from ..artifact.files import write_bytes_atomic
from ..artifact.outputs import guard_for
from ..drawing import png_bytes
from ..errors import BadInput
from ..records import Record
from ..runtime.classifier import Classification, Classifier
from ..runtime.segmenter import RandomWeightsWarning
from ..tasks import CLASSIFICATION
from .jobs import PredictOptions, PredictRun, check_outputs, collect_jobs, decoded_pictures

# per picture, with --out: <stem> + suffix
CHART_SUFFIXES = {"chart": "_classes.png"}
#: the chart's picture is shown this tall (pictures are resized to it, keeping their aspect)
CHART_PICTURE_HEIGHT = 224


@dataclass
class RankedClass:
    rank: int  # 1 = best
    index: int
    name: str
    probability: float


@dataclass
class ClassifiedPicture:
    input: str
    size: List[int]  # [H, W] of the picture as given
    top: List[RankedClass]
    nonfinite: int  # NaN/Inf values among the model's scores for it (its ranking then means nothing)
    file: Optional[str] = None  # the chart picture, with --out


@dataclass
class ClassifyReport(Record):
    """What `predict --json` prints for a classifier: where it ran, the weights' source, each picture's top-k."""

    KIND = "msla-deploy/predict-classification"

    artifact: str
    runtime: Dict[str, Any]  # the session's description (with head, resolution, class_names)
    weights_source: Optional[str]
    weights_warning: Optional[str]
    head: str  # logits | probs | topk: what the graph gives
    top_k: int
    class_names: str  # where the names came from: imagenet-1k, "labels file PATH", class indices
    out: Optional[str] = None  # the charts' folder (None: no --out, nothing written)
    pictures: List[ClassifiedPicture] = field(default_factory=list)
    skipped: List[Dict[str, str]] = field(default_factory=list)  # {input, error}


@dataclass
class ClassifyResult(PredictRun):
    task: ClassVar[str] = CLASSIFICATION

    def _failure(self, bad: list) -> str:
        return (
            f"{len(bad)} of {len(self.report.pictures)} picture(s) got NaN/Inf scores from the model (first: "
            f"{bad[0].input}); their classes mean nothing (validate the artifact)"
        )


def chart(picture_name: str, result: Classification, names_from: str):
    """The picture beside its top-k bar chart (a PIL image)."""
    from ..drawing import bars, figure, panel, stack

    h, w = result.image.shape[:2]
    size = (max(1, round(w * CHART_PICTURE_HEIGHT / h)), CHART_PICTURE_HEIGHT)
    rows = [(f"{s.name} ({s.index})", s.probability) for s in result.top]
    caption = f"top {len(result.top)}: probability"
    return figure(
        f"{picture_name}: {result.best.name}",
        [stack([panel(result.image, f"{w}x{h}", size, smooth=True), bars(rows, caption)], gap=18, horizontal=True)],
        subtitle=f"class names: {names_from}",
    )


def classify(
    artifact,
    options: PredictOptions,
    on_picture: Optional[Callable[[int, int, Path], None]] = None,
    warn: Optional[Callable[[str], None]] = None,
) -> ClassifyResult:
    """Classification: the top-k classes of every picture, and with --out a chart per picture."""
    if options.label_ids:
        raise BadInput(
            f"--label-ids is for Cityscapes segmentation models; {options.artifact} is a classifier",
            "leave --label-ids out",
        )
    if options.alpha is not None:
        raise BadInput(
            f"--alpha weighs overlays; a classifier's chart has none ({options.artifact})", "leave --alpha out"
        )
    out = Path(options.out) if options.out is not None else None
    jobs = collect_jobs(options.inputs, CHART_SUFFIXES if out is not None else None)
    if out is not None:
        check_outputs(jobs, out, options.overwrite, guard_for(artifact, inputs=options.inputs), CHART_SUFFIXES)
    with warnings.catch_warnings():  # random weights: the report and its header say so, louder
        warnings.simplefilter("ignore", RandomWeightsWarning)
        classifier = Classifier(artifact, options.backend, threads=options.threads, labels=options.labels)
    pictures: List[ClassifiedPicture] = []
    skipped: List[Dict[str, str]] = []
    written: List[Path] = []
    with classifier:
        top_k = classifier.check_top_k(options.top_k, "--top-k")
        done = "classified" if out is None else "classified and drawn"
        for job, picture in decoded_pictures(
            jobs, skipped, strict=options.strict, done=done, warn=warn, on_picture=on_picture
        ):
            result = classifier(picture, top_k)
            file = None
            if out is not None:
                file = job.outputs(out, CHART_SUFFIXES)["chart"]
                write_bytes_atomic(file, png_bytes(chart(job.source.name, result, classifier.names_from)))
                written.append(file)
            pictures.append(
                ClassifiedPicture(
                    input=str(job.source),
                    size=[int(d) for d in result.image.shape[:2]],
                    top=[RankedClass(r + 1, s.index, s.name, s.probability) for r, s in enumerate(result.top)],
                    nonfinite=result.nonfinite,
                    file=None if file is None else str(file),
                )
            )
        described = classifier.describe()
    report = ClassifyReport(
        artifact=str(options.artifact),
        runtime=described,
        weights_source=classifier.weights_source,
        weights_warning=classifier.weights_warning,
        head=classifier.head,
        top_k=top_k,
        class_names=classifier.names_from,
        out=None if out is None else str(out),
        pictures=pictures,
        skipped=skipped,
    )
    return ClassifyResult(report, written)
