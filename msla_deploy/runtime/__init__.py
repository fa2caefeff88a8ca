"""Run an artifact: one backend interface over ONNX Runtime (CPU, CUDA, TensorRT providers),
TensorRT, and the PyTorch rebuild of an export. The public Python API for running a deployed model:

    from msla_deploy import runtime
    with runtime.open("artifacts/run/", backend="auto") as session:
        outputs = session.run({"input": x})          # named inputs -> named outputs
        print(session.describe())                     # what really ran (provider, versions)

Torch-free except the torch backend. Backends are loaded lazily (the way Polygraphy composes its
loaders): choosing one checks what is certainly missing (exit 3) before anything loads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

from ..artifact.resolve import Artifact, resolve
from ..choices import BACKENDS
from ..errors import BadInput
from .session import Backend, Session
from .triton import is_triton_target, parse_target

REBUILD_FROM = "pass the export directory written by msla-deploy export"

__all__ = ["BACKENDS", "Backend", "Session", "choose", "open", "open_onnx", "preflight"]


def choose(requested: str, artifact: Artifact, *, allowed: Sequence[str] = BACKENDS, command: str = "run") -> Backend:
    """The backend that will run, before anything is loaded (so bad combinations exit 2 early).

    auto: TensorRT for an engine, else ONNX Runtime with CUDA where its provider is listed (a
    fallback to the CPU is then allowed and reported), else on the CPU."""
    if is_triton_target(requested):  # a served model: triton://HOST:PORT[/MODEL]
        parse_target(requested)  # a malformed address is bad input now
        return Backend(requested, "triton", strict=True)
    if requested not in allowed:
        raise BadInput(
            f"--backend {requested!r} is unknown", f"choose one of {', '.join(allowed)} or triton://HOST:PORT[/MODEL]"
        )
    if requested == "torch":
        if artifact.manifest is None or artifact.manifest.options is None:
            raise BadInput(
                f"--backend torch: {artifact.path} has no export manifest to rebuild the PyTorch model from",
                REBUILD_FROM,
            )
        return Backend("torch", "torch", strict=True)
    engine_only = artifact.is_engine or artifact.onnx_path is None
    if engine_only and requested not in ("auto", "trt"):
        raise BadInput(
            f"--backend {requested}: a TensorRT .engine runs only on TensorRT",
            f"use --backend trt (or auto), or {command} the .onnx",
        )
    if requested == "trt" or (requested == "auto" and engine_only):
        if not artifact.graph_roles:  # (a multi-graph export's engines are its build records' per graph)
            artifact.single_engine()  # a directory with several engines: BadInput, say which to use
        return Backend(requested, "trt", strict=True)
    if requested != "auto":
        return Backend(requested, requested, strict=True)
    from .onnxruntime import has_cuda_provider

    return Backend("auto", "ort-cuda" if has_cuda_provider() else "ort-cpu", strict=False)


def preflight(backend: Backend, purpose: str = "--backend torch", alternative: str = "") -> None:
    """Fail on a runtime that is certainly missing before any work (a GPU provider that is
    listed but cannot start is only found out when the session is created)."""
    if backend.name == "torch":
        from .torch_backend import require_torch

        require_torch(purpose, alternative)
    elif backend.name == "triton":
        from .triton import import_tritonclient_grpc

        import_tritonclient_grpc()
    elif backend.is_tensorrt:
        from .tensorrt import require_tensorrt

        require_tensorrt()
    else:
        from .onnxruntime import require_provider

        require_provider(backend)


def open_onnx(
    model: Union[Path, bytes],
    backend: Backend,
    *,
    threads: Optional[int] = None,
    label: str = "the model",
    precision: str = "fp32",
    fp16_flag: bool = False,
) -> Session:
    """A session for an ONNX file or ONNX bytes (a probe-marked copy, a staged export)."""
    if backend.is_tensorrt:
        from .tensorrt import TensorRTSession

        return TensorRTSession(model, is_engine=False, precision=precision, fp16_flag=fp16_flag)
    if backend.name == "torch":
        raise BadInput("an ONNX cannot run on the torch backend", "open the export directory instead")
    if backend.name == "triton":
        raise BadInput(
            f"{backend.requested} runs the model the server holds, not an ONNX given here",
            "use a local backend for this step (e.g. --backend ort-cpu)",
        )
    from .onnxruntime import OnnxRuntimeSession

    return OnnxRuntimeSession(model, backend, threads=threads, label=label)


def open(
    target: Union[Artifact, Path, str],
    backend: Union[str, Backend] = "auto",
    *,
    threads: Optional[int] = None,
    command: str = "run",
) -> Session:
    """A session for what `target` names (an Artifact, or a path resolved with artifact.resolve)."""
    artifact = target if isinstance(target, Artifact) else resolve(Path(target))
    chosen = backend if isinstance(backend, Backend) else choose(backend, artifact, command=command)
    preflight(chosen)
    if chosen.name == "torch":
        from .torch_backend import TorchSession

        return TorchSession(artifact, threads=threads)
    if chosen.name == "triton":
        from .triton import open_triton

        return open_triton(chosen.requested, expected=artifact)
    model_file = artifact.model_file(tensorrt=chosen.is_tensorrt)
    if chosen.is_tensorrt:
        from .tensorrt import TensorRTSession

        if model_file.suffix == ".onnx":  # built here as `build` would, from the export around it
            return TensorRTSession(
                model_file, is_engine=False, export=artifact.path if artifact.kind == "directory" else model_file
            )
        record = artifact.build_record(model_file)
        return TensorRTSession(
            model_file,
            is_engine=True,
            version_compatible=bool(record and record.version_compatible),
            dla_core=record.dla_core if record else None,
        )
    return open_onnx(
        model_file, chosen, threads=threads, label=str(model_file), precision=artifact.precision_of(model_file)[0]
    )
