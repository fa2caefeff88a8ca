"""One loaded model on one backend, as a callable that runs one iteration.

Each loader returns a `Loaded`: `run()` does one inference and returns when its results are
ready (host copies included unless the TensorRT backend is told not to transfer), so a host
clock around it measures what an application waits for. The model is opened through the runtime
layer (msla_deploy.runtime), which owns backend choice, the ONNX Runtime fallback rule, the
TensorRT engine loader and the PyTorch rebuild; TensorRT times itself with CUDA events
(`Loaded.timed`, msla_deploy.runtime.trt_direct). `Loaded.outputs` gives what a run computed, for
the count of NaN/Inf values a bench reports (and fails on).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

from .. import runtime
from ..artifact.resolve import Artifact
from ..errors import BadInput
from ..limits import check_tensors_fit
from ..runtime.feeds import random_feeds
from ..runtime.session import Backend, Session

BACKENDS = runtime.BACKENDS


@dataclass
class Loaded:
    backend: str  # what runs: torch | ort-cpu | ort-cuda | ort-trt | trt
    run: Callable[[], object]
    runtime: Dict  # what ran, for the report
    batch: int
    close: Callable[[], None] = field(default=lambda: None)
    # a run that times itself (seconds, e.g. CUDA events); None: the host clock around run()
    timed: Optional[Callable[[], float]] = None
    timer: str = "host"  # "host" | "cuda-events", recorded in the report
    # the outputs of the run that just returned `result` (what run() returned: the runtime
    # layer's outputs; a self-timed TensorRT run reads them back from the device), on the host
    outputs: Callable[[Any], Dict[str, np.ndarray]] = field(default=lambda result: result)


def count_nonfinite(outputs: Dict[str, np.ndarray]) -> int:
    """NaN and Inf values in a run's float outputs."""
    count = 0
    for value in outputs.values():
        value = np.asarray(value)
        if np.issubdtype(value.dtype, np.floating):
            count += int(value.size - np.count_nonzero(np.isfinite(value)))
    return count


def choose(requested: str, artifact: Artifact) -> Backend:
    """The backend that will run, before anything is loaded (so bad combinations exit 2 early)."""
    return runtime.choose(requested, artifact, command="bench")


def preflight(backend: Backend) -> None:
    """A runtime that is certainly missing fails before any model is loaded (exit 3)."""
    runtime.preflight(backend, "--backend torch", "bench another backend: --backend ort-cpu")


def feeds_for(session: Session, batch: Optional[int], label: str) -> Tuple[Dict[str, np.ndarray], int]:
    """Random inputs of the model's shapes, and the batch they give. Exports are static: a --batch
    that differs from the graph's is bad input (re-export), not something to paper over; a
    symbolic first dimension takes --batch, default the largest of a dynamic-batch export (as a
    TensorRT engine of it is timed at its profile's optimum), else 1."""
    specs, model_batch = {}, None
    for name, spec in session.inputs.items():
        dims = list(spec.shape)
        if dims and isinstance(dims[0], int) and dims[0] > 0:
            if batch is not None and dims[0] != batch:
                raise BadInput(
                    f"--batch {batch}: {label} has a static batch of {dims[0]}",
                    f"re-export with --batch {batch}, or drop --batch",
                )
            model_batch = dims[0]
        elif dims:
            if batch is not None and session.max_batch is not None and not 1 <= batch <= session.max_batch:
                raise BadInput(
                    f"--batch {batch}: {label} takes a batch of 1..{session.max_batch}",
                    f"use --batch 1..{session.max_batch}",
                )
            dims[0] = model_batch = batch or session.max_batch or 1
        if any(not isinstance(d, int) or d <= 0 for d in dims[1:]):
            raise BadInput(
                f"{label}: input {name} has a dynamic dimension {dims}",
                "export a static model (msla-deploy export does)",
            )
        specs[name] = (tuple(dims), spec.numpy_dtype)
    outputs = [
        (tuple(d if isinstance(d, int) and d > 0 else 1 for d in o.shape), o.numpy_dtype)
        for o in session.outputs.values()
    ]
    check_tensors_fit(label, specs, outputs)  # a huge declared shape: exit 2 with the number, not a MemoryError
    return random_feeds(specs), model_batch or 1


def load(
    artifact: Artifact,
    backend: Backend,
    *,
    batch: Optional[int],
    threads: Optional[int],
    transfers: bool = True,
    cuda_graph: bool = False,
) -> Loaded:
    session = runtime.open(artifact, backend, threads=threads, command="bench")
    try:
        if backend.is_tensorrt:
            return _timed_on_gpu(session, batch, transfers, cuda_graph)
        label = artifact.onnx_path.name if artifact.onnx_path is not None else artifact.name
        feeds, model_batch = feeds_for(session, batch, label)
        return Loaded(session.backend, lambda: session.run(feeds), session.describe(), model_batch, close=session.close)
    except BaseException:
        session.close()
        raise


def _timed_on_gpu(session, batch: Optional[int], transfers: bool, cuda_graph: bool) -> Loaded:
    """TensorRT timed directly with CUDA events, like trtexec. With transfers, each run copies
    inputs to the device and outputs back (what an application pays); without, it does not
    (trtexec's --noDataTransfers). `--cuda-graph` launches a CUDA graph of the enqueue captured
    at load. Written against TensorRT's documented API; not exercised on this project's machines."""
    # a dynamic engine is timed at its largest batch unless --batch, as the other backends are
    session.start_timing(
        transfers=transfers, cuda_graph=cuda_graph, batch=batch if batch is not None else session.max_batch
    )
    shapes = session.timing_input_shapes
    model_batch = next(iter(shapes.values()))[0] if shapes else 1
    if batch is not None and batch != model_batch:
        raise BadInput(
            f"--batch {batch}: the engine's batch is {model_batch}", f"rebuild for batch {batch}, or drop --batch"
        )
    return Loaded(
        "trt",
        session.timed,
        session.describe(),
        model_batch,
        close=session.close,
        timed=session.timed,
        timer="cuda-events",
        outputs=lambda _seconds: session.timing_outputs(),
    )
