"""One interface for every backend: named inputs in, named outputs out, and what really ran.

Like Polygraphy's runners, each backend is a `Session` whose loading is deferred to `open`; the
stages (export's parity step, validate, localize, bench, evaluate, predict) never touch a
runtime's own API.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional

import numpy as np

from ..artifact.graph import TensorSpec
from ..errors import BadInput
from .feeds import random_feeds


@dataclass(frozen=True)
class Backend:
    requested: str  # what the user asked for (may be "auto")
    name: str  # what runs: torch | ort-cpu | ort-cuda | ort-trt | trt
    strict: bool  # named by the user: a fallback is an error, not a note

    @property
    def is_tensorrt(self) -> bool:
        return self.name == "trt"


class Session:
    """A loaded model. Subclasses set the attributes and implement `_run`."""

    backend: str
    inputs: Dict[str, TensorSpec]
    outputs: Dict[str, TensorSpec]
    info: Dict  # what ran: runtime, version, ran_on, providers, fell_back, note
    # a run that times itself (seconds on the device clock), for bench; None: time run() on the host
    timed: Optional[Callable[[], float]] = None
    timer: str = "host"
    # a dynamic batch (export --batch dynamic, a Triton batcher): runs take 1..max_batch rows; None: static
    max_batch: Optional[int] = None

    @property
    def group(self) -> int:
        """How many pictures a caller should put in one run: the static batch, or the largest a dynamic one takes."""
        return self.max_batch or self.batch

    @property
    def batch(self) -> int:
        first = next(iter(self.inputs.values()), None)
        if first is not None and first.shape and isinstance(first.shape[0], int) and first.shape[0] > 0:
            return int(first.shape[0])
        return 1

    def run(self, feeds: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        missing = [n for n in self.inputs if n not in feeds]
        if missing:
            raise BadInput(
                f"no value for the model input {missing[0]!r} (it takes {sorted(self.inputs)})",
                "feed every input by name",
            )
        if self.max_batch is not None:  # a dynamic batch: every backend holds to the export's range
            rows = int(np.shape(feeds[next(iter(self.inputs))])[0])
            if not 1 <= rows <= self.max_batch:
                raise BadInput(
                    f"a batch of {rows} is outside the model's range 1..{self.max_batch}",
                    f"run at most {self.max_batch} pictures at once",
                )
        return self._run({n: feeds[n] for n in self.inputs})

    def _run(self, feeds: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        raise NotImplementedError

    def random_feeds(self, seed: int = 0) -> Dict[str, np.ndarray]:
        return random_feeds({n: (tuple(s.shape), s.numpy_dtype) for n, s in self.inputs.items()}, seed)

    def describe(self) -> Dict:
        return dict(self.info)

    def close(self) -> None:
        pass

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
