"""Atomic file writes: the one primitive every file the tool writes goes through (records, engines,
pictures). At the bottom of the import floors, so that records (and the artifact layer above
them) can use it without an import cycle. torch-free, Python 3.8."""

from __future__ import annotations

import os
from pathlib import Path


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write to a temp file beside `path`, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        if exc.filename is None:  # a full disk or a quota names no file: say which one did not fit
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None
        raise
    finally:
        if tmp.exists():
            tmp.unlink()
