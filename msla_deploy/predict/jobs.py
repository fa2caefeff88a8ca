"""What `predict` works on, for any task: its options, the pictures named (files, folders scanned
recursively) and decoded one by one, the files each one writes below --out, and the checks made
before the first file is written.

A task's predictor (predict/run.py for segmentation, predict/classify.py for classification)
names its per-picture outputs as suffixes of the picture's stem (`OutputSuffixes`); everything
else about where files go is here, the same for every task.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from ..artifact.outputs import OutputGuard
from ..errors import BadInput
from ..runtime.segmenter import Picture, decode
from ..tasks import OVERLAY_ALPHA

# what a folder is scanned for (lower-case suffixes Pillow reads)
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")

#: output kind -> suffix added to the picture's stem ("labels" -> "_labels.png")
OutputSuffixes = Mapping[str, str]


@dataclass
class PredictOptions:
    artifact: Path
    inputs: Sequence[Path]
    out: Optional[Path] = None  # segmentation: required; classification: the charts' folder, if any
    backend: str = "auto"
    label_ids: bool = False  # Cityscapes label ids in the label PNG instead of train ids
    strict: bool = False
    overwrite: bool = False
    alpha: Optional[float] = None  # overlays' colour weight (None: OVERLAY_ALPHA); not for classifiers
    threads: Optional[int] = None
    top_k: Optional[int] = None  # classification: classes per picture (None: tasks.TOPK)
    labels: Optional[Path] = None  # classification: a file of class names, one a line
    prompts: Optional[Path] = None  # SAM: the prompts file (predict/sam.py)
    multimask: bool = False  # SAM: three masks per prompt, the best-scored one kept
    everything: bool = False  # SAM: segment-everything (predict/sam_everything.py), no prompts
    #: SAM --everything: the generator's parameters given (name -> value; None or absent: the default)
    everything_options: Optional[Dict[str, Any]] = None

    @property
    def overlay_alpha(self) -> float:
        return OVERLAY_ALPHA if self.alpha is None else self.alpha


@dataclass
class Job:
    source: Path
    stem: Path  # output path without suffix, relative to the output directory

    def outputs(self, out: Path, suffixes: OutputSuffixes) -> Dict[str, Path]:
        return {kind: out / (str(self.stem) + suffix) for kind, suffix in suffixes.items()}


def collect_jobs(inputs: Sequence[Path], suffixes: Optional[OutputSuffixes] = None) -> List[Job]:
    """Files as given (output named after the file's stem); folders scanned recursively for
    pictures (outputs mirror the path below the folder). Sorted, so runs are reproducible. With
    `suffixes` (files will be written), two pictures whose outputs would share a name are refused."""
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
    if suffixes:
        first = next(iter(suffixes.values()))
        seen: Dict[Path, Path] = {}
        for job in jobs:
            if job.stem in seen:
                raise BadInput(
                    f"{seen[job.stem]} and {job.source} would both write {job.stem}{first}",
                    "rename one, or predict them into different --out folders",
                )
            seen[job.stem] = job.source
    return jobs


def check_outputs(
    jobs: Sequence[Job],
    out: Path,
    overwrite: bool,
    guard: Optional[OutputGuard],
    suffixes: OutputSuffixes,
) -> None:
    """Refuse (before anything is written) outputs the guard refuses (into the artifact, onto or
    inside an input: with `overwrite` or not), an output that is an input picture, and without
    `overwrite` any output that exists."""
    if guard is not None:
        guard.check(out, "--out")
        folders = {path.parent for job in jobs for path in job.outputs(out, suffixes).values()} - {out}
        for folder in sorted(folders):  # a folder input's layout, mirrored below --out
            guard.check(folder, "--out")
    sources = {os.path.realpath(job.source): job.source for job in jobs}
    for job in jobs:
        for path in job.outputs(out, suffixes).values():
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
        for path in job.outputs(out, suffixes).values():
            if path.exists():
                raise BadInput(
                    f"{path} exists (from an earlier run?)", "pass --overwrite to replace it, or another --out folder"
                )


def decoded_pictures(
    jobs: Sequence[Job],
    skipped: List[Dict[str, str]],
    *,
    strict: bool,
    done: str = "written",
    warn: Optional[Callable[[str], None]] = None,
    on_picture: Optional[Callable[[int, int, Path], None]] = None,
) -> Iterator[Tuple[Job, Picture]]:
    """Each job's decoded picture, in order. An unreadable picture (or one with no fixed white
    level) is recorded in `skipped` and warned about, or with `strict` stops the run (the pictures
    before it are `done`). `on_picture(done, total, source)` before the first and after each."""
    if on_picture:
        on_picture(0, len(jobs), jobs[0].source)
    for index, job in enumerate(jobs):
        try:
            picture = decode(job.source)
        except BadInput as exc:
            if strict:
                raise BadInput(
                    f"{exc.problem} (--strict: stopped; {index} picture(s) before it were {done})", exc.fix
                ) from None
            skipped.append({"input": str(job.source), "error": exc.problem})
            if warn:
                # most decode problems already start with the path: do not say it twice
                named = exc.problem.startswith(str(job.source))
                warn(f"skipped {exc.problem}" if named else f"skipped {job.source}: {exc.problem}")
        else:
            yield job, picture
        if on_picture:
            on_picture(index + 1, len(jobs), job.source)


@dataclass
class PredictRun:
    """What a predict run of any task gives back: its report (whose pictures say whether the model
    gave them NaN/Inf) and the files written. A task's result says what NaN/Inf cost it (`_failure`)."""

    report: Any
    written: List[Path] = field(default_factory=list)

    @property
    def nonfinite_pictures(self) -> list:
        """The pictures whose answers came from non-finite (NaN/Inf) model outputs."""
        return [p for p in self.report.pictures if p.nonfinite]

    @property
    def passed(self) -> bool:
        return not self.nonfinite_pictures

    def failure(self) -> Optional[str]:
        """What makes the run fail (exit 1), in one line; None for a run that passed."""
        bad = self.nonfinite_pictures
        return self._failure(bad) if bad else None

    def _failure(self, bad: list) -> str:
        raise NotImplementedError
