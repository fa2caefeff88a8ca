"""What every evaluate protocol's pass shares: the backends' order, reader threads of the lowest
priority, and pictures decoded ahead of inference in order, in groups of the batch."""

from __future__ import annotations

import os
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Sequence, Tuple, TypeVar

from ..errors import BadInput

T = TypeVar("T")

READERS = 2
# The readers (and segmentation's metric thread) run at the lowest priority (Linux: per thread), so
# that on a CPU backend they take the cores the model leaves idle between its parallel sections
# instead of delaying it; they cannot starve for long, since the model waits for their pictures. On
# 2 quiet cores at 1024x2048 (benchmarks/README.md) that is the difference between 0.7x and
# 0.9-1.0x of bench's images/s (+10: 0.90-0.95x, +19: 0.97-1.02x); with the cores shared by other
# programs the figures scatter too widely to rank the two (bench alone moves by 25% between runs).
HOST_NICENESS = 19  # added to the thread's niceness (19 at most)


def lower_priority() -> None:
    """A thread pool's initializer: this thread at the lowest priority (Linux)."""
    if not sys.platform.startswith("linux"):  # elsewhere PRIO_PROCESS takes a process id, not a thread's
        return
    try:
        thread = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, thread, min(19, os.getpriority(os.PRIO_PROCESS, thread) + HOST_NICENESS))
    except OSError:  # a sandbox that forbids it: the threads keep the process's priority
        pass


def order_backends(backends: Sequence[str], against: Optional[str]) -> Tuple[List[str], str]:
    """(the backends in the pass's order, the reference): --against, else torch if evaluated, else
    the first; a reference not in the list joins the pass first."""
    names = list(backends)
    against = against or ("torch" if "torch" in names else names[0])
    if against not in names:
        names.insert(0, against)
    return names, against


def check_common(limit: Optional[int], backends: Sequence[str]) -> None:
    """The checks every protocol's options make (bad flags exit 2 before anything loads)."""
    if limit is not None and limit < 1:
        raise BadInput(f"--limit {limit}: must be at least 1", "give the number of pictures to evaluate")
    if len(set(backends)) != len(backends):
        raise BadInput(f"--backend given twice ({', '.join(backends)})", "name each backend once")


def report_folder(artifact, options) -> Path:
    """Where the report goes (--report-dir, else evaluation/ in the export directory), checked with
    every other path the pass writes: nothing is written onto the artifact or the dataset, nor
    through a link out of the artifact (an `evaluation` link shipped inside it)."""
    from ..artifact.names import EVALUATION_DIR
    from ..artifact.outputs import guard_for

    folder = Path(options.report_dir) if options.report_dir else artifact.default_report_dir(EVALUATION_DIR)
    guard = guard_for(artifact, inputs=[Path(options.data)])
    guard.check(folder, "--report-dir" if options.report_dir else "the report folder")
    if options.junit is not None:
        guard.check(Path(options.junit), "--junit")
    if getattr(options, "save_predictions", None) is not None:
        guard.check(Path(options.save_predictions), "--save-predictions")
    if folder.exists() and not folder.is_dir():
        raise BadInput(f"--report-dir {folder} is a file", "pass a directory (it is created if missing)")
    return folder


def decoded_batches(
    samples: Sequence,
    decode: Callable[[object], T],
    readers: ThreadPoolExecutor,
    size: int,
    on_bad: Callable[[T], None],
) -> Iterator[List[T]]:
    """`decode(sample)` for every sample on the reader threads, a few batches ahead, yielded in
    order in groups of `size` (the last one short). A decoded item whose `problem` is set goes to
    `on_bad` instead (--skip-bad); a decode that raises stops the pass with its error."""
    reads: List[Future] = [readers.submit(decode, s) for s in samples[: READERS * size * 2]]
    next_read = len(reads)
    batch: List[T] = []
    while reads:
        decoded = reads.pop(0).result()
        if next_read < len(samples):
            reads.append(readers.submit(decode, samples[next_read]))
            next_read += 1
        if getattr(decoded, "problem", None) is not None:
            on_bad(decoded)
            continue
        batch.append(decoded)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
