"""Watch, while the tests run, for files opened beside the repository instead of inside it.

A user's clone has nothing beside it: a test (or the package) that reads a sibling folder of
the checkout passes on a developer's machine and fails for everyone else. conftest.py
installs `RECORDER` as an audit hook (PEP 578: every `open()`, `io.open_code()` and
`os.open()` in this process reports the path first, even when the file then turns out not to
exist) for the whole session, and fails the session if anything under the repository's parent
folder, but outside the repository, was opened. Temporary folders and the Python installation
are not "beside the repository" even when they happen to live there.

Only this process is watched: commands run as subprocesses are covered by the static scan in
tests/cli/test_self_contained.py.
"""

from __future__ import annotations

import os
import site
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

REPO = Path(__file__).resolve().parents[1]


def _roots(path: Path) -> Tuple[str, ...]:
    """The folder as written and as resolved (a symlinked checkout is reached both ways)."""
    return tuple(sorted({os.path.normpath(str(path)), os.path.normpath(os.path.realpath(path))}))


def _inside(path: str, roots: Tuple[str, ...]) -> bool:
    return any(path == root or path.startswith(root + os.sep) for root in roots)


class OutsideReads:
    """The audit hook and what it saw."""

    def __init__(self, repo: Path = REPO) -> None:
        self.repo = _roots(repo)
        self.beside = _roots(repo.parent)  # where a sibling checkout or data folder would live
        allowed = {tempfile.gettempdir(), sys.prefix, sys.base_prefix, sys.exec_prefix}
        allowed.update(site.getsitepackages() if hasattr(site, "getsitepackages") else [])
        allowed.add(site.getusersitepackages())
        # only those inside the parent folder matter (a venv or a temp folder beside the checkout);
        # one that holds the parent folder (a clone made in /tmp, as CI does) would excuse everything
        self.allowed = tuple(
            root
            for folder in allowed
            for root in _roots(Path(folder))
            if _inside(root, self.beside) and root not in self.beside
        )
        self.seen: List[str] = []
        self._capture: Optional[List[str]] = None

    def __call__(self, event: str, args: tuple) -> None:
        # called for every audit event of the process: cheap, and no file system call in here
        # (one would report itself to this hook again)
        if event != "open":
            return
        path = self.outside(args[0])
        if path is not None:
            (self._capture if self._capture is not None else self.seen).append(path)

    def outside(self, target) -> Optional[str]:
        """The normalised path if opening `target` reads beside the repository, else None."""
        if isinstance(target, int) or target is None:  # an already open descriptor
            return None
        try:
            path = os.fsdecode(os.fspath(target))
        except TypeError:
            return None
        path = os.path.normpath(os.path.abspath(path))
        if not _inside(path, self.beside) or _inside(path, self.repo) or _inside(path, self.allowed):
            return None
        return path

    @contextmanager
    def expecting(self) -> Iterator[List[str]]:
        """Opens inside the block are handed to the caller instead of failing the session (for the
        test that proves the hook sees them)."""
        previous, self._capture = self._capture, []
        try:
            yield self._capture
        finally:
            self._capture = previous


RECORDER = OutsideReads()
