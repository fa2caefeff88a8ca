"""The `msla-deploy` command line: one small function per command (parse, call the API, render).

Exit codes: 0 ok, 1 checks ran and failed, 2 bad input, 3 missing runtime.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import signal
import sys
import threading
from typing import List, Optional

import typer

from . import __version__
from .bench.command import bench_command
from .cli_options import Command, Group
from .console import error_line, out
from .doctor.command import doctor_command
from .errors import BadInput, MslaError
from .evaluate.command import evaluate_command
from .export.command import export_command
from .inspect.command import inspect_command
from .parity.command import reference_command, validate_command
from .predict.command import predict_command
from .serve.command import package_command, serve_command
from .trt.command import build_command
from .zoo.command import models_command

app = typer.Typer(
    name="msla-deploy",
    help="Export EfficientViT / LiteMLA models to static ONNX (and TensorRT), and prove parity with PyTorch.",
    no_args_is_help=True,
    cls=Group,
    # click's plain help: Typer's rich help imports rich.markdown (markdown-it) on every --help,
    # about half of the start-up budget (benchmarks/README.md, start-up). Help texts are plain
    # text, so a default that is not a value is written literally: "[default: every visible GPU]".
    rich_markup_mode=None,
    context_settings={"max_content_width": 120},  # click's 80 columns cut the commands' summaries short
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
            error_line(os_error_line(exc))
            raise typer.Exit(BadInput.exit_code) from None
        except Exception as exc:  # a bug of ours: one line, traceback on request
            if os.environ.get("MSLA_DEPLOY_DEBUG"):
                raise
            error_line(f"internal error: {type(exc).__name__}: {exc} (set MSLA_DEPLOY_DEBUG=1 for the traceback)")
            raise typer.Exit(1) from None

    return wrapper


_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def os_error_line(exc: OSError) -> str:
    """An OSError as one line: the file (atomic writes name it, full disks included) and a fix
    that fits the cause: a full disk is not a matter of permissions."""
    where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
    fix = "free space on that disk, or write elsewhere" if exc.errno in _FULL else "check the path and its permissions"
    return f"cannot use{where}: {exc.strerror or exc} ({fix})"


def _version(value: bool) -> None:
    if value:
        out.print(f"msla-deploy {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
    trust_model_file: Optional[List[str]] = typer.Option(
        None,
        "--trust-model-file",
        metavar="FILE.py:FACTORY",
        help="Allow rebuilding a model whose manifest names this code (reference, validate --localize, "
        "bench --backend torch); its sha256 must still match the export's. Repeatable. A manifest's code is never "
        "run otherwise.",
    ),
) -> None:
    from .artifact.trust import set_trusted

    set_trusted(trust_model_file)


COMMANDS = (  # name -> the command function beside its library code (parse, call the API, render)
    ("export", export_command),
    ("models", models_command),
    ("validate", validate_command),
    ("reference", reference_command),
    ("inspect", inspect_command),
    ("build", build_command),
    ("bench", bench_command),
    ("evaluate", evaluate_command),
    ("doctor", doctor_command),
    ("package", package_command),
    ("serve", serve_command),
    ("predict", predict_command),
)
for _name, _command in COMMANDS:
    app.command(_name, cls=Command)(handle_errors(_command))


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
