"""`msla-deploy package` (a Triton model repository) and `msla-deploy serve` (a local Triton
server): parse, call the library, render."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import List, Optional, Tuple

import typer
from rich.markup import escape

from ..artifact.names import META_RECIPE, TRITON_SCHEME
from ..choices import NonTorchBackend, Platform
from ..cli_options import (
    AUTO_BACKEND,
    artifact_argument,
    command_line,
    json_option,
    name_option,
    next_command,
    overwrite_option,
)
from ..console import (
    err,
    key_values,
    out,
    print_json,
    print_json_line,
    print_next,
    steps_with_progress,
    warn_random_weights,
    weights_cell,
)
from ..errors import BadInput
from .address import DEFAULT_HOST, DEFAULT_PORT


def package_command(
    artifact: Path = artifact_argument(),
    triton: Optional[Path] = typer.Option(
        None,
        "--triton",
        help="Triton model repository to write REPO/<name>/ into (created if missing).",
        show_default=False,
    ),
    name: Optional[str] = name_option(),
    platform: Platform = typer.Option(
        Platform.AUTO,
        "--platform",
        help="Triton's platform (auto: tensorrt_plan where the artifact holds an engine, else onnxruntime_onnx).",
    ),
    instances: int = typer.Option(1, "--instances", help="Model instances (instance_group count)."),
    gpus: Optional[str] = typer.Option(
        None,
        "--gpus",
        help=(
            "GPU indices for the instances, e.g. 0,1 [default: every visible GPU]. An ONNX model runs on the CPU "
            "(KIND_CPU) unless --gpus is given."
        ),
    ),
    overwrite: bool = overwrite_option("Replace REPO/<name>/ if msla-deploy wrote it before."),
    labels: Optional[Path] = typer.Option(
        None,
        "--labels",
        help="A classifier's class names, one a line in class-index order, written as labels.txt for Triton's "
        "classification extension [default: ImageNet-1k for the zoo's 1000-class models].",
        show_default=False,
    ),
    json_out: bool = json_option("what was written"),
) -> None:
    """Put an artifact into a Triton Inference Server model repository (config.pbtxt + 1/model.plan or model.onnx)."""
    from .repository import PackageOptions, package_triton, parse_gpus

    if triton is None:
        raise BadInput("package needs a target format", "pass --triton REPO (a Triton model repository directory)")
    steps = steps_with_progress(enabled=not json_out)
    with steps.step("package", f"writing {triton}"):
        package = package_triton(
            PackageOptions(
                artifact=artifact,
                repository=triton,
                name=name,
                platform=platform,
                instances=instances,
                gpus=parse_gpus(gpus),
                overwrite=overwrite,
                labels=labels,
            )
        )
    if json_out:
        print_json(package.to_dict())
        return
    warn_random_weights(package.weights_warning)
    if getattr(package, "models", None) is not None:  # SAM: its encoder and decoder models
        _print_sam_package(package)
        print_next(next_after_package(artifact, triton, package.name, "onnxruntime_onnx", validate=False))
        return
    group = package.instance_group
    out.print(
        key_values(
            [
                ("model", f"{package.name} ({package.platform})"),
                ("written", f"{package.config_path}, {package.model_path}"),
                ("inputs", ", ".join(f"{t.name} {t.dtype} {list(t.shape)}" for t in package.inputs)),
                (
                    "outputs",
                    ", ".join(f"{t.name} {t.dtype} {list(t.shape)}" for t in package.outputs)
                    + f" (from {package.io_source})",
                ),
                (
                    "batch",
                    f"dynamic 1..{package.layout.batch}: max_batch_size {package.layout.batch}, Triton's dynamic "
                    "batcher on"
                    if package.layout.dynamic
                    else f"static {package.layout.batch}: max_batch_size 0, the batch is in the dims",
                ),
                (
                    "instances",
                    f"{group.kind} x{group.count}"
                    + (f" on GPUs {','.join(map(str, group.gpus))}" if group.gpus else "")
                    + f" ({group.why})",
                ),
                ("class names", _labels_cell(package.labels)),
                ("recipe", package.parameters.get(META_RECIPE, "-")),
                ("weights", weights_cell(package.weights_source, package.weights_warning)),
                (
                    "checked",
                    "parsed back with Triton's ModelConfig"
                    if package.checked_with_model_config
                    else "[yellow]not parsed back (tritonclient missing)[/]",
                ),
            ]
        )
    )
    for note in package.notes:
        err.print(f"[yellow]note:[/] {note}", highlight=False)
    print_next(next_after_package(artifact, triton, package.name, package.platform))


def _print_sam_package(package) -> None:
    rows = []
    for model in package.models:
        layout = model.layout
        rows.append(
            (
                model.name,
                f"{model.model_path} ({model.platform}, "
                + (
                    f"dynamic batching over prompts, up to {layout.batch}: max_batch_size {layout.batch})"
                    if layout.dynamic
                    else "no batching: one picture a call)"
                ),
            )
        )
        rows.append(("  inputs", ", ".join(f"{t.name} {list(t.shape)}" for t in model.inputs)))
    first = package.models[0]
    rows += [
        ("instances", f"{first.instance_group.kind} x{first.instance_group.count} ({first.instance_group.why})"),
        ("recipe", first.parameters.get(META_RECIPE, "-")),
        ("weights", weights_cell(package.weights_source, package.weights_warning)),
        (
            "client",
            f'SamPredictor("{TRITON_SCHEME}HOST:{DEFAULT_PORT}/{package.name}"); every model folder\'s README.md '
            "says what to send",
        ),
        (
            "checked",
            "parsed back with Triton's ModelConfig"
            if package.checked_with_model_config
            else "[yellow]not parsed back (tritonclient missing)[/]",
        ),
    ]
    out.print(key_values(rows))
    for note in package.notes:
        err.print(f"[yellow]note:[/] {note}", highlight=False)


def _labels_cell(labels) -> str:
    if labels is None:
        return "-"
    return (
        f"{len(labels.names)} ({escape(labels.source)}) in labels.txt: label_filename of {', '.join(labels.outputs)} "
        "(Triton's classification extension)"
    )


def next_after_package(
    artifact: Path, repository: Path, name: str, platform: str, validate: bool = True
) -> List[Tuple[str, str]]:
    """Run the repository in NVIDIA's Triton container (or, for an ONNX, `serve` here), then check what it serves."""
    url = f"{TRITON_SCHEME}127.0.0.1:{DEFAULT_PORT}/{name}"
    docker = (
        command_line(
            "docker",
            "run",
            "--rm",
            "--gpus",
            "all",
            "-p",
            f"{DEFAULT_PORT}:{DEFAULT_PORT}",
            "-v",
            f"{Path(repository).resolve()}:/models",
        )
        + " nvcr.io/nvidia/tritonserver:<yy.mm>-py3 tritonserver --model-repository=/models"
    )
    steps = [
        (
            docker,
            "<yy.mm>: the Triton release with the TensorRT that built the engine"
            if platform == Platform.TENSORRT_PLAN.value
            else "any recent <yy.mm>: Triton's ONNX Runtime backend",
        )
    ]
    if platform == Platform.ONNXRUNTIME_ONNX.value:
        steps.append((next_command("serve", artifact, "--name", name), "or serve it here, without the container"))
    if validate:  # (a SAM pair is checked through SamPredictor(url), not validate)
        steps.append((next_command("validate", artifact, "--backend", url), "parity of the served model"))
    return steps


def serve_command(
    artifact: Path = artifact_argument("Export directory or .onnx to serve."),
    host: str = typer.Option(
        DEFAULT_HOST,
        "--host",
        help="Address to listen on (gRPC). Anything but the loopback exposes the model to the network.",
    ),
    port: int = typer.Option(DEFAULT_PORT, "--port", "-p", help="gRPC port (triton://HOST:PORT/MODEL reaches it)."),
    name: Optional[str] = name_option(),
    backend: NonTorchBackend = typer.Option(
        NonTorchBackend.AUTO, "--backend", help=f"What runs the model in the server ({AUTO_BACKEND})."
    ),
    json_out: bool = json_option(help="Print the server's description as JSON (one line) once it is ready."),
) -> None:
    """Serve an artifact through a real Triton Inference Server (PyTriton) until Ctrl-C or SIGTERM."""
    from .server import serve_until_stopped, start_server

    if host not in ("127.0.0.1", "localhost", "::1"):
        err.print(
            f"[yellow]warning:[/] listening on {host}: the model is reachable from the network, without authentication",
            highlight=False,
        )
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
                warn_random_weights(server.weights_warning)
                b = server.batching
                models = [(f"  {m}", f"{d['graph']}: {d['batching']['why']}") for m, d in server.models.items()]
                out.print(
                    key_values(
                        [
                            ("serving", f"{server.model} from {server.artifact}"),
                            *models,
                            ("weights", weights_cell(server.weights_source, server.weights_warning)),
                            ("url", f"[bold]{server.url}[/]"),
                            (
                                "batching",
                                ("dynamic, up to " + str(b.max_batch_size) if b.dynamic else "none") + f" ({b.why})",
                            ),
                            (
                                "model runs on",
                                f"{server.runner.get('runtime')} {server.runner.get('version')} on "
                                f"{server.runner.get('ran_on')}",
                            ),
                            ("stop", "Ctrl-C or SIGTERM"),
                        ]
                    )
                )
            sys.stdout.flush()
            serve_until_stopped(server, stop)
        finally:
            server.stop()  # also when printing fails; stop() is idempotent
        err.print("stopped", highlight=False)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
