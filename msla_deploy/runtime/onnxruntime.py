"""ONNX Runtime behind the Session interface, with its provider rule written once.

ONNX Runtime takes a provider list and quietly drops the providers it cannot start (a CUDA
provider on a machine without a GPU becomes CPU, with one log line). So the session's active
providers are read back after creation: a backend the user named is held to that (a fallback is
a missing runtime, exit 3: the requested runtime did not run, so no verdict about it exists);
with `auto` a fallback is allowed and reported.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Dict, List, Optional, Union

import numpy as np

from ..artifact.graph import TensorSpec, max_batch_of
from ..errors import BadInput, MissingRuntime
from .session import Backend, Session

# the provider each ONNX Runtime backend must get, then what ONNX Runtime may use for the rest
PROVIDERS: Dict[str, List[str]] = {
    "ort-cpu": ["CPUExecutionProvider"],
    "ort-cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "ort-trt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}
CPU = Backend("ort-cpu", "ort-cpu", strict=True)


def import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as exc:
        raise MissingRuntime(
            f"ONNX Runtime is not installed ({exc})",
            "pip install onnxruntime (or onnxruntime-gpu, never both)",
        ) from None
    return onnxruntime


def has_cuda_provider() -> bool:
    return "CUDAExecutionProvider" in import_onnxruntime().get_available_providers()


def require_provider(backend: Backend) -> None:
    """The provider the backend needs is built into this ONNX Runtime, or MissingRuntime (exit 3)."""
    ort = import_onnxruntime()
    wanted, available = PROVIDERS[backend.name][0], ort.get_available_providers()
    if wanted not in available:
        raise MissingRuntime(
            f"--backend {backend.requested}: this ONNX Runtime ({ort.__version__}) has no {wanted} (it has "
            f"{', '.join(available)})",
            "install onnxruntime-gpu instead of onnxruntime on a machine with CUDA, or use --backend ort-cpu",
        )


def _elem_dtype(ort_type: str) -> str:
    # ONNX Runtime spells types "tensor(float)", "tensor(float16)", "tensor(int64)" ...
    inner = ort_type[len("tensor(") : -1] if ort_type.startswith("tensor(") else ort_type
    return {"float": "float32", "double": "float64"}.get(inner, inner)


class OnnxRuntimeSession(Session):
    def __init__(
        self, model: Union[Path, bytes], backend: Backend, *, threads: Optional[int] = None, label: str = "the model"
    ) -> None:
        ort = import_onnxruntime()
        ort.set_default_logger_severity(3)  # unused-initializer warnings are noise in a report
        require_provider(backend)
        available = ort.get_available_providers()
        providers = [p for p in PROVIDERS[backend.name] if p in available]
        options = ort.SessionOptions()
        options.log_severity_level = 3
        # ORT's idle workers spin after each run; in an interleaved comparison on a small machine they
        # steal the cores from whichever backend runs next and bias its times (seen: torch 2x slower)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        source = str(model) if isinstance(model, Path) else model
        try:
            with warnings.catch_warnings():  # a dropped provider is reported below, not as a warning
                warnings.simplefilter("ignore")
                self._session = ort.InferenceSession(source, sess_options=options, providers=providers)
        except Exception as exc:  # ORT's own RuntimeError subclasses for graphs it cannot load
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BadInput(
                f"ONNX Runtime cannot load {label}: {first}", "re-export it, or check that the file was copied whole"
            ) from None
        active = self._session.get_providers()
        self.backend = backend.name
        self.info = {
            "runtime": "onnxruntime",
            "version": ort.__version__,
            "providers_requested": providers,
            "providers_active": active,
            "ran_on": active[0],
            "fell_back": active[0] != providers[0],
            "intra_op_threads": threads,
        }
        if self.info["fell_back"]:
            message = (
                f"ONNX Runtime fell back from {providers[0]} to {active[0]} "
                "(the GPU provider could not start: no GPU, or CUDA/cuDNN libraries missing)"
            )
            if backend.strict:  # a verdict or a time under a GPU backend's name would be false
                raise MissingRuntime(
                    f"--backend {backend.requested}: {message}", "fix the CUDA setup, or use --backend ort-cpu"
                )
            self.info["note"] = message
        self.inputs = {
            i.name: TensorSpec(i.name, tuple(d if isinstance(d, int) else str(d) for d in i.shape), _elem_dtype(i.type))
            for i in self._session.get_inputs()
        }
        self.outputs = {
            o.name: TensorSpec(o.name, tuple(d if isinstance(d, int) else str(d) for d in o.shape), _elem_dtype(o.type))
            for o in self._session.get_outputs()
        }
        self._names = list(self.outputs)
        self._label = label
        first = next(iter(self.inputs.values()), None)
        if first is not None and first.shape and not isinstance(first.shape[0], int):
            # a dynamic batch: its export says how far
            self.max_batch = max_batch_of(self._session.get_modelmeta().custom_metadata_map)

    def _run(self, feeds: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        try:
            values = self._session.run(self._names, feeds)
        except Exception as exc:  # ORT's InvalidArgument & co: feeds that do not fit the graph
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BadInput(
                f"running {self._label} failed: {first}",
                "check that the inputs match the model (names, shapes, dtypes)",
            ) from None
        return dict(zip(self._names, values))
