"""`msla-deploy package` (a Triton model repository) and `msla-deploy serve` (a local Triton
server): parse, call the library, render."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Optional

import typer

from ..artifact.names import META_RECIPE
from ..console import err, key_values, out, print_json, print_json_line, steps_with_progress
from ..errors import BadInput
from .repository import PLATFORM_CHOICES, PackageOptions, package_triton, parse_gpus
from .server import DEFAULT_HOST, DEFAULT_PORT, SERVE_BACKENDS


def package_command(
    artifact: Path = typer.Argument(..., help="Export directory, .onnx or engine (.engine/.plan/.trt).", show_default=False),
    triton: Optional[Path] = typer.Option(
        None, "--triton", help="Triton model repository to write REPO/<name>/ into (created if missing).", show_default=False),
    name: Optional[str] = typer.Option(None, "--name", "-n", help="Model name in the repository \\[default: the export directory's name]."),
    platform: str = typer.Option(
        "auto", "--platform", help=f"{' | '.join(PLATFORM_CHOICES)} (auto: tensorrt_plan where the artifact holds an engine, else onnxruntime_onnx)."),
    instances: int = typer.Option(1, "--instances", help="Model instances (instance_group count)."),
    gpus: Optional[str] = typer.Option(
        None, "--gpus",
        help="GPU indices for the instances, e.g. 0,1 \\[default: every visible GPU]. An ONNX model runs on the CPU (KIND_CPU) unless --gpus is given."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace REPO/<name>/ if msla-deploy wrote it before."),
    json_out: bool = typer.Option(False, "--json", help="Print what was written as JSON on stdout."),
) -> None:
    """Put an artifact into a Triton Inference Server model repository (config.pbtxt + 1/model.plan or model.onnx)."""
    if triton is None:
        raise BadInput("package needs a target format", "pass --triton REPO (a Triton model repository directory)")
    steps = steps_with_progress(enabled=not json_out)
    with steps.step("package", f"writing {triton}"):
        package = package_triton(PackageOptions(artifact=artifact, repository=triton, name=name, platform=platform,
                                                instances=instances, gpus=parse_gpus(gpus), overwrite=overwrite))
    if json_out:
        print_json(package.to_dict())
        return
    group = package.instance_group
    out.print(key_values([
        ("model", f"{package.name} ({package.platform})"),
        ("written", f"{package.config_path}, {package.model_path}"),
        ("inputs", ", ".join(f"{t.name} {t.dtype} {list(t.shape)}" for t in package.inputs)),
        ("outputs", ", ".join(f"{t.name} {t.dtype} {list(t.shape)}" for t in package.outputs) + f" (from {package.io_source})"),
        ("batch", f"dynamic 1..{package.layout.batch}: max_batch_size {package.layout.batch}, Triton's dynamic batcher on" if package.layout.dynamic
                  else f"static {package.layout.batch}: max_batch_size 0, the batch is in the dims"),
        ("instances", f"{group.kind} x{group.count}" + (f" on GPUs {','.join(map(str, group.gpus))}" if group.gpus else "") + f" ({group.why})"),
        ("recipe", package.parameters.get(META_RECIPE, "-")),
        ("checked", "parsed back with Triton's ModelConfig" if package.checked_with_model_config else "[yellow]not parsed back (tritonclient missing)[/]"),
    ]))
    for note in package.notes:
        err.print(f"[yellow]note:[/] {note}", highlight=False)


def serve_command(
    artifact: Path = typer.Argument(..., help="Export directory or .onnx to serve.", show_default=False),
    host: str = typer.Option(DEFAULT_HOST, "--host", help="Address to listen on (gRPC). Anything but the loopback exposes the model to the network."),
    port: int = typer.Option(DEFAULT_PORT, "--port", "-p", help="gRPC port (triton://HOST:PORT/MODEL reaches it)."),
    name: Optional[str] = typer.Option(None, "--name", "-n", help="Model name \\[default: the export directory's name]."),
    backend: str = typer.Option(
        "auto", "--backend",
        help=f"What runs the model in the server: {' | '.join(SERVE_BACKENDS)} (auto: TensorRT for an engine, else ONNX Runtime, CUDA if present)."),
    json_out: bool = typer.Option(False, "--json", help="Print the server's description as JSON (one line) once it is ready."),
) -> None:
    """Serve an artifact through a real Triton Inference Server (PyTriton) until Ctrl-C or SIGTERM."""
    from .server import serve_until_stopped, start_server

    if host not in ("127.0.0.1", "localhost", "::1"):
        err.print(f"[yellow]warning:[/] listening on {host}: the model is reachable from the network, without authentication", highlight=False)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        steps = steps_with_progress(enabled=not json_out)
        with steps.step("start", "starting Triton Inference Server"):
            server = start_server(artifact, host=host, port=port, name=name, backend=backend)
        try:
            if json_out:
                print_json_line(server.describe())
            else:
                b = server.batching
                out.print(key_values([
                    ("serving", f"{server.model} from {server.artifact}"),
                    ("url", f"[bold]{server.url}[/]"),
                    ("batching", ("dynamic, up to " + str(b.max_batch_size) if b.dynamic else "none") + f" ({b.why})"),
                    ("model runs on", f"{server.runner.get('runtime')} {server.runner.get('version')} on {server.runner.get('ran_on')}"),
                    ("stop", "Ctrl-C or SIGTERM"),
                ]))
            sys.stdout.flush()
            serve_until_stopped(server, stop)
        finally:
            server.stop()  # also when printing fails; stop() is idempotent
        err.print("stopped", highlight=False)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
