"""The torch side, imported only when a command needs it: without PyTorch (or with a broken one)
the command exits 3 with what to install, never with a traceback or a failed check."""

from __future__ import annotations

from .errors import MissingRuntime, install_extra, one_line_text


def import_torch():
    """torch, or MissingRuntime (exit 3): not installed, or installed but broken (a missing
    shared library, a half-finished upgrade), which is no bug of ours and no failed check."""
    try:
        import torch
    except ImportError as exc:
        if exc.name == "torch":
            raise MissingRuntime(
                f"this command needs PyTorch ({exc})", f"pip install torch, then {install_extra('export')}"
            ) from None
        raise MissingRuntime(
            f"PyTorch is installed but does not import ({type(exc).__name__}: {one_line_text(exc)})",
            "reinstall it: pip install --force-reinstall torch",
        ) from None
    except Exception as exc:  # OSError from a missing libtorch .so, AttributeError from mixed versions, ...
        raise MissingRuntime(
            f"PyTorch is installed but does not import ({type(exc).__name__}: {one_line_text(exc)})",
            "reinstall it: pip install --force-reinstall torch",
        ) from None
    return torch


def torch_side(module: str, attr: str):
    """Import a torch-dependent part lazily: without torch, exit 3 with what to install."""
    import importlib

    import_torch()
    try:
        return getattr(importlib.import_module(module), attr)
    except ImportError as exc:
        if exc.name not in ("torch", "onnxscript") and not str(exc.name or "").startswith("torch."):
            raise
        raise MissingRuntime(
            f"this command needs PyTorch ({exc})", f"pip install torch, then {install_extra('export')}"
        ) from None
