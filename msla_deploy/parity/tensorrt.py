"""The one place validate touches TensorRT: a Polygraphy TrtRunner for an .engine or an ONNX.

Imported only when the TensorRT backend is chosen; without TensorRT (or a GPU) every path here
ends in MissingRuntime (exit 3). Written against Polygraphy's documented TensorRT loaders
(EngineFromBytes, NetworkFromOnnxPath/Bytes, CreateConfig, EngineFromNetwork, TrtRunner) and
exercised only where TensorRT exists: this project's machines cannot install it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Tuple, Union

from ..errors import BadInput, MissingRuntime
from .polygraphy_env import quiet_polygraphy

NO_TENSORRT_FIX = "run on a machine with TensorRT and an NVIDIA GPU (e.g. a Jetson with JetPack), or use --backend ort-cpu"


def import_tensorrt():
    try:
        import tensorrt
    except ImportError as exc:
        raise MissingRuntime(f"TensorRT is not installed ({exc})", NO_TENSORRT_FIX) from None
    return tensorrt


def tensorrt_runner(model: Union[Path, bytes], *, is_engine: bool, strongly_typed: bool) -> Tuple[object, Dict]:
    """A TrtRunner with its engine already built or deserialized, so that a TensorRT failure is
    reported as such and not as an inference error; and what ran, for the report."""
    trt = import_tensorrt()
    from polygraphy.backend.common import BytesFromPath
    from polygraphy.backend.trt import CreateConfig, EngineFromBytes, EngineFromNetwork, NetworkFromOnnxBytes, NetworkFromOnnxPath, TrtRunner

    if is_engine:
        loader = EngineFromBytes(BytesFromPath(str(model)))
        how = "deserialized from the .engine"
    else:
        parse = NetworkFromOnnxPath(str(model), strongly_typed=strongly_typed) if isinstance(model, Path) else NetworkFromOnnxBytes(model, strongly_typed=strongly_typed)
        # TF32 off: fp32 layers in TF32 have wrong-looking results for parity (NVIDIA/TensorRT #3999);
        # the precision of an fp16 artifact comes from its graph's Casts (strongly typed), not flags
        loader = EngineFromNetwork(parse, config=CreateConfig(tf32=False))
        how = "built from the ONNX" + (" (strongly typed)" if strongly_typed else "")
    if is_engine:
        problem, error = "TensorRT cannot deserialize the engine", BadInput
        fix = "engines are specific to one GPU and TensorRT version: rebuild it on this machine"
    else:
        problem, error, fix = "TensorRT cannot build an engine from the ONNX", BadInput, "check the model with `msla-deploy inspect`"
    with quiet_polygraphy(problem, fix, error=error):
        try:
            engine = loader()
        except (RuntimeError, OSError) as exc:  # CUDA initialisation: no GPU or no driver
            raise MissingRuntime(f"TensorRT could not start: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}", NO_TENSORRT_FIX) from None
    runtime = {"runtime": "tensorrt", "version": trt.__version__, "ran_on": "TensorRT", "fell_back": False, "engine": how, "tf32": False}
    return TrtRunner(engine, name="tensorrt"), runtime
