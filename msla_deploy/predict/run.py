"""`predict`: pictures -> label PNG, colour PNG and overlay PNG per picture, torch-free.

    pictures (files, folders) -> Segmenter (upstream pre/postprocessing) -> three PNGs each

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

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from ..artifact.files import write_bytes_atomic
from ..artifact.outputs import OutputGuard, guard_for
from ..artifact.resolve import resolve
from ..drawing import png_bytes
from ..errors import BadInput
from ..records import Record
from ..runtime.segmenter import RandomWeightsWarning, Segmentation, Segmenter, decode

# what a folder is scanned for (lower-case suffixes Pillow reads)
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
# per picture: <stem> + suffix
OUTPUT_SUFFIXES = {"labels": "_labels.png", "color": "_color.png", "overlay": "_overlay.png"}


@dataclass
class PredictOptions:
    artifact: Path
    inputs: Sequence[Path]
    out: Path
    backend: str = "auto"
    label_ids: bool = False  # Cityscapes label ids in the label PNG instead of train ids
    strict: bool = False
    overwrite: bool = False
    alpha: float = 0.5
    threads: Optional[int] = None


@dataclass
class Job:
    source: Path
    stem: Path  # output path without suffix, relative to the output directory

    def outputs(self, out: Path) -> Dict[str, Path]:
        return {kind: out / (str(self.stem) + suffix) for kind, suffix in OUTPUT_SUFFIXES.items()}


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
class PredictResult:
    report: PredictReport
    written: List[Path] = field(default_factory=list)

    @property
    def nonfinite_pictures(self) -> List[PredictedPicture]:
        """The pictures some of whose labels came from NaN/Inf logits."""
        return [p for p in self.report.pictures if p.nonfinite]

    @property
    def passed(self) -> bool:
        return not self.nonfinite_pictures


def collect_jobs(inputs: Sequence[Path]) -> List[Job]:
    """Files as given (output named after the file's stem); folders scanned recursively for
    pictures (outputs mirror the path below the folder). Sorted, so runs are reproducible."""
    jobs: List[Job] = []
    for given in inputs:
        path = Path(given)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in PICTURE_SUFFIXES)
            if not found:
                raise BadInput(
                    f"the folder {path} holds no pictures ({', '.join(PICTURE_SUFFIXES)})",
                    "pass a folder of pictures or picture files",
                )
            jobs += [Job(p, p.relative_to(path).with_suffix("")) for p in found]
        elif path.is_file():
            jobs.append(Job(path, Path(path.stem)))
        else:
            raise BadInput(f"{path}: no such file or folder", "pass picture files or folders of pictures")
    if not jobs:
        raise BadInput("no pictures given", "pass picture files or folders")
    seen: Dict[Path, Path] = {}
    for job in jobs:
        if job.stem in seen:
            raise BadInput(
                f"{seen[job.stem]} and {job.source} would both write {job.stem}{OUTPUT_SUFFIXES['labels']}",
                "rename one, or predict them into different --out folders",
            )
        seen[job.stem] = job.source
    return jobs


def check_outputs(jobs: Sequence[Job], out: Path, overwrite: bool, guard: Optional[OutputGuard] = None) -> None:
    """Refuse (before anything is written) outputs the guard refuses (into the artifact, onto or
    inside an input: with `overwrite` or not), an output that is an input picture, and without
    `overwrite` any output that exists."""
    if guard is not None:
        guard.check(out, "--out")
        folders = {path.parent for job in jobs for path in job.outputs(out).values()} - {out}
        for folder in sorted(folders):  # a folder input's layout, mirrored below --out
            guard.check(folder, "--out")
    sources = {os.path.realpath(job.source): job.source for job in jobs}
    for job in jobs:
        for path in job.outputs(out).values():
            if os.path.realpath(path) in sources:
                raise BadInput(
                    f"--out {out}: {path} would replace the input picture {sources[os.path.realpath(path)]}",
                    "predict into another --out folder",
                )
    if out.exists() and not out.is_dir():
        raise BadInput(f"--out {out} is a file", "pass a folder (it is created if missing)")
    if overwrite:
        return
    for job in jobs:
        for path in job.outputs(out).values():
            if path.exists():
                raise BadInput(
                    f"{path} exists (from an earlier run?)", "pass --overwrite to replace it, or another --out folder"
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
) -> PredictResult:
    """Predict every picture; `on_picture(done, total, source)` after each, `warn(message)` for skips."""
    if not 0.0 <= options.alpha <= 1.0:
        raise BadInput(f"--alpha {options.alpha} is outside 0..1", "use e.g. 0.5")
    jobs = collect_jobs(options.inputs)
    out = Path(options.out)
    artifact = resolve(Path(options.artifact))
    check_outputs(jobs, out, options.overwrite, guard_for(artifact, inputs=options.inputs))
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
    if on_picture:
        on_picture(0, len(jobs), jobs[0].source)
    with segmenter:
        for index, job in enumerate(jobs):
            try:
                picture = decode(job.source)
            except BadInput as exc:
                if options.strict:
                    raise BadInput(
                        f"{exc.problem} (--strict: stopped; {len(pictures)} picture(s) before it were written)", exc.fix
                    ) from None
                skipped.append({"input": str(job.source), "error": exc.problem})
                if warn:
                    warn(f"skipped {job.source}: {exc.problem}")
            else:
                result = segmenter(picture)
                files = job.outputs(out)
                content = {
                    "labels": png_bytes(label_picture(result, options.label_ids)),
                    "color": png_bytes(result.colorize()),
                    "overlay": png_bytes(result.overlay(options.alpha)),
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
            if on_picture:
                on_picture(index + 1, len(jobs), job.source)
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
