"""Named, timed steps: the library records wall time per step; a front end may show them."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Dict, Iterator, List, Optional


class Steps:
    """Times each step; calls `on_start(title)`, `on_end(title, seconds, ok)` and
    `on_warning(message)` if given."""

    def __init__(
        self,
        on_start: Optional[Callable[[str], None]] = None,
        on_end: Optional[Callable[[str, float, bool], None]] = None,
        on_warning: Optional[Callable[[str], None]] = None,
    ) -> None:
        self.timings: Dict[str, float] = {}
        self.warnings: List[str] = []
        self._on_start = on_start
        self._on_end = on_end
        self._on_warning = on_warning

    def warn(self, message: str) -> None:
        """Something the user should know now, not only if the run succeeds."""
        self.warnings.append(message)
        if self._on_warning:
            self._on_warning(message)

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
