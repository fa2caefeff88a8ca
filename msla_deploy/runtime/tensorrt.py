"""TensorRT behind the Session interface: one engine loader, one way to build an engine for an
ONNX, and the direct execute_async_v3 path bench times with CUDA events.

`tensorrt` itself is imported by msla_deploy.trt.runtime (the package's single import of it) and
the GPU is probed there too, so without TensorRT or a GPU every path here ends in MissingRuntime
(exit 3). Written against TensorRT's and Polygraphy's documented APIs and tested here only
against stand-ins: this project's machines cannot install TensorRT.

- An engine file is deserialized by msla_deploy.trt.runtime.deserialize_engine (it sets what a
  version-compatible or DLA engine needs first).
- An export (directory or .onnx) is built in memory the way `msla-deploy build` plans it for the
  installed version (msla_deploy.trt.build.build_for_runtime): the version decides the graph and
  the typing, in that one place. ONNX bytes (localize's probe-marked copy) go through Polygraphy,
  strongly typed only where Polygraphy can ask for it (TensorRT >= 10).
- Runs go through runtime.trt_direct.DirectTiming: `run()` copies the inputs in and the outputs
  back, bench's `timed` measures the same enqueue with CUDA events.

Why our own runner and not Polygraphy's TrtRunner (which validate used until the runtime layer
came): what validate checks must be what bench times, one execution context, one set of device
buffers, one execute_async_v3 with the same profile shape per batch; TrtRunner makes its own
context and buffers and times nothing with CUDA events, and it deserializes engines itself, so a
version-compatible or DLA engine would load without the settings trt.runtime.deserialize_engine
gives it (as trtexec does). Polygraphy still does what it does well here: the network from ONNX
bytes above, and the error statistics of every comparison (parity/polygraphy_compare.py).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, Optional, Union

import numpy as np

from ..artifact.graph import TensorSpec
from ..artifact.names import BATCH_DIM
from ..errors import BadInput, MissingRuntime
from .polygraphy_env import quiet_polygraphy
from .session import Session

NO_TENSORRT_FIX = (
    "run on a machine with TensorRT and an NVIDIA GPU (e.g. a Jetson with JetPack), or use --backend ort-cpu"
)
# NetworkFromOnnx*(strongly_typed=True) raises before (docs/facts/tensorrt.md#engines-and-runtime)
STRONG_TYPING_IN_POLYGRAPHY = (10, 0)
#: execution contexts (with their device buffers) one session keeps for the input shapes it was fed
MAX_RUNNERS = 8


def engine_without_tensorrt_fix(command: str, onnx: Optional[Path]) -> str:
    """The fix for an .engine given by itself: --backend ort-cpu is refused for it (exit 2)."""
    target = str(onnx) if onnx is not None else "the export's model.onnx"
    return (
        "an .engine runs only on TensorRT: install TensorRT on a machine with an NVIDIA GPU, e.g. a Jetson with "
        "JetPack; "
        f"or {command} {target} instead, on ONNX Runtime"
    )


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
    except MissingRuntime as exc:  # same problem, but the fix that fits running (theirs is build's)
        raise MissingRuntime(exc.problem, NO_TENSORRT_FIX) from None
    return trt


def _version(trt):
    from ..trt.versions import parse_version

    return parse_version(str(trt.__version__))


def load_engine(trt, data: bytes, *, version_compatible: bool = False, dla_core: Optional[int] = None):
    """One loader for every engine this package runs (trt.runtime.deserialize_engine sets what a
    version-compatible or DLA engine needs first, as trtexec does)."""
    from ..trt.runtime import deserialize_engine

    return deserialize_engine(trt, data, version_compatible=version_compatible, dla_core=dla_core)


def build_export(trt, source: Path):
    """Engine for an export directory or .onnx, planned exactly as `msla-deploy build` plans it for
    the installed version (trt.build.plan_for_runtime: weakly typed from model_fp32.onnx with the
    fp32 pins on 8.x-10.11, strongly typed from the mixed-precision ONNX on 10.12+/11), nothing
    written. Returns the loaded engine and a description of how it was built."""
    from ..trt.build import build_for_runtime

    plan, built = build_for_runtime(trt, source)
    engine = load_engine(trt, built.engine, version_compatible=plan.version_compatible, dla_core=plan.dla_core)
    how = (
        f"built from {plan.onnx.name} as `msla-deploy build` plans it ({plan.precision}, {plan.typing}ly typed, "
        f"TensorRT {plan.trt_version})"
    )
    return engine, how


def build_onnx(trt, model: Union[Path, bytes], *, precision: str, fp16_flag: bool = False) -> bytes:
    """Serialized engine for an ONNX, typed the way the installed TensorRT can build it.

    TF32 stays off: fp32 layers in TF32 drift past an fp32 parity budget (NVIDIA/TensorRT #3999).
    An fp16 ONNX carries its precision in its Casts and needs strong typing; before TensorRT 10
    Polygraphy cannot ask for it, and a weakly typed build of the mixed-precision graph would not
    be the engine `build` makes, so that case is refused with the command that does it right."""
    version = _version(trt)
    strongly_typed = precision != "fp32" and not fp16_flag
    if strongly_typed and version.before(STRONG_TYPING_IN_POLYGRAPHY):
        raise BadInput(
            f"TensorRT {version} cannot build the mixed-precision {precision} ONNX strongly typed in memory",
            "build the engine with `msla-deploy build <export dir>` (weakly typed from model_fp32.onnx with the fp32 "
            "pins) and run the .engine",
        )
    from polygraphy.backend.trt import CreateConfig, NetworkFromOnnxBytes, NetworkFromOnnxPath

    kwargs = {"strongly_typed": True} if strongly_typed else {}
    parse = (
        NetworkFromOnnxPath(str(model), **kwargs) if isinstance(model, Path) else NetworkFromOnnxBytes(model, **kwargs)
    )
    config = CreateConfig(tf32=False, fp16=True) if fp16_flag else CreateConfig(tf32=False)
    from polygraphy.backend.trt import EngineBytesFromNetwork

    with quiet_polygraphy(
        "TensorRT cannot build an engine from the ONNX", "check the model with `msla-deploy inspect`", error=BadInput
    ):
        try:
            return bytes(EngineBytesFromNetwork(parse, config=config)())
        except (RuntimeError, OSError) as exc:  # CUDA initialisation: no GPU or no driver
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise MissingRuntime(f"TensorRT could not start: {first}", NO_TENSORRT_FIX) from None


class TensorRTSession(Session):
    def __init__(
        self,
        model: Union[Path, bytes],
        *,
        is_engine: bool,
        precision: str = "fp32",
        fp16_flag: bool = False,
        version_compatible: bool = False,
        dla_core: Optional[int] = None,
        export: Optional[Path] = None,
    ) -> None:
        """`model`: an engine file (is_engine), or ONNX bytes/path built with Polygraphy; `export`:
        an export directory or .onnx built the way `build` plans it (then `model` is not read)."""
        trt = require_tensorrt()
        self._trt = trt
        if is_engine:
            engine = load_engine(
                trt, Path(model).read_bytes(), version_compatible=version_compatible, dla_core=dla_core
            )
            how = "deserialized from the .engine"
        elif export is not None:
            engine, how = build_export(trt, Path(export))
        else:
            engine = load_engine(trt, build_onnx(trt, model, precision=precision, fp16_flag=fp16_flag))
            how = (
                "built from the ONNX"
                + (" (strongly typed)" if precision != "fp32" and not fp16_flag else "")
                + (" with the FP16 flag" if fp16_flag else "")
            )
        self._engine = engine
        # the DirectTiming run() uses per batch, or per input shapes where more than the batch is
        # dynamic (one for a static engine), made on first use; the last few kept
        self._runners: Dict[object, object] = {}
        self._timing = None  # bench's, with its own transfer and CUDA-graph settings
        self._contexts: list = []  # execution contexts live as long as the session
        self.backend = "trt"
        self.info = {
            "runtime": "tensorrt",
            "version": trt.__version__,
            "ran_on": "TensorRT",
            "fell_back": False,
            "engine": how,
            "tf32": False,
        }
        self.inputs, self.outputs = {}, {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            shape = tuple(int(d) for d in engine.get_tensor_shape(name))
            if shape and shape[0] < 0:
                # a dynamic batch (export --batch dynamic): named as in the ONNX, bounded by the profile
                if is_input:
                    self.max_batch = int(tuple(engine.get_tensor_profile_shape(name, 0)[2])[0])
                shape = (BATCH_DIM, *shape[1:])
            spec = TensorSpec(name, shape, np.dtype(trt.nptype(engine.get_tensor_dtype(name))).name)
            (self.inputs if is_input else self.outputs)[name] = spec
        # inputs with a dynamic dimension past the batch (SAM's decoder: points per prompt)
        self._shaped = [n for n, s in self.inputs.items() if any(isinstance(d, int) and d < 0 for d in s.shape)]

    def _direct(self, *, transfers: bool, cuda_graph: bool, batch: Optional[int], shapes=None):
        from . import cudart
        from .trt_direct import DirectTiming

        context = self._engine.create_execution_context()
        if context is None:
            raise MissingRuntime(
                "TensorRT could not create an execution context (out of device memory?)",
                "free the GPU, or use a smaller batch",
            )
        self._contexts.append(context)
        return DirectTiming(
            self._trt,
            self._engine,
            context,
            cudart.load_cudart(),
            transfers=transfers,
            cuda_graph=cuda_graph,
            batch=batch,
            shapes=shapes,
        )

    def _run(self, feeds: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        if self._shaped:  # every dynamic input's whole shape is the feed's (TensorRT checks the profile)
            dynamic = [n for n, s in self.inputs.items() if n in self._shaped or s.shape[:1] == (BATCH_DIM,)]
            shapes = {n: tuple(np.shape(feeds[n])) for n in dynamic}
            key: object = tuple(sorted(shapes.items()))
            make = lambda: self._direct(transfers=True, cuda_graph=False, batch=None, shapes=shapes)  # noqa: E731
        else:  # a dynamic batch (Session.run checked its range): the context's input shapes are set per batch size
            key = int(np.shape(next(iter(feeds.values())))[0]) if self.max_batch is not None else None
            make = lambda: self._direct(transfers=True, cuda_graph=False, batch=key)  # noqa: E731
        if key not in self._runners:
            if len(self._runners) >= MAX_RUNNERS:  # a caller cycling through shapes: drop the oldest
                oldest = self._runners.pop(next(iter(self._runners)))
                oldest.close()
                self._contexts.remove(oldest.context)
            self._runners[key] = make()
        return self._runners[key].infer(feeds)

    def start_timing(self, *, transfers: bool, cuda_graph: bool, batch: Optional[int]) -> None:
        """Direct execute_async_v3 with CUDA events (bench): `timed()` then returns GPU seconds."""
        self._timing = self._direct(transfers=transfers, cuda_graph=cuda_graph, batch=batch)
        self.timed = self._timing.timed
        self.timer = "cuda-events"
        self.info.update(transfers=transfers, cuda_graph=cuda_graph, api="tensorrt + libcudart (ctypes)")

    @property
    def timing_input_shapes(self) -> Dict[str, tuple]:
        return dict(self._timing.input_shapes) if self._timing is not None else {}

    def timing_outputs(self) -> Dict[str, np.ndarray]:
        """The outputs of the last timed run, on the host (bench checks them for NaN/Inf)."""
        return self._timing.fetch_outputs() if self._timing is not None else {}

    def close(self) -> None:
        if self._timing is not None:
            self._timing.close()
            self._timing = None
        for runner in self._runners.values():
            runner.close()
        self._runners.clear()
        self._contexts.clear()
