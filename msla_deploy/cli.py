"""The `msla-deploy` command line: one small function per command (parse, call the API, render).

Exit codes: 0 ok, 1 checks ran and failed, 2 bad input, 3 missing runtime.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape

from . import __version__
from .artifact.names import MANIFEST_NAME, PARITY_NAME
from .console import checks_table, err, error_line, key_values, out, print_json, steps_with_progress
from .errors import BadInput, MissingRuntime, MslaError, one_line_text

app = typer.Typer(
    name="msla-deploy",
    help="Export EfficientViT / LiteMLA models to static ONNX (and TensorRT), and prove parity with PyTorch.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, like Ctrl-C: every cleanup that runs for an
    interrupt (staging directories, locks, temp files) runs for a terminate too."""


#: exit codes of an interrupted run: 128 + the signal, what shells and CI runners report
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143


def _raise_terminated(signum, frame):
    raise Terminated()


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM raises Terminated for the command's duration (main thread only: Python delivers
    signals there), then the earlier handler comes back."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _stdout_for_json(json_out: bool):
    """With --json, stdout carries the JSON document only: anything else printed meanwhile (a
    user factory or model that prints, a library's notice) goes to stderr."""
    if not json_out:
        yield
        return
    from . import console

    console.json_stream = sys.stdout
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        console.json_stream = None


def handle_errors(command):
    """Expected failures become one line on stderr and their exit code, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            with _sigterm_as_interrupt(), _stdout_for_json(bool(kwargs.get("json_out"))):
                return command(*args, **kwargs)
        except MslaError as exc:
            error_line(exc.one_line())
            raise typer.Exit(exc.exit_code) from None
        except (typer.Exit, typer.Abort):  # deliberate exits carry their own code
            raise
        except Terminated:
            error_line("terminated (SIGTERM); staged writes were removed")
            raise typer.Exit(EXIT_TERMINATED) from None
        except KeyboardInterrupt:
            error_line("interrupted; staged writes were removed")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except OSError as exc:  # a path we were given cannot be read or written
            where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
            error_line(f"cannot use{where}: {exc.strerror or exc} (check the path and its permissions)")
            raise typer.Exit(BadInput.exit_code) from None
        except Exception as exc:  # a bug of ours: one line, traceback on request
            if os.environ.get("MSLA_DEPLOY_DEBUG"):
                raise
            error_line(f"internal error: {type(exc).__name__}: {exc} (set MSLA_DEPLOY_DEBUG=1 for the traceback)")
            raise typer.Exit(1) from None

    return wrapper


def import_torch():
    """torch, or MissingRuntime (exit 3): not installed, or installed but broken (a missing
    shared library, a half-finished upgrade), which is no bug of ours and no failed check."""
    try:
        import torch
    except ImportError as exc:
        if exc.name == "torch":
            raise MissingRuntime(f"this command needs PyTorch ({exc})", "pip install torch, then 'msla-deploy[export]'") from None
        raise MissingRuntime(f"PyTorch is installed but does not import ({type(exc).__name__}: {one_line_text(exc)})",
                             "reinstall it: pip install --force-reinstall torch") from None
    except Exception as exc:  # OSError from a missing libtorch .so, AttributeError from mixed versions, ...
        raise MissingRuntime(f"PyTorch is installed but does not import ({type(exc).__name__}: {one_line_text(exc)})",
                             "reinstall it: pip install --force-reinstall torch") from None
    return torch


def _torch_side(module: str, attr: str):
    """Import a torch-dependent part lazily: without torch, exit 3 with what to install."""
    import importlib

    import_torch()
    try:
        return getattr(importlib.import_module(module), attr)
    except ImportError as exc:
        if exc.name not in ("torch", "onnxscript") and not str(exc.name or "").startswith("torch."):
            raise
        raise MissingRuntime(f"this command needs PyTorch ({exc})", "pip install torch, then 'msla-deploy[export]'") from None


def _version(value: bool) -> None:
    if value:
        out.print(f"msla-deploy {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
    trust_model_file: Optional[List[str]] = typer.Option(
        None, "--trust-model-file", metavar="FILE.py:FACTORY",
        help="Allow rebuilding a model whose manifest names this code (reference, validate --localize, bench --backend torch); "
        "its sha256 must still match the export's. Repeatable. A manifest's code is never run otherwise.",
    ),
) -> None:
    from .artifact.trust import set_trusted

    set_trusted(trust_model_file)


@app.command()
@handle_errors
def export(
    model: str = typer.Option(
        "efficientvit-seg-b1-cityscapes", "--model", "-m",
        help="Zoo name (see `msla-deploy models`) or FILE.py:FACTORY returning an nn.Module.",
    ),
    weights: Optional[Path] = typer.Option(
        None, "--weights", "-w", help="State-dict checkpoint (.pt, loaded with weights_only=True). Zoo default: models/<upstream file> if present, else random."
    ),
    res: str = typer.Option("1024x2048", "--res", "-r", help="Input HxW; sides must be multiples of 32."),
    batch: int = typer.Option(1, "--batch", "-b", help="Static batch size."),
    opset: int = typer.Option(17, "--opset", help="ONNX opset (17 parses on TensorRT 8.5/8.6 and later)."),
    exporter: str = typer.Option("auto", "--exporter", help="auto | dynamo | torchscript (auto: dynamo, torchscript if it fails)."),
    precision: str = typer.Option(
        "fp32", "--precision", "-p",
        help="fp32, fp16 or int8. fp16: model.onnx is mixed precision (fp16, fp32 attention island) for strongly typed "
        "TensorRT 10.12+/11; model_fp32.onnx beside it is for weakly typed builds (JetPack 5/6). int8: model.onnx is "
        "an explicit Q/DQ graph calibrated on --calib-images (LiteMLA cores in fp32).",
        rich_help_panel="Precision",
    ),
    attention_precision: str = typer.Option(
        "fp32", "--attention-precision",
        help="fp16 exports: LiteMLA's matmuls, normaliser and division in fp32, or in fp16 with token-mean "
        "scaling (small parity cost).",
        rich_help_panel="Precision",
    ),
    io_dtype: str = typer.Option("fp32", "--io-dtype", help="fp16 exports: dtype of the graph input and output.", rich_help_panel="Precision"),
    upsample: str = typer.Option(
        "cubic", "--upsample", help="Head resize: cubic (upstream parity) or bilinear (for TensorRT 8.5 / JetPack 5).",
        rich_help_panel="Precision",
    ),
    stress_weights: bool = typer.Option(
        False, "--stress-weights", help="Rescale LiteMLA q/k/v to trained-model magnitudes and zero some queries: tests the fp16 guards.",
        rich_help_panel="Precision",
    ),
    fp16_guards: bool = typer.Option(
        True, "--fp16-guards/--no-fp16-guards", help="--no-fp16-guards exports naive fp16 (eps lost, sums in fp16), to see what the guards prevent.",
        rich_help_panel="Precision",
    ),
    head: str = typer.Option(
        "logits", "--head",
        help="Graph outputs: logits (upstream's), labels (in-graph bicubic resize to the input size + argmax, int32 "
        "[N,H,W] train ids for TensorRT/DeepStream/Triton/C++), or both.",
    ),
    calib_images: Optional[Path] = typer.Option(
        None, "--calib-images", help="int8: folder of .png/.jpg/.npy pictures, or a dataset root (Cityscapes, ADE20K).", rich_help_panel="int8",
    ),
    calib_count: int = typer.Option(64, "--calib-count", help="int8: pictures to calibrate on (evenly spread over the folder).", rich_help_panel="int8"),
    calib_method: str = typer.Option(
        "max", "--calib-method", help="int8: max | entropy | percentile (ONNX Runtime's MinMax/Entropy/Percentile).", rich_help_panel="int8",
    ),
    int8_attention: bool = typer.Option(
        False, "--int8-attention", help="int8: quantize the LiteMLA cores too (what generic quantizers do; to measure the cost).", rich_help_panel="int8",
    ),
    sensitivity: bool = typer.Option(
        False, "--sensitivity", help="int8: quantize one module at a time (and all but one); rank by label cost; "
        "int8_sensitivity.json/.png.", rich_help_panel="int8",
    ),
    min_argmax_agreement: Optional[float] = typer.Option(
        None, "--min-argmax-agreement", help="int8: keep the costliest modules in fp32 until the labels agree this much "
        "with fp32 on the calibration pictures (e.g. 0.99); also the parity budget.", rich_help_panel="int8",
    ),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="Output directory \\[default: artifacts/<model>-<H>x<W>-<precision>]."),
    models_dir: Path = typer.Option(Path("models"), "--models-dir", envvar="MSLA_DEPLOY_MODELS", help="Where zoo checkpoints are looked up."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace an earlier export at --out: its own files are replaced, every other file (engines, reports, yours) is kept.",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
) -> None:
    """Export a model to a static, checked ONNX with a reference bundle and an ONNX Runtime parity report."""
    from .artifact.options import ExportOptions, parse_resolution

    run_export = _torch_side("msla_deploy.export.pipeline", "run_export")

    options = ExportOptions(
        model=model, weights=weights, resolution=parse_resolution(res), batch=batch, opset=opset,
        exporter=exporter, out=out_dir, models_dir=models_dir, precision=precision,
        attention_precision=attention_precision, io_dtype=io_dtype, upsample=upsample,
        fp16_guards=fp16_guards, stress_weights=stress_weights, head=head, overwrite=overwrite, calib_images=calib_images, calib_count=calib_count,
        calib_method=calib_method, int8_attention=int8_attention, sensitivity=sensitivity, min_argmax_agreement=min_argmax_agreement,
    )
    result = run_export(options, steps_with_progress())
    manifest, parity = result.manifest, result.parity
    if json_out:
        print_json(result.to_dict())
    else:
        w = manifest.weights
        weights_text = {"random": "[bold yellow]RANDOM (no checkpoint given or found in models/)[/]", "factory": "as returned by the factory"}.get(
            w["source"], w.get("path", "")
        ) + (" [bold yellow]+ STRESS (LiteMLA q/k/v rescaled, head 0 queries zeroed)[/]" if "stress" in w else "")
        p = manifest.precision
        int8_info = p.extra.get("int8")
        precision_text = p.precision if p.precision == "fp32" else (
            f"int8 Q/DQ ({len(int8_info['quantized_modules'])} modules int8, fp32: {', '.join(int8_info['fp32_modules']) or 'none'}; "
            f"calibrated on {int8_info['calibration']['count']} pictures, {int8_info['calibration']['method']}); fp32 graph: {p.onnx_files['fp32']}"
        ) if int8_info else p.precision if p.precision == "fp32" else (
            f"fp16 (attention {p.attention_precision if p.fp16_guards else 'naive fp16'}, I/O {p.io_dtype}"
            + ("" if p.fp16_guards else ", [bold red]guards OFF[/]") + f"); weak-typing graph: {p.onnx_files['fp32']}"
        )
        swapped = [r for r in manifest.swapped_modules if r["swapped"]]
        graph = manifest.onnx
        out.print(key_values([
            ("model", manifest.model.name),
            ("weights", weights_text),
            ("precision", precision_text + ("" if p.upsample == "cubic" else ", [yellow]bilinear upsampling[/]")),
            ("exporter", f"{manifest.exporter['used']} (opset {manifest.exporter['opset']})"),
            ("graph", f"{graph['node_count']} nodes, input {graph['inputs'][0]['shape']}, output {graph['outputs'][0]['shape']}"),
            ("swapped", ", ".join(f"{r['path'] or '<root>'} ({r['source'].rsplit('.', 1)[-1]}, eps {r['eps']:g})" for r in swapped) or "none needed"),
            ("written", str(result.directory)),
        ]))
        out.print(checks_table(parity["checks"], "Parity against PyTorch fp32"))
        for note in sorted({o["vacuous_note"] for c in parity["checks"] for o in c["outputs"] if o.get("vacuous_note")}):
            out.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
        if int8_info and int8_info.get("sensitivity", {}).get("file"):
            _print_sensitivity(result.directory / int8_info["sensitivity"]["file"])
        for file, scan in manifest.hazards.items():
            for finding in scan["errors"] + scan["warnings"]:
                where = finding.get("module") or finding["node"]
                err.print(f"[{'red' if finding['severity'] == 'error' else 'yellow'}]{finding['severity']}:[/] {file}: {finding['check']} at {where}: {finding['detail']}", highlight=False)
    if not result.passed:
        failures = "; ".join(f"{c['label']}: {f}" for c in parity["checks"] for o in c["outputs"] for f in o["failures"])
        hazard_errors = sum(len(scan["errors"]) for scan in manifest.hazards.values())
        if hazard_errors:
            failures = "; ".join(filter(None, [failures, f"{hazard_errors} fp16 hazard error(s) (msla-deploy inspect {result.directory}/<file>)"]))
        error_line(f"export checks failed: {failures} (details in {result.directory / PARITY_NAME} and {MANIFEST_NAME})")
        raise typer.Exit(1)


def _print_sensitivity(path: Path) -> None:
    from rich import box
    from rich.table import Table

    data = json.loads(path.read_text())
    table = Table(title=f"int8 label cost per module ({path.name}, plot beside it)", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for column, justify in (("#", "right"), ("module", "left"), ("kind", "left"), ("labels changed alone", "right"),
                            ("1 - cosine alone", "right"), ("agreement all but it", "right"), ("kept", "left")):
        table.add_column(column, justify=justify, no_wrap=True)
    kept = set(data["keep_fp32"])
    for i, row in enumerate(data["ranking"]):
        table.add_row(str(i + 1), row["module"], row["kind"], f"{100 * row['cost']:.3f}%", f"{1 - row['alone_cosine']:.2e}",
                      f"{100 * row['all_but']:.3f}%", "fp32" if row["module"] in kept else "")
    out.print(table)
    target = data["min_argmax_agreement"]
    kept_text = f"; kept in fp32 for {100 * target:g}%: {', '.join(data['keep_fp32']) or 'none'}" if target else ""
    out.print(f"all modules int8: {100 * data['all_int8_agreement']:.3f}% of labels as fp32{kept_text}", highlight=False)


@app.command()
@handle_errors
def models(
    models_dir: Path = typer.Option(Path("models"), "--models-dir", envvar="MSLA_DEPLOY_MODELS", help="Where checkpoints are looked up."),
    json_out: bool = typer.Option(False, "--json", help="Print the list as JSON on stdout."),
) -> None:
    """List the EfficientViT-Seg zoo: size, cost at the default resolution, checkpoint status."""
    rows = _torch_side("msla_deploy.zoo.listing", "zoo_rows")(models_dir)
    if json_out:
        print_json(rows)
        return
    from rich import box
    from rich.table import Table

    table = Table(title="EfficientViT-Seg zoo", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("name", no_wrap=True)
    for column in ("classes", "params", "GMACs", "at HxW"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("checkpoint", no_wrap=True)
    for r in rows:
        table.add_row(
            r["name"], str(r["num_classes"]), f"{r['params'] / 1e6:.2f}M", f"{r['gmacs']:.1f}",
            "x".join(map(str, r["resolution"])), "[green]found[/]" if r["present"] else "[dim]missing[/]",
        )
    out.print(table)
    out.print(f"Checkpoints are looked up as {models_dir}/efficientvit_seg_<variant>_<dataset>.pt (see models/README.md).", highlight=False)


# Commands implemented beside their library code register below, one line each:
#   from .area.command import verb_command; app.command("verb")(handle_errors(verb_command))
from .parity.command import validate_command; app.command("validate")(handle_errors(validate_command))  # noqa: E402,E702
from .parity.command import reference_command; app.command("reference")(handle_errors(reference_command))  # noqa: E402,E702
from .inspect.command import inspect_command; app.command("inspect")(handle_errors(inspect_command))  # noqa: E402,E702
from .trt.command import build_command; app.command("build")(handle_errors(build_command))  # noqa: E402,E702
from .bench.command import bench_command; app.command("bench")(handle_errors(bench_command))  # noqa: E402,E702
from .evaluate.command import evaluate_command; app.command("evaluate")(handle_errors(evaluate_command))  # noqa: E402,E702
from .doctor.command import doctor_command; app.command("doctor")(handle_errors(doctor_command))  # noqa: E402,E702
from .serve.command import package_command; app.command("package")(handle_errors(package_command))  # noqa: E402,E702
from .serve.command import serve_command; app.command("serve")(handle_errors(serve_command))  # noqa: E402,E702
from .predict.command import predict_command; app.command("predict")(handle_errors(predict_command))  # noqa: E402,E702


def robust_console_streams() -> None:
    """Never crash on a character the terminal's encoding lacks (a non-ASCII path printed to an
    ASCII stdout, PYTHONIOENCODING=ascii, LANG=C without UTF-8): escape it instead. An undecodable
    file name (surrogate escapes) is escaped the same way on a UTF-8 stream."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="backslashreplace")
        except (AttributeError, ValueError, OSError):
            pass


def main() -> None:
    robust_console_streams()
    app()
