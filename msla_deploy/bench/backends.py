"""One loaded model on one backend, as a callable that runs one iteration.

Each loader returns a `Loaded`: `run()` does one inference and returns when its results are
ready (host copies included unless the TensorRT backend is told not to transfer), so a host
clock around it measures what an application waits for. ONNX Runtime provider choice and the
fallback rule are validate's (msla_deploy.parity.runners); TensorRT is driven directly and times
itself with CUDA events (`Loaded.timed`, msla_deploy.bench.trt_direct); PyTorch is imported only
by the torch backend.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Optional

from ..errors import BadInput, MissingRuntime
from ..parity import runners
from ..parity.onnxruntime_run import import_onnxruntime
from .artifact import BenchArtifact, onnx_inputs, random_feeds

BACKENDS = ("auto", "torch", "ort-cpu", "ort-cuda", "ort-trt", "trt")


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


def choose(requested: str, artifact: BenchArtifact) -> runners.Backend:
    """The backend that will run, before anything is loaded (so bad combinations exit 2 early)."""
    if requested not in BACKENDS:
        raise BadInput(f"--backend {requested!r} is unknown", f"choose one of {', '.join(BACKENDS)}")
    if requested == "torch":
        if not (artifact.manifest or {}).get("options"):
            raise BadInput(f"--backend torch: {artifact.path} has no export manifest to rebuild the PyTorch model from", "pass the export directory written by msla-deploy export")
        return runners.Backend("torch", "torch", strict=True)
    if artifact.onnx_path is None and requested not in ("auto", "trt"):
        raise BadInput(f"--backend {requested}: {artifact.path} is a TensorRT engine, which runs only on TensorRT", "use --backend trt, or bench the .onnx")
    if requested == "trt" or (requested == "auto" and artifact.onnx_path is None):
        if artifact.onnx_path is None or artifact.path.is_dir():
            if len(artifact.engines) > 1:
                raise BadInput(f"{artifact.path} holds {len(artifact.engines)} engines", "pass the .engine to benchmark")
        return runners.Backend(requested, "trt", strict=True)
    return runners.choose_backend(requested, is_engine=False)


def preflight(backend: runners.Backend) -> None:
    """A runtime that is certainly missing fails before any model is loaded (exit 3)."""
    if backend.name == "torch":
        from ..parity.torch_reference import require_torch

        require_torch("--backend torch", "bench another backend: --backend ort-cpu")
    else:
        runners.preflight(backend)


def load(artifact: BenchArtifact, backend: runners.Backend, *, batch: Optional[int], threads: Optional[int], transfers: bool = True,
         cuda_graph: bool = False) -> Loaded:
    if backend.name == "torch":
        return _load_torch(artifact, batch, threads)
    if backend.name == "trt":
        return _load_tensorrt(artifact, batch, transfers, cuda_graph)
    return _load_onnxruntime(artifact, backend, batch, threads)


def _load_onnxruntime(artifact: BenchArtifact, backend: runners.Backend, batch, threads) -> Loaded:
    # A session of our own rather than Polygraphy's SessionFromOnnx: --threads needs SessionOptions,
    # and the run loop should time ORT, not a runner's per-call input checks.
    ort = import_onnxruntime()
    ort.set_default_logger_severity(3)
    runners._require_provider(backend)  # validate's check: the named provider must be built in
    available = ort.get_available_providers()
    providers = [p for p in runners._ORT_PROVIDERS[backend.name] if p in available]
    options = ort.SessionOptions()
    # ORT's idle workers spin after each run; in an interleaved comparison on a small machine they
    # steal the cores from whichever backend runs next and bias its times (seen: torch 2x slower)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    specs, model_batch = onnx_inputs(artifact.onnx_path, batch)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a dropped provider is reported below, not as a warning
            session = ort.InferenceSession(str(artifact.onnx_path), sess_options=options, providers=providers)
    except Exception as exc:  # ORT's own RuntimeError subclasses for graphs it cannot load
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BadInput(f"ONNX Runtime cannot load {artifact.onnx_path}: {first}", "re-export it, or check that the file was copied whole") from None
    active = session.get_providers()
    runtime = {"runtime": "onnxruntime", "version": ort.__version__, "providers_requested": providers, "providers_active": active,
               "ran_on": active[0], "fell_back": active[0] != providers[0], "intra_op_threads": threads}
    if runtime["fell_back"]:
        message = f"ONNX Runtime fell back from {providers[0]} to {active[0]} (the GPU provider could not start)"
        if backend.strict:  # timing the CPU under a GPU backend's name would be a false figure
            raise MissingRuntime(f"--backend {backend.requested}: {message}", "fix the CUDA setup, or use --backend ort-cpu")
        runtime["note"] = message
    feeds = random_feeds(specs)
    names = [o.name for o in session.get_outputs()]
    return Loaded(backend.name, lambda: session.run(names, feeds), runtime, model_batch)


def _load_torch(artifact: BenchArtifact, batch, threads) -> Loaded:
    from ..parity.torch_reference import rebuild_model

    module = rebuild_model(artifact.manifest, "--backend torch")  # same model and weights as the export
    import torch

    if artifact.onnx_path is not None:
        specs, model_batch = onnx_inputs(artifact.onnx_path, batch)
        shape, dtype = next(iter(specs.values()))
    else:  # an engine-only directory: the export options say the shape
        options = artifact.manifest["options"]
        model_batch = int(options.get("batch", 1))
        shape, dtype = (model_batch, 3, *options.get("resolution", (1024, 2048))), "float32"
    x = torch.from_numpy(next(iter(random_feeds({"x": (tuple(shape), dtype)}).values())))
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)  # process-wide: put back in close()

    def run():
        with torch.inference_mode():
            return module(x)

    runtime = {"runtime": "torch", "version": torch.__version__, "ran_on": "PyTorch eager (CPU)", "fell_back": False, "intra_op_threads": torch.get_num_threads()}
    return Loaded("torch", run, runtime, model_batch, close=lambda: torch.set_num_threads(previous))


def _load_tensorrt(artifact: BenchArtifact, batch, transfers: bool, cuda_graph: bool = False) -> Loaded:
    """TensorRT timed directly with CUDA events (msla_deploy.bench.trt_direct), like trtexec: an
    .engine is deserialized with tensorrt.Runtime; an ONNX is built by validate's Polygraphy loader
    and its engine and context are then driven directly. With transfers, each run copies inputs to
    the device and outputs back (what an application pays); without, it does not (trtexec's
    --noDataTransfers). `--cuda-graph` launches a CUDA graph of the enqueue captured at load.
    Written against TensorRT's documented API; not exercised on this project's machines."""
    from ..parity import tensorrt as parity_trt
    from . import cudart
    from .trt_direct import DirectTiming

    single_engine = artifact.engines[0] if len(artifact.engines) == 1 and (artifact.onnx_path is None or artifact.path.suffix != ".onnx") else None
    trt = parity_trt.require_tensorrt()
    lib = cudart.load_cudart()
    keep: list = []  # the Runtime and runner outlive the engine and context
    if single_engine is not None:
        runtime_object = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        engine = runtime_object.deserialize_cuda_engine(Path(single_engine).read_bytes())
        if engine is None:
            raise BadInput(f"TensorRT cannot deserialize {single_engine}", "engines are specific to one GPU and TensorRT version: rebuild it on this machine")
        context = engine.create_execution_context()
        if context is None:
            raise MissingRuntime("TensorRT could not create an execution context (out of device memory?)", "free the GPU, or use a smaller batch")
        keep += [runtime_object, engine, context]
        runtime = {"runtime": "tensorrt", "version": trt.__version__, "ran_on": "TensorRT", "fell_back": False, "engine": "deserialized from the .engine"}
        release = lambda: None  # noqa: E731
    else:
        strongly_typed = artifact.precision() == "fp16"
        runner, runtime = parity_trt.tensorrt_runner(artifact.onnx_path, is_engine=False, strongly_typed=strongly_typed)
        runner.activate()
        engine, context, release = runner.engine, runner.context, runner.deactivate
    try:
        timing = DirectTiming(trt, engine, context, lib, transfers=transfers, cuda_graph=cuda_graph, batch=batch)
    except BaseException:
        release()
        raise
    model_batch = next(iter(timing.input_shapes.values()))[0] if timing.input_shapes else 1
    if batch is not None and batch != model_batch:
        timing.close()
        release()
        raise BadInput(f"--batch {batch}: the engine's batch is {model_batch}", f"rebuild for batch {batch}, or drop --batch")
    runtime = dict(runtime, transfers=transfers, cuda_graph=cuda_graph, api="tensorrt + libcudart (ctypes)")

    def close():
        timing.close()
        release()
        keep.clear()

    return Loaded("trt", timing.timed, runtime, model_batch, close=close, timed=timing.timed, timer="cuda-events")
