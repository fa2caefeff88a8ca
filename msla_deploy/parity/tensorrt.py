"""The one place validate touches TensorRT: a Polygraphy TrtRunner for an .engine or an ONNX.

Imported only when the TensorRT backend is chosen; `tensorrt` itself is imported by
msla_deploy.trt.runtime (the package's single import of it), and the GPU is probed there too, so
without TensorRT or a GPU every path here ends in MissingRuntime (exit 3). Written against
Polygraphy's documented TensorRT loaders (EngineFromBytes, NetworkFromOnnxPath/Bytes,
CreateConfig, EngineFromNetwork, TrtRunner) and exercised only where TensorRT exists: this
project's machines cannot install it.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, Optional, Tuple, Union

from ..errors import BadInput, MissingRuntime
from .polygraphy_env import quiet_polygraphy

NO_TENSORRT_FIX = "run on a machine with TensorRT and an NVIDIA GPU (e.g. a Jetson with JetPack), or use --backend ort-cpu"


def engine_without_tensorrt_fix(command: str, onnx: Optional[Path]) -> str:
    """The fix for an .engine given by itself: --backend ort-cpu is refused for it (exit 2)."""
    target = str(onnx) if onnx is not None else "the export's model.onnx"
    return (f"an .engine runs only on TensorRT: install TensorRT on a machine with an NVIDIA GPU, e.g. a Jetson with JetPack; "
            f"or {command} {target} instead, on ONNX Runtime")


@contextmanager
def engine_hint(applies: bool, command: str, onnx: Optional[Path]) -> Iterator[None]:
    """Inside: a MissingRuntime gets the engine's fix when `applies` (the artifact is an engine alone)."""
    try:
        yield
    except MissingRuntime as exc:
        if not applies:
            raise
        raise MissingRuntime(exc.problem, engine_without_tensorrt_fix(command, onnx)) from None


def require_tensorrt():
    """TensorRT and a GPU, or MissingRuntime: checked before any work starts."""
    from ..trt.runtime import import_tensorrt, probe_gpu

    try:
        trt = import_tensorrt()
        probe_gpu()
    except MissingRuntime as exc:  # same problem, but the fix that fits validate (theirs is build's)
        raise MissingRuntime(exc.problem, NO_TENSORRT_FIX) from None
    return trt


def tensorrt_runner(model: Union[Path, bytes], *, is_engine: bool, strongly_typed: bool, fp16_flag: bool = False) -> Tuple[object, Dict]:
    """A TrtRunner with its engine already built or deserialized, so that a TensorRT failure is
    reported as such and not as an inference error; and what ran, for the report."""
    trt = require_tensorrt()
    from polygraphy.backend.common import BytesFromPath
    from polygraphy.backend.trt import CreateConfig, EngineFromBytes, EngineFromNetwork, NetworkFromOnnxBytes, NetworkFromOnnxPath, TrtRunner

    if is_engine:
        loader = EngineFromBytes(BytesFromPath(str(model)))
        how = "deserialized from the .engine"
        problem, fix = "TensorRT cannot deserialize the engine", "engines are specific to one GPU and TensorRT version: rebuild it on this machine"
    else:
        parse = NetworkFromOnnxPath(str(model), strongly_typed=strongly_typed) if isinstance(model, Path) else NetworkFromOnnxBytes(model, strongly_typed=strongly_typed)
        # TF32 off: fp32 layers in TF32 drift past an fp32 parity budget (NVIDIA/TensorRT #3999).
        # An fp16 ONNX carries its precision in its Casts (strongly typed); the FP16 flag is only
        # for re-creating a weakly typed fp16 build (TensorRT < 11 rejects neither, 11 has no flag)
        config = CreateConfig(tf32=False, fp16=True) if fp16_flag else CreateConfig(tf32=False)
        loader = EngineFromNetwork(parse, config=config)
        how = "built from the ONNX" + (" (strongly typed)" if strongly_typed else "") + (" with the FP16 flag" if fp16_flag else "")
        problem, fix = "TensorRT cannot build an engine from the ONNX", "check the model with `msla-deploy inspect`"
    # a file TensorRT rejects is bad input; CUDA failing to start is a missing runtime
    with quiet_polygraphy(problem, fix, error=BadInput):
        try:
            engine = loader()
        except (RuntimeError, OSError) as exc:  # CUDA initialisation: no GPU or no driver
            raise MissingRuntime(f"TensorRT could not start: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}", NO_TENSORRT_FIX) from None
    runtime = {"runtime": "tensorrt", "version": trt.__version__, "ran_on": "TensorRT", "fell_back": False, "engine": how, "tf32": False}
    return TrtRunner(engine, name="tensorrt"), runtime
