"""Named, timed steps: the library records wall time per step; a front end may show them.

A long step that works through a known number of things (pictures, batches, modules) says how
far it is with `steps.advance(done, total)`; the CLI's steps (console.steps_with_progress) draw
that as a bar with counts and ETA on a terminal, in place of the spinner.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Dict, Iterator, List, Optional


class Steps:
    """Times each step; calls `on_start(title)`, `on_end(title, seconds, ok)`,
    `on_warning(message)` and `on_advance(done, total)` if given."""

    def __init__(
        self,
        on_start: Optional[Callable[[str], None]] = None,
        on_end: Optional[Callable[[str, float, bool], None]] = None,
        on_warning: Optional[Callable[[str], None]] = None,
        on_advance: Optional[Callable[[int, int], None]] = None,
    ) -> None:
        self.timings: Dict[str, float] = {}
        self.warnings: List[str] = []
        self._on_start = on_start
        self._on_end = on_end
        self._on_warning = on_warning
        self._on_advance = on_advance

    def warn(self, message: str) -> None:
        """Something the user should know now, not only if the run succeeds."""
        self.warnings.append(message)
        if self._on_warning:
            self._on_warning(message)

    def advance(self, done: int, total: int) -> None:
        """Within a step: `done` of its `total` things are finished (0 first, to show the bar at once)."""
        if self._on_advance:
            self._on_advance(done, total)

    @contextmanager
    def step(self, key: str, title: str) -> Iterator[None]:
        if self._on_start:
            self._on_start(title)
        start = time.perf_counter()
        ok = False
        try:
            yield
            ok = True
        finally:
            seconds = time.perf_counter() - start
            self.timings[key] = round(seconds, 3)
            if self._on_end:
                self._on_end(title, seconds, ok)
