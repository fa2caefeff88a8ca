"""An artifact directory that appears whole or not at all.

Everything is written into a hidden staging directory beside the target, which is renamed into
place only when the stage succeeded; on any error the staging directory is removed. A previous
artifact directory is replaced only if it is one of ours (it has a manifest).
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..errors import BadInput
from ..artifact.names import MANIFEST_NAME


def check_replaceable(target: Path) -> None:
    if target.exists() and not target.is_dir():
        raise BadInput(f"--out {target} is a file", "choose a directory path")
    if target.is_dir() and any(target.iterdir()) and not (target / MANIFEST_NAME).is_file():
        raise BadInput(
            f"--out {target} exists and is not an msla-deploy artifact directory",
            "choose an empty or new directory",
        )


@contextmanager
def staged_directory(target: Path) -> Iterator[Path]:
    target = Path(target)
    check_replaceable(target)
    # parents we create are removed again on failure: bad input leaves no empty folders behind
    created = [p for p in reversed(target.absolute().parents) if not p.exists()]
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in reversed(created):
            try:
                folder.rmdir()
            except OSError:
                break
        raise
    old = target.parent / f".{target.name}.old-{os.getpid()}"
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)
