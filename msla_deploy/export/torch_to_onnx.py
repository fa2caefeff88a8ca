"""torch -> ONNX with either exporter torch offers, returning an in-memory ModelProto.

The model must already be planned (`msla_deploy.nn.plan_static`) so that the graph is static.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from typing import Sequence, Tuple

import onnx
import torch

from ..errors import BadInput, MissingRuntime

EXPORTERS = ("auto", "dynamo", "torchscript")


def dynamo_available() -> bool:
    try:
        import onnxscript  # noqa: F401  (the dynamo exporter needs it)
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def _quiet_exporters():
    """The exporters print deprecation notes and progress to stdout; keep --json output clean."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _export_torchscript(model, example, opset, input_name, output_names) -> onnx.ModelProto:
    buffer = io.BytesIO()
    torch.onnx.export(
        model,
        (example,),
        buffer,
        dynamo=False,
        opset_version=opset,
        input_names=[input_name],
        output_names=list(output_names),
        do_constant_folding=True,
        training=torch.onnx.TrainingMode.EVAL,
    )
    return onnx.load_from_string(buffer.getvalue())


def _export_dynamo(model, example, opset, input_name, output_names) -> onnx.ModelProto:
    program = torch.onnx.export(
        model,
        (example,),
        dynamo=True,
        opset_version=opset,
        input_names=[input_name],
        output_names=list(output_names),
        optimize=True,
        verbose=False,
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


def export_to_onnx(
    model: torch.nn.Module, example: torch.Tensor, *, opset: int, exporter: str, input_name: str, output_names: Sequence[str]
) -> Tuple[onnx.ModelProto, str]:
    """Export; returns (model, exporter actually used). `auto` prefers dynamo, falls back to torchscript."""
    if exporter not in EXPORTERS:
        raise BadInput(f"unknown exporter {exporter!r}", f"choose one of {', '.join(EXPORTERS)}")
    if exporter == "dynamo" and not dynamo_available():
        raise MissingRuntime("the dynamo exporter needs the onnxscript package", "pip install onnxscript, or use --exporter torchscript")
    chosen = ("dynamo" if dynamo_available() else "torchscript") if exporter == "auto" else exporter
    with torch.no_grad(), _quiet_exporters():
        if chosen == "dynamo":
            try:
                return _export_dynamo(model, example, opset, input_name, output_names), "dynamo"
            except Exception:
                if exporter != "auto":
                    raise
                # auto: the legacy exporter handles some models dynamo cannot trace; the
                # manifest records which one ran
        return _export_torchscript(model, example, opset, input_name, output_names), "torchscript"
