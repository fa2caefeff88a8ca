"""Run an artifact on the reference inputs through Polygraphy runners, and say what really ran.

ONNX Runtime takes a provider list and quietly drops the providers it cannot start (a CUDA
provider on a machine without a GPU becomes CPU, with one log line). So the session's active
providers are read back after creation: a backend the user named is held to that (a fallback is
a missing runtime, exit 3: the requested runtime did not run, so no verdict about it exists);
with `auto` a fallback is allowed and reported.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Union

import numpy as np

from ..errors import BadInput, MissingRuntime
from .onnxruntime_run import import_onnxruntime
from .polygraphy_env import quiet_polygraphy

BACKENDS = ("auto", "ort-cpu", "ort-cuda", "ort-trt", "trt")
# the provider each ONNX Runtime backend must get, then what ONNX Runtime may use for the rest
_ORT_PROVIDERS = {
    "ort-cpu": ["CPUExecutionProvider"],
    "ort-cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "ort-trt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


@dataclass(frozen=True)
class Backend:
    requested: str  # what the user asked for (may be "auto")
    name: str  # what runs: ort-cpu | ort-cuda | ort-trt | trt
    strict: bool  # named by the user: a fallback is an error, not a note

    @property
    def is_tensorrt(self) -> bool:
        return self.name == "trt"


@dataclass
class RunOutput:
    outputs: Dict[str, np.ndarray]  # by output name, iterations concatenated along the batch axis
    runtime: Dict  # what ran: runtime, version, providers requested and active, fallback


def choose_backend(requested: str, is_engine: bool) -> Backend:
    if requested not in BACKENDS:
        raise BadInput(f"--backend {requested!r} is unknown", f"choose one of {', '.join(BACKENDS)}")
    if is_engine and requested not in ("auto", "trt"):
        raise BadInput(f"--backend {requested}: a TensorRT .engine runs only on TensorRT", "use --backend trt (or auto), or validate the .onnx")
    if requested != "auto":
        return Backend(requested, requested, strict=True)
    if is_engine:
        return Backend("auto", "trt", strict=True)
    cuda = "CUDAExecutionProvider" in import_onnxruntime().get_available_providers()
    return Backend("auto", "ort-cuda" if cuda else "ort-cpu", strict=False)


def preflight(backend: Backend) -> None:
    """Fail on a runtime that is certainly missing before any work (a GPU provider that is
    listed but cannot start is only found out when the session is created)."""
    if backend.is_tensorrt:
        from .tensorrt import require_tensorrt

        require_tensorrt()
    else:
        _require_provider(backend)


def _require_provider(backend: Backend) -> None:
    ort = import_onnxruntime()
    wanted, available = _ORT_PROVIDERS[backend.name][0], ort.get_available_providers()
    if wanted not in available:
        raise MissingRuntime(
            f"--backend {backend.requested}: this ONNX Runtime ({ort.__version__}) has no {wanted} (it has {', '.join(available)})",
            "install onnxruntime-gpu instead of onnxruntime on a machine with CUDA, or use --backend ort-cpu",
        )


def run_model(
    model: Union[Path, bytes], backend: Backend, batches: List[Dict[str, np.ndarray]], *, is_engine: bool = False,
    strongly_typed: bool = False, fp16_flag: bool = False, label: str = "the model",
) -> RunOutput:
    """Run `model` (a path, or ONNX bytes) once per feed dict in `batches` through one runner."""
    if backend.is_tensorrt:
        from .tensorrt import tensorrt_runner

        runner, runtime = tensorrt_runner(model, is_engine=is_engine, strongly_typed=strongly_typed, fp16_flag=fp16_flag)
    else:
        runner, runtime = _onnxruntime_runner(model, backend, label)

    from polygraphy.comparator import Comparator

    with quiet_polygraphy(f"running {label} failed", "check that the reference bundle matches this artifact (--reference)"):
        results = Comparator.run([runner], data_loader=batches)
    iterations = results[runner.name]
    names = list(iterations[0].keys())
    outputs = {name: np.concatenate([np.asarray(it[name]) for it in iterations], axis=0) for name in names}
    return RunOutput(outputs, runtime)


def _onnxruntime_runner(model: Union[Path, bytes], backend: Backend, label: str):
    ort = import_onnxruntime()
    ort.set_default_logger_severity(3)  # unused-initializer warnings are noise in a report
    _require_provider(backend)
    available = ort.get_available_providers()
    providers = [p for p in _ORT_PROVIDERS[backend.name] if p in available]
    wanted = providers[0]

    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx

    source = str(model) if isinstance(model, Path) else model
    with quiet_polygraphy(f"ONNX Runtime cannot load {label}", "re-export it"):
        try:
            with warnings.catch_warnings():  # ORT warns about providers it drops; the fallback is reported below
                warnings.simplefilter("ignore")
                session = SessionFromOnnx(source, providers=providers)()
        except Exception as exc:  # ORT raises its own RuntimeError subclasses for bad graphs
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BadInput(f"ONNX Runtime cannot load {label}: {first}", "re-export it, or check that the file was copied whole") from None
    active = session.get_providers()
    fell_back = active[0] != wanted
    runtime = {
        "runtime": "onnxruntime",
        "version": ort.__version__,
        "providers_requested": providers,
        "providers_active": active,
        "ran_on": active[0],
        "fell_back": fell_back,
    }
    if fell_back:
        message = f"ONNX Runtime fell back from {wanted} to {active[0]} (the GPU provider could not start: no GPU, or CUDA/cuDNN libraries missing)"
        if backend.strict:
            raise MissingRuntime(f"--backend {backend.requested}: {message}", "fix the CUDA setup, or use --backend ort-cpu")
        runtime["note"] = message
    return OnnxrtRunner(session, name=f"onnxrt-{active[0].replace('ExecutionProvider', '').lower()}"), runtime
