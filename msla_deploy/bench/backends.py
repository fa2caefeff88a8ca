"""One loaded model on one backend, as a callable that runs one iteration.

Each loader returns a `Loaded`: `run()` does one inference and returns when its results are
ready (host copies included unless the TensorRT backend is told not to transfer), so a host
clock around it measures what an application waits for. ONNX Runtime provider choice and the
fallback rule are validate's (msla_deploy.parity.runners); TensorRT goes through Polygraphy's
TrtRunner via validate's loader; PyTorch is imported only by the torch backend.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
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


def load(artifact: BenchArtifact, backend: runners.Backend, *, batch: Optional[int], threads: Optional[int], transfers: bool = True) -> Loaded:
    if backend.name == "torch":
        return _load_torch(artifact, batch, threads)
    if backend.name == "trt":
        return _load_tensorrt(artifact, batch, transfers)
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


def _load_tensorrt(artifact: BenchArtifact, batch, transfers: bool) -> Loaded:
    """Polygraphy's TrtRunner (TensorRT's documented API underneath). With transfers, each run
    copies inputs to the device and outputs back (what an application pays); without, inputs stay
    on the device and outputs are not copied (trtexec's --noDataTransfers). The runner
    synchronises its stream before returning, so a host clock is valid. Only runs where TensorRT
    and a GPU exist; written against the documented API, not exercised on this project's machines."""
    from ..parity.tensorrt import tensorrt_runner

    single_engine = artifact.engines[0] if len(artifact.engines) == 1 and (artifact.onnx_path is None or artifact.path.suffix != ".onnx") else None
    model = single_engine or artifact.onnx_path
    strongly_typed = single_engine is None and artifact.precision() == "fp16"
    runner, runtime = tensorrt_runner(model, is_engine=single_engine is not None, strongly_typed=strongly_typed)
    runner.activate()
    metadata = runner.get_input_metadata()
    specs = {name: (tuple(meta.shape), meta.dtype) for name, meta in metadata.items()}
    model_batch = next(iter(specs.values()))[0][0]
    if batch is not None and batch != model_batch:
        runner.deactivate()
        raise BadInput(f"--batch {batch}: the engine's batch is {model_batch}", f"rebuild for batch {batch}, or drop --batch")
    feeds = random_feeds(specs)
    runtime = dict(runtime, transfers=transfers)
    if transfers:
        return Loaded("trt", lambda: runner.infer(feeds), runtime, model_batch, close=runner.deactivate)

    from polygraphy import cuda

    device_feeds = {name: cuda.DeviceArray(shape=a.shape, dtype=a.dtype).copy_from(a) for name, a in feeds.items()}

    def close():
        runner.deactivate()
        for array in device_feeds.values():
            array.free()

    return Loaded("trt", lambda: runner.infer(device_feeds, copy_outputs_to_host=False), runtime, model_batch, close=close)
