"""Serve an artifact through a real Triton Inference Server on this machine, without NVIDIA's
container: PyTriton starts the tritonserver binary it bundles, whose Python backend hands each
request to a function in this process, where a runtime session (msla_deploy.runtime: ONNX Runtime,
or TensorRT for an engine) runs the model.

Only the gRPC endpoint is opened (HTTP and metrics stay off), on 127.0.0.1 unless told
otherwise; `triton://HOST:PORT/MODEL` reaches it (msla_deploy.runtime.triton).

Batching follows the artifact: a static batch-1 export is served with `max_batch_size: 0`, one
request at a time (nothing to batch into). A static batch-N export (N > 1) is served with
Triton's dynamic batcher up to N: requests of 1..N pictures are gathered, padded to N by
repeating the last picture, run as one batch, and each request gets its own rows back. A
dynamic-batch export (export --batch dynamic --max-batch N) is batched the same way, unpadded.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sysconfig
import tempfile
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional

import numpy as np

from ..artifact.files import package_version
from ..artifact.names import TRITON_SCHEME
from ..choices import NON_TORCH_BACKENDS
from ..errors import BadInput, MissingRuntime, install_extra, one_line_text
from . import deps
from .address import DEFAULT_HOST, DEFAULT_PORT
from .model_io import (
    MAX_QUEUE_DELAY_US,
    Artifact,
    BatchLayout,
    TensorSpec,
    batch_layout,
    check_model_name,
    default_name,
    open_artifact,
)

START_TIMEOUT_S = 120
EXIT_TIMEOUT_S = 5  # in-flight requests get this long at stop


Runner = Callable[[Dict[str, np.ndarray]], Dict[str, np.ndarray]]


SERVE_BACKENDS = NON_TORCH_BACKENDS  # PyTorch does not serve: the model runs from its export


def open_runner(art: Artifact, backend: str = "auto"):
    """The runtime session that runs the model inside the serving process (auto: TensorRT for an
    engine, ONNX Runtime with CUDA where present, else on the CPU)."""
    from .. import runtime

    chosen = runtime.choose(backend, art, allowed=SERVE_BACKENDS, command="serve")
    runtime.preflight(chosen)
    return runtime.open(art, chosen, command="serve")


@dataclass
class Batching:
    dynamic: bool
    max_batch_size: int  # 0: no batching by Triton, the batch is in the dims
    why: str
    pad: bool = True  # a static graph takes exactly max_batch_size rows

    def to_dict(self) -> Dict:
        return {"dynamic": self.dynamic, "max_batch_size": self.max_batch_size, "why": self.why}


def batching_for(layout: BatchLayout) -> Batching:
    batch = layout.batch
    if layout.dynamic:
        return Batching(
            True, batch, f"dynamic batch 1..{batch}: Triton gathers up to {batch} pictures, run as gathered", pad=False
        )
    if batch > 1:
        return Batching(True, batch, f"static batch {batch}: Triton gathers up to {batch} pictures, padded to {batch}")
    return Batching(False, 0, "static batch 1: one picture per run, nothing to batch (export --batch N for batching)")


def _infer_function(run: Runner, inputs: List[TensorSpec], outputs: List[TensorSpec], batching: Batching):
    names = [t.name for t in inputs]

    if not batching.dynamic:

        def infer(requests):
            return [run({n: np.asarray(r[n]) for n in names}) for r in requests]

        return infer

    size = batching.max_batch_size

    def infer_batched(requests):
        counts = [int(np.asarray(r[names[0]]).shape[0]) for r in requests]
        stacked = {n: np.concatenate([np.asarray(r[n]) for r in requests]) for n in names}
        total = sum(counts)
        results: Dict[str, List[np.ndarray]] = {t.name: [] for t in outputs}
        for start in range(0, total, size):  # the batcher never sends more than `size`; stay safe anyway
            chunk = {n: v[start : start + size] for n, v in stacked.items()}
            rows = next(iter(chunk.values())).shape[0]
            if rows < size and batching.pad:  # the graph takes exactly `size`: repeat the last picture
                chunk = {n: np.concatenate([v, np.repeat(v[-1:], size - rows, axis=0)]) for n, v in chunk.items()}
            out = run(chunk)
            for name in results:
                results[name].append(out[name][:rows])
        joined = {name: np.concatenate(parts) for name, parts in results.items()}
        answers, offset = [], 0
        for count in counts:
            answers.append({name: value[offset : offset + count] for name, value in joined.items()})
            offset += count
        return answers

    return infer_batched


def check_port_free(host: str, port: int) -> None:
    """gRPC binds with SO_REUSEPORT: a second server on a taken port would share it silently.
    A plain bind here fails on a port anyone holds."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise BadInput(
                f"cannot listen on {host}:{port} ({exc.strerror or exc})",
                "choose another --port, or stop what holds it",
            ) from None


def free_port(host: str = DEFAULT_HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _own_libpython() -> Iterator[None]:
    """The Python backend's stub embeds libpython and finds it through the dynamic loader; on a
    pyenv/conda/venv Python that can be the system's libpython of another patch release, which
    then fails on this interpreter's standard library. Put ours first while the server starts
    (it copies os.environ then)."""
    libdir, soname = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("INSTSONAME")
    old = os.environ.get("LD_LIBRARY_PATH")
    if libdir and soname and (Path(libdir) / soname).exists():
        os.environ["LD_LIBRARY_PATH"] = libdir + (":" + old if old else "")
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("LD_LIBRARY_PATH", None)
        else:
            os.environ["LD_LIBRARY_PATH"] = old


def _log_tail(log: Path, lines: int = 200) -> str:
    try:
        text = log.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    errors = [line for line in text if line[:1] == "E" or "error" in line.lower()]
    return one_line_text(errors[-1] if errors else (text[-1] if text else ""), 300)


@dataclass
class Server:
    """A running Triton server with one model. stop() (or leaving the `with`) shuts it down."""

    url: str
    host: str
    port: int
    model: str
    artifact: Path
    inputs: List[TensorSpec]
    outputs: List[TensorSpec]
    batching: Batching
    runner: Dict
    log_file: Path
    weights_source: Optional[str] = None  # the manifest's weights.source (None: no manifest says)
    weights_warning: Optional[str] = None  # random weights: said in the header and the description
    models: Dict[str, Dict] = field(default_factory=dict)  # a server of several models (SAM): each one's tensors
    _triton: object = field(repr=False, default=None)
    _workdir: Optional[Path] = field(repr=False, default=None)
    _session: object = field(repr=False, default=None)
    _stopped: bool = field(repr=False, default=False)
    _lock: threading.Lock = field(repr=False, default_factory=threading.Lock)

    def is_alive(self) -> bool:
        return not self._stopped and bool(self._triton.is_alive())

    def stop(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    self._triton.stop()
            finally:
                if self._session is not None:
                    self._session.close()
                if self._workdir is not None:
                    shutil.rmtree(self._workdir, ignore_errors=True)

    def describe(self) -> Dict:
        return {
            "url": self.url,
            "host": self.host,
            "port": self.port,
            "protocol": "grpc",
            "model": self.model,
            "artifact": str(self.artifact),
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "batching": self.batching.to_dict(),
            "model_runs_on": self.runner,
            "weights_source": self.weights_source,
            "weights_warning": self.weights_warning,
            **({"models": self.models} if self.models else {}),
            "server": {
                "tritonserver": "bundled with nvidia-pytriton",
                "nvidia-pytriton": package_version("nvidia-pytriton"),
            },
        }

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *_) -> None:
        self.stop()


def start_server(
    artifact: Path,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    name: Optional[str] = None,
    backend: str = "auto",
) -> Server:
    """Start Triton with the artifact's model, run by a runtime session (`backend`), and return
    once it is ready to answer."""
    pytriton = deps.pytriton()
    art = open_artifact(artifact)
    model = check_model_name(name) if name is not None else default_name(art)
    if not 0 < port < 65536:
        raise BadInput(f"--port {port} is out of range", "choose a port between 1 and 65535")
    check_port_free(host, port)
    if art.graph_roles:  # SAM: its encoder and decoder as two models (serve/sam_server.py)
        from .sam_server import start_sam

        return start_sam(pytriton, art, host=host, port=port, name=model, backend=backend)
    session = open_runner(art, backend)
    try:
        return _start_triton(pytriton, art, session, host=host, port=port, model=model)
    except BaseException:
        session.close()
        raise


@dataclass
class Binding:
    """One model of a server: its name, the function that answers its requests, its tensors and config."""

    model: str
    infer: Callable
    inputs: List  # PyTriton Tensors
    outputs: List
    config: object  # PyTriton's ModelConfig


def pytriton_config(pytriton, batching: Batching):
    ModelConfig, DynamicBatcher = pytriton[2], pytriton[3]
    if not batching.dynamic:
        return ModelConfig(batching=False)
    return ModelConfig(
        batching=True,
        max_batch_size=batching.max_batch_size,
        batcher=DynamicBatcher(max_queue_delay_microseconds=MAX_QUEUE_DELAY_US),
    )


def launch(pytriton, bindings: List[Binding], *, host: str, port: int):
    """Start one Triton server with every binding as a model; (triton, workdir, log file) once ready."""
    Triton, TritonConfig = pytriton[0], pytriton[1]
    workdir = Path(tempfile.mkdtemp(prefix="msla-serve-"))
    log_file = workdir / "tritonserver.log"
    triton_config = TritonConfig(
        grpc_address=host,
        grpc_port=port,
        allow_http=False,
        allow_metrics=False,
        allow_gpu_metrics=False,
        allow_cpu_metrics=False,
        log_file=log_file,
        exit_on_error=True,
        exit_timeout_secs=EXIT_TIMEOUT_S,
    )
    triton = None
    try:
        triton = Triton(config=triton_config, workspace=workdir / "workspace")
        for b in bindings:
            triton.bind(
                model_name=b.model, infer_func=b.infer, inputs=b.inputs, outputs=b.outputs, config=b.config, strict=True
            )
        with _own_libpython(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PyTriton's own client warns that gRPC ignores its timeouts
            triton.run()
    except Exception as exc:
        reason = _log_tail(log_file) or one_line_text(exc)
        if triton is not None:
            with contextlib.suppress(Exception):
                triton.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        raise MissingRuntime(
            f"Triton server could not start on {host}:{port}: {reason}",
            f"check that nvidia-pytriton installed whole ({install_extra('serve')})",
        ) from None
    return triton, workdir, log_file


def url_of(host: str, port: int, model: str) -> str:
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return f"{TRITON_SCHEME}{address}/{model}"


def _start_triton(pytriton, art: Artifact, session, *, host: str, port: int, model: str) -> Server:
    Tensor = pytriton[4]
    inputs, outputs = list(session.inputs.values()), list(session.outputs.values())
    batching = batching_for(batch_layout(inputs, outputs, session.max_batch, str(art.path)))

    def tensors(specs: List[TensorSpec]):
        return [
            Tensor(name=t.name, dtype=np.dtype(t.dtype).type, shape=t.shape[1:] if batching.dynamic else t.shape)
            for t in specs
        ]

    binding = Binding(
        model,
        _infer_function(session.run, inputs, outputs, batching),
        tensors(inputs),
        tensors(outputs),
        pytriton_config(pytriton, batching),
    )
    triton, workdir, log_file = launch(pytriton, [binding], host=host, port=port)
    return Server(
        url=url_of(host, port, model),
        host=host,
        port=port,
        model=model,
        artifact=Path(art.path),
        inputs=inputs,
        outputs=outputs,
        batching=batching,
        runner=session.describe(),
        log_file=log_file,
        weights_source=art.weights_source,
        weights_warning=art.weights_warning,
        _triton=triton,
        _workdir=workdir,
        _session=session,
    )


def serve_until_stopped(server: Server, stop: threading.Event, poll_s: float = 1.0) -> None:
    """Block until `stop` is set (Ctrl-C / SIGTERM in the CLI) or the server dies (MissingRuntime)."""
    try:
        while not stop.wait(poll_s):
            if not server.is_alive():
                raise MissingRuntime(
                    f"the Triton server at {server.url} exited ({_log_tail(server.log_file) or 'no reason logged'})",
                    "see the log above, then start it again",
                )
    finally:
        server.stop()
