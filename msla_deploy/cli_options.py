"""Options several commands share, declared once: the commands' signatures call these.

Each is a function (a fresh typer.Option per use; a help text may name what the command prints).
Closed sets are str-Enums from choices.py: Typer shows them in --help, completes them and refuses
anything else with its usage error (exit 2), which Group shows as the one `error:` line every bad
input gets. --backend is an open set, because a served model is
`triton://HOST:PORT/MODEL`: it stays a string whose metavar lists the names and the address form,
is completed from the names, and is checked while the command line is parsed (backend_check), with
the same usage error; the address itself is parsed where it is used (runtime.triton.parse_target).

Start-up: this module imports typer and the vocabularies only (`msla-deploy --help` builds every
command's options from these and must stay quick).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence

import typer
from typer.core import TyperCommand, TyperGroup

try:  # Typer >= 0.22 carries its own click
    from typer._click.exceptions import UsageError
except ImportError:  # pragma: no cover - older Typer (Python 3.8) uses click itself
    from click.exceptions import UsageError

from .artifact.names import TRITON_SCHEME
from .choices import BACKENDS, NON_TORCH_BACKENDS

PROG = "msla-deploy"
TRITON_FORM = f"{TRITON_SCHEME}HOST:PORT/MODEL"


# --- flags show as flags ------------------------------------------------------------------------------


def _flags_without_metavar(params: List[Any]) -> List[Any]:
    """A bool flag takes no value, so help shows no `<bool>` beside it (Typer's rich help would):
    an empty metavar leaves its type column blank, --help and --version included."""
    for param in params:
        if (
            getattr(param, "param_type_name", "") == "option"
            and getattr(param, "is_flag", False)
            and param.metavar is None
        ):
            param.metavar = ""
    return params


# --- usage errors on one line ----------------------------------------------------------------------


def _one_line(exc: UsageError) -> None:
    """Show Typer's usage error (a wrong choice, an unknown option, a missing argument: its own
    words, exit 2) as the one `error:` line every bad input of msla-deploy gets, with where to
    look instead of the usage block."""

    def show(file=None) -> None:
        from .console import error_line

        # Typer >= 0.2x checks values with pydantic, whose messages start "Value error, "
        message = exc.format_message().replace("Value error, ", "")
        where = f" (see {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
        error_line(message.rstrip(".") + where)

    exc.show = show


class Command(TyperCommand):
    """Every msla-deploy command: Typer's, with flags shown as flags."""

    def get_params(self, ctx):
        return _flags_without_metavar(super().get_params(ctx))


class Group(TyperGroup):
    """The msla-deploy group: Typer's, with flags shown as flags and usage errors on one line
    (those of its commands too: they are parsed inside the group's invoke)."""

    def get_params(self, ctx):
        return _flags_without_metavar(super().get_params(ctx))

    def make_context(self, *args, **kwargs):
        try:
            return super().make_context(*args, **kwargs)
        except UsageError as exc:
            _one_line(exc)
            raise

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UsageError as exc:
            _one_line(exc)
            raise


# --- shared options -----------------------------------------------------------------------------------


def json_option(what: str = "the result", help: Optional[str] = None) -> Any:
    """--json: stdout carries one JSON document and nothing else (cli.py sends other prints to stderr)."""
    return typer.Option(False, "--json", help=help or f"Print {what} as JSON on stdout.")


def overwrite_option(help: str) -> Any:
    return typer.Option(False, "--overwrite", help=help)


def threads_option(runtimes: str = "ONNX Runtime / PyTorch") -> Any:
    return typer.Option(None, "--threads", help=f"CPU threads for {runtimes} (default: the runtime's choice).")


def models_dir_option(what: str = "Where zoo checkpoints are looked up.") -> Any:
    return typer.Option(Path("models"), "--models-dir", envvar="MSLA_DEPLOY_MODELS", help=what)


def report_dir_option(default: str, what: str = "the reports") -> Any:
    return typer.Option(None, "--report-dir", help=f"Where {what} go [default: {default}].")


def junit_option(what: str = "the JUnit XML") -> Any:
    return typer.Option(None, "--junit", help=f"Also write {what} here.")


def artifact_argument(what: str = "Export directory, .onnx or engine (.engine/.plan/.trt).") -> Any:
    return typer.Argument(..., help=what, show_default=False)


def name_option(default: str = "the export directory's name") -> Any:
    return typer.Option(None, "--name", "-n", help=f"Model name [default: {default}].")


# --- --backend: names or a served model ---------------------------------------------------------------


def backend_metavar(names: Sequence[str]) -> str:
    return "[" + "|".join(list(names) + [TRITON_FORM]) + "]"


def backend_check(names: Sequence[str]) -> Callable[[Any], Any]:
    """Refuse a backend that is neither one of `names` nor a triton:// address, as Typer refuses a
    wrong enum value (usage error, exit 2), before the command runs."""

    def check(value):
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if item is not None and item not in names and not str(item).startswith(TRITON_SCHEME):
                raise typer.BadParameter(f"{item!r} is unknown: choose one of {', '.join(names)}, or {TRITON_FORM}")
        return value

    return check


def backend_completion(names: Sequence[str]) -> Callable[[str], List[str]]:
    def complete(incomplete: str) -> List[str]:
        return [name for name in list(names) + [TRITON_SCHEME] if name.startswith(incomplete)]

    return complete


AUTO_BACKEND = "auto: TensorRT for an engine, else ONNX Runtime, CUDA if present"


def backend_option(
    default: Any = "auto", *, names: Sequence[str] = BACKENDS, help: str = "", multiple: bool = False
) -> Any:
    """--backend for commands that run an artifact: one of `names` or a triton:// address."""
    return typer.Option(
        default,
        "--backend",
        metavar=backend_metavar(names),
        callback=backend_check(names),
        autocompletion=backend_completion(names),
        help=help or f"What runs the artifact ({AUTO_BACKEND}; {TRITON_FORM}: a model served by Triton).",
        show_default=not multiple,
    )


VALIDATE_BACKENDS = NON_TORCH_BACKENDS  # validate compares against PyTorch: the reference IS the torch backend


# --- the next command to run --------------------------------------------------------------------------


def _shown(word: Any) -> str:
    """A path under the working directory is shown relative to it (what the user typed, mostly)."""
    if isinstance(word, Path) and word.is_absolute():
        try:
            return str(word.relative_to(Path.cwd()))
        except (ValueError, OSError):  # OSError: the working directory was the one just replaced (--out .)
            pass
    return str(word)


def command_line(*words: Any) -> str:
    """A command line a user can paste: every word quoted for the shell where it needs it."""
    return " ".join(shlex.quote(_shown(w)) for w in words)


def next_command(*words: Any) -> str:
    """An `msla-deploy ...` line to print as the next step (console.print_next)."""
    return command_line(PROG, *words)
