"""torch -> ONNX with either exporter torch offers, returning an in-memory ModelProto.

The model must already be planned (`msla_deploy.nn.plan_static`) so that the graph is static.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import warnings
from typing import List, Mapping, Optional, Sequence, Tuple

import onnx
import torch

from ..artifact.names import BATCH_DIM
from ..choices import EXPORTERS
from ..errors import BadInput, CheckFailed, MissingRuntime, MslaError, one_line_text


def torchscript_max_opset() -> int:
    # a private constant of torch.onnx; 20 is what torch 2.x has long supported
    from torch.onnx import _constants

    return int(getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", 20))


def dynamo_available() -> bool:
    try:
        import onnxscript  # noqa: F401  (the dynamo exporter needs it)
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def _silence_native_stdout():
    """The legacy exporter prints whole graphs from C++ on failure, below Python's sys.stdout;
    --json output must stay parseable. MSLA_DEPLOY_DEBUG=1 sends them to stderr instead."""
    sys.stdout.flush()
    saved = os.dup(1)
    sink = os.dup(2) if os.environ.get("MSLA_DEPLOY_DEBUG") else os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(sink, 1)
        os.close(sink)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


@contextlib.contextmanager
def _quiet_exporters():
    """The exporters print deprecation notes and progress to stdout; keep --json output clean."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), _silence_native_stdout():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _export_torchscript(model, examples, opset, input_names, output_names, axes, dim_max) -> onnx.ModelProto:
    buffer = io.BytesIO()
    # the named axes are the only dynamic ones; the model's own sizes are Python ints (planned),
    # so nothing else becomes shape arithmetic
    torch.onnx.export(
        model,
        tuple(examples),
        buffer,
        dynamo=False,
        opset_version=opset,
        input_names=list(input_names),
        output_names=list(output_names),
        do_constant_folding=True,
        training=torch.onnx.TrainingMode.EVAL,
        dynamic_axes=axes or None,
    )
    return onnx.load_from_string(buffer.getvalue())


def _export_dynamo(model, examples, opset, input_names, output_names, axes, dim_max) -> onnx.ModelProto:
    shapes = None
    if axes:  # each named dimension 1..its maximum (one Dim per name: inputs sharing it agree)
        dims = {name: torch.export.Dim(name, min=1, max=int(dim_max[name])) for name in sorted(set(_dim_names(axes)))}
        shapes = tuple({axis: dims[dim] for axis, dim in axes.get(name, {}).items()} or None for name in input_names)
    program = torch.onnx.export(
        model,
        tuple(examples),
        dynamo=True,
        opset_version=opset,
        input_names=list(input_names),
        output_names=list(output_names),
        optimize=True,
        verbose=False,
        dynamic_shapes=shapes,
    )
    proto = program.model_proto
    opsets = {o.domain: o.version for o in proto.opset_import}
    if opsets.get("", opset) != opset:
        # torch converts down from its lowest native opset and keeps the higher one on failure
        raise BadInput(
            f"the dynamo exporter produced opset {opsets.get('')} instead of {opset}",
            "use --exporter torchscript, or an opset the target TensorRT accepts",
        )
    return proto


def _dim_names(axes: Mapping[str, Mapping[int, str]]) -> List[str]:
    return [dim for named in axes.values() for dim in named.values()]


def _interrupt_in(exc: BaseException):
    """The KeyboardInterrupt/SystemExit an exporter wrapped into its own error, if any: torch
    re-raises what happens inside traced code as its own exception types (`raise ... from e`)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


@contextlib.contextmanager
def _signals_seen():
    """Record SIGINT/SIGTERM arriving during the block (the handlers in place still run), so an
    interrupt an exporter swallowed whole is still an interrupt. Main thread only."""
    import signal
    import threading

    seen = []
    if threading.current_thread() is not threading.main_thread():
        yield seen
        return
    previous = {}

    def recorder(signum, frame):
        handler = previous.get(signum)
        if handler == signal.SIG_IGN:
            return
        seen.append(signum)
        if callable(handler):
            handler(signum, frame)
        elif handler == signal.SIG_DFL:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt()
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.getsignal(signum)
        signal.signal(signum, recorder)
    try:
        yield seen
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


class _SwallowedSignal(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def export_to_onnx(
    model: torch.nn.Module,
    example: torch.Tensor,
    *,
    opset: int,
    exporter: str,
    input_name: str,
    output_names: Sequence[str],
    dynamic_batch: bool = False,
) -> Tuple[onnx.ModelProto, str]:
    """Export; returns (model, exporter actually used). `auto` prefers dynamo, falls back to
    torchscript, but never after an interrupt (Ctrl-C, SIGTERM): that stops the run.
    `dynamic_batch`: the batch is the one dynamic axis of every input and output (1..the
    example's batch, which must be >= 2: torch.export specialises sizes 0 and 1)."""
    axes = {name: {0: BATCH_DIM} for name in [input_name, *output_names]} if dynamic_batch else None
    return export_inputs_to_onnx(
        model,
        (example,),
        opset=opset,
        exporter=exporter,
        input_names=[input_name],
        output_names=output_names,
        dynamic_axes=axes,
        dim_max={BATCH_DIM: int(example.shape[0])},
    )


def export_inputs_to_onnx(
    model: torch.nn.Module,
    examples: Sequence[torch.Tensor],
    *,
    opset: int,
    exporter: str,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_axes: Optional[Mapping[str, Mapping[int, str]]] = None,
    dim_max: Optional[Mapping[str, int]] = None,
) -> Tuple[onnx.ModelProto, str]:
    """`export_to_onnx` for a model of several inputs. `dynamic_axes`: tensor name -> {axis: dim
    name} (inputs and outputs; a name shared by several axes is one dimension); `dim_max`: each
    dim name's largest size (the dynamo exporter's range; the examples must have sizes >= 2 there)."""
    try:
        return _export_to_onnx(
            model, tuple(examples), opset, exporter, (tuple(input_names), tuple(output_names)), dynamic_axes, dim_max
        )
    except _SwallowedSignal as swallowed:
        # the exporter ate the interrupt its handler raised: deliver it again, handlers restored
        import signal

        if swallowed.signum != signal.SIGINT:
            os.kill(os.getpid(), swallowed.signum)
        raise KeyboardInterrupt() from None


def _export_to_onnx(model, examples, opset: int, exporter: str, names, axes, dim_max) -> Tuple[onnx.ModelProto, str]:
    chosen = _choose_exporter(exporter, opset)
    arguments = (model, examples, opset, *names, dict(axes or {}), dict(dim_max or {}))
    failures = []
    with torch.no_grad(), _quiet_exporters(), _signals_seen() as signals:
        if chosen == "dynamo":
            try:
                return _export_dynamo(*arguments), "dynamo"
            except MslaError:
                if exporter != "auto":
                    raise
            except Exception as exc:  # noqa: BLE001 - any exporter failure is reported as one line
                failures.append(f"dynamo: {_failure_text(exc, signals)}")
            # auto: the legacy exporter handles some models dynamo cannot trace; the manifest
            # records which one ran
        if exporter != "dynamo":
            try:
                return _export_torchscript(*arguments), "torchscript"
            except Exception as exc:  # noqa: BLE001
                failures.append(f"torchscript: {one_line_text(exc)}")
    raise CheckFailed(
        f"torch.onnx.export failed at opset {opset} ({'; '.join(failures)})",
        "try the other --exporter or another --opset (torchscript supports up to 20-23 depending on torch)",
    )


def _choose_exporter(exporter: str, opset: int) -> str:
    """The exporter to try first (auto: dynamo where onnxscript is installed), checked against the opset."""
    if exporter not in EXPORTERS:
        raise BadInput(f"unknown exporter {exporter!r}", f"choose one of {', '.join(EXPORTERS)}")
    if exporter == "dynamo" and not dynamo_available():
        raise MissingRuntime(
            "the dynamo exporter needs the onnxscript package", "pip install onnxscript, or use --exporter torchscript"
        )
    chosen = ("dynamo" if dynamo_available() else "torchscript") if exporter == "auto" else exporter
    if chosen == "torchscript" and opset > torchscript_max_opset():
        raise BadInput(
            f"the torchscript exporter of torch {torch.__version__} supports opset <= {torchscript_max_opset()}, not "
            f"{opset}",
            "use --exporter dynamo, or a lower --opset",
        )
    return chosen


def _failure_text(exc: BaseException, signals: Sequence[int]) -> str:
    """A dynamo failure as one line; an interrupt is never an exporter failure: it is raised
    again (no fallback, the run stops)."""
    interrupt = _interrupt_in(exc)
    if interrupt is not None:
        raise interrupt from None
    if signals:
        raise _SwallowedSignal(signals[-1]) from None
    return one_line_text(exc)
