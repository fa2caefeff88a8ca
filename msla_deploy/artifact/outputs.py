"""Where a command may write: one guard for every flag that names an output.

A command reads an artifact (its manifest, model, reference bundle, engines) and inputs (pictures,
a dataset, a reference folder), and writes reports, pictures, predictions or a model repository.
Every output a user names (`--out`, `--report-dir`, `--junit`, `--plot`, `--save-predictions`,
package's repository) passes `OutputGuard.check` before anything is written, which refuses
(BadInput, exit 2, nothing written):
- a path onto the artifact's own files, or the artifact directory itself;
- a path onto an input being read, or a folder inside one (its outputs would be read back as
  inputs, and an input picture could be replaced);
- a path that goes through a symbolic link leaving the place it claims to be in: a `validation`
  link shipped inside an artifact that points elsewhere, a model folder of a repository that
  links out of it. What the path names is where it writes, or it is refused.
torch-free.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, List, Optional

from ..errors import BadInput
from .staging import protected_paths


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def escaping_link(path: Path, home: Path) -> Optional[Path]:
    """The first symbolic link on `path`, at or below `home`, that resolves outside `home`
    (None when there is none). `path` is taken as named, below `home` as named."""
    path, home = Path(os.path.abspath(path)), Path(os.path.abspath(home))
    if not _inside(path, home):
        return None
    real_home = _real(home)
    current = home
    for part in path.relative_to(home).parts:
        current = current / part
        if current.is_symlink() and not _inside(_real(current), real_home):
            return current
        if not current.exists():
            break
    return None


@dataclass
class OutputGuard:
    """What a command reads: its artifact directory (None for a bare file) and its inputs."""

    artifact_dir: Optional[Path] = None
    inputs: List[Path] = field(default_factory=list)
    artifact_files: List[Path] = field(default_factory=list)  # read files outside any directory (a bare .onnx)

    def reading(self, *paths: Path) -> "OutputGuard":
        self.inputs += [Path(p) for p in paths]
        return self

    def check(self, path: Path, flag: str) -> Path:
        """`path` if `flag` may write there (a file or a folder), else BadInput naming both."""
        path = Path(path)
        where = _real(path)
        fix = "write it elsewhere: a path outside the artifact and the inputs"
        if self.artifact_dir is not None:
            root = Path(self.artifact_dir)
            link = escaping_link(path, root)
            if link is not None:
                raise BadInput(
                    f"{flag} {path} goes through {link}, a link out of the artifact to {_real(link)}",
                    "remove the link, or name the place it points to yourself",
                )
            real_root = _real(root)
            if where == real_root:
                raise BadInput(
                    f"{flag} {path} would write onto the artifact directory itself, part of the artifact in {root}", fix
                )
            for item in protected_paths(root):
                if _inside(where, _real(item)):
                    raise BadInput(
                        f"{flag} {path} would write onto {item.relative_to(root).as_posix()}, part of the artifact "
                        f"in {root}",
                        fix,
                    )
        for item in self.artifact_files:
            if where == _real(item):
                raise BadInput(f"{flag} {path} would write onto {item}, the artifact being read", fix)
        for item in self.inputs:
            real = _real(item)
            if where == real or (real.is_dir() and _inside(where, real)):
                what = "inside the input folder" if where != real and real.is_dir() else "onto the input"
                raise BadInput(f"{flag} {path} would write {what} {item}, which this command reads", fix)
        return path


def check_repository_entry(repository: Path, entry: Path, flag: str) -> None:
    """A folder written inside a repository must not be a link out of it."""
    link = escaping_link(entry, repository)
    if link is not None:
        raise BadInput(
            f"{flag} {repository}: {link} links out of the repository to {_real(link)}",
            "remove the link, or choose another --name",
        )


def guard_for(artifact, inputs: Iterable[Path] = ()) -> OutputGuard:
    """The guard of a resolved Artifact (artifact.resolve): its directory, or its file alone."""
    directory = getattr(artifact, "directory", None)
    files = [] if directory is not None else [Path(artifact.path)]
    return OutputGuard(artifact_dir=directory, inputs=[Path(p) for p in inputs], artifact_files=files)
