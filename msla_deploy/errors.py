"""Errors that the CLI turns into one line and an exit code.

Exit codes are part of the interface (other tools script against them):
0 ok, 1 checks ran and failed, 2 bad input, 3 missing runtime.
"""

from __future__ import annotations


class MslaError(Exception):
    """An expected failure with a one-line message and a suggested fix."""

    exit_code = 1

    def __init__(self, problem: str, fix: str = "") -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(self.one_line())

    def one_line(self) -> str:
        return f"{self.problem} ({self.fix})" if self.fix else self.problem


class CheckFailed(MslaError):
    """The checks ran and the artifact did not pass them."""

    exit_code = 1


class BadInput(MslaError):
    """The user's input (option, file, model) cannot be used as given."""

    exit_code = 2


class MissingRuntime(MslaError):
    """A runtime this step needs (torch, ONNX Runtime, TensorRT, a GPU) is not available."""

    exit_code = 3


def one_line_text(exc: BaseException, limit: int = 200) -> str:
    """An exception's message on one line, shortened: for errors quoted inside our own."""
    text = " ".join(str(exc).split()) or "(no message)"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def install_extra(extra: str) -> str:
    """How to add one of the project's extras. msla-deploy is not on PyPI: it is installed from a
    checkout (editable) or from a wheel built from one (on a Jetson), so `pip install
    'msla-deploy[extra]'` would find nothing. The serve extra's numpy<2 pin is said up front:
    it moves the whole environment."""
    note = " (it moves numpy to 1.26: nvidia-pytriton requires numpy<2)" if extra == "serve" else ""
    return (
        f"from the checkout: pip install -e '.[{extra}]', or pip install "
        f"'msla_deploy-<version>-py3-none-any.whl[{extra}]'{note}"
    )
