"""Torch-free analysis of any ONNX model: fp16 hazards, int8 Q/DQ, and a TensorRT / DLA preflight.

    from msla_deploy.inspect import inspect_onnx
    report = inspect_onnx("model.onnx", target="8.6", precision="auto", dla=False)
    report.passed, report.errors, report.warnings, report.info

This package imports onnx and numpy only: it runs where PyTorch is not installed (a Jetson).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Dict, Iterable, Optional, Tuple, Union

from ..choices import TRT_TARGET_EXAMPLES as TARGETS
from ..errors import BadInput
from ..lazy import lazy_exports

if TYPE_CHECKING:
    import onnx

    from . import trt_support
    from .model_view import ModelView
    from .report import InspectReport

__all__ = ["inspect_onnx", "inspect_view", "InspectReport", "Finding", "TARGETS"]
# onnx and the checks load when an inspection runs: `msla-deploy --help` imports inspect.command
__getattr__, __dir__ = lazy_exports(__name__, {"InspectReport": "report", "Finding": "report"})


def inspect_onnx(
    model: Union[str, "onnx.ModelProto"], target: Optional[str] = None, precision: str = "auto", dla: bool = False
) -> InspectReport:
    """Inspect an ONNX file (path) or an in-memory ModelProto."""
    import onnx

    from . import trt_support
    from .model_view import load, view_of

    version = trt_support.parse_target(target)  # bad options fail before the model is read
    if dla and version is None:
        raise BadInput(
            "--dla needs --target-trt: DLA support depends on the TensorRT version", "add e.g. --target-trt 10.3"
        )
    if not isinstance(model, onnx.ModelProto) and version is not None and precision == "auto":
        model, precision = _what_build_parses(model, version, precision)
    view = view_of(model) if isinstance(model, onnx.ModelProto) else load(model)
    return inspect_view(view, version, precision, dla)


def _what_build_parses(model: str, version: trt_support.Target, precision: str) -> Tuple[str, str]:
    """For an export directory and a TensorRT version: the graph `build` would parse there and the
    precision it would build it in (on 8.5-10.x an fp16 export builds its fp32 graph weakly typed
    with the FP16 flag, not its mixed-precision model.onnx). Anything else is inspected as given."""
    from ..artifact.names import MANIFEST_NAME
    from ..trt.inputs import load_directory
    from ..trt.plan import graph_to_build

    if not (Path(model).is_dir() and (Path(model) / MANIFEST_NAME).is_file()):
        return model, precision
    inputs = load_directory(Path(model))
    role, typing, built = graph_to_build(inputs, version.version)
    return str(inputs.onnx_files[role]), ("fp16" if typing == "weak" and built == "fp16" else precision)


def inspect_view(
    view: ModelView,
    version: Optional[trt_support.Target],
    precision: str,
    dla_requested: bool,
    pinned: Optional[Iterable[str]] = None,
    profiles: Optional[Dict[str, Tuple[int, int, int]]] = None,
) -> InspectReport:
    """`pinned`: the fp32 nodes of a weakly typed build where the caller knows them (a SAM
    artifact's manifest); None reads them from the graph's metadata. `profiles`: the (min, opt,
    max) of the named dynamic dimensions the build's optimisation profile gives (the manifest's)."""
    from . import dla, hazards, preflight, quantization, trt_support
    from .model_view import graph_inputs
    from .precision import PINNED_KEY, decide, stale_pins
    from .report import ERROR, WARNING, Finding, InspectReport

    context = decide(view, precision, version, dla_requested, pinned)
    notes: list = []
    findings = hazards.check_all(view, context, notes)
    info = {
        "model": view.path,
        "producer": f"{view.model.producer_name} {view.model.producer_version}".strip(),
        "opset": view.opset,
        "nodes": len(view.nodes),
        "inputs": {i.name: view.shape(i.name) for i in graph_inputs(view)},
        "outputs": {o.name: view.shape(o.name) for o in view.model.graph.output},
        "shape_inference": "ok" if view.inferred else "failed: types and shapes partly unknown",
        "target_trt": None
        if version is None
        else {
            "version": version.name,
            "given": version.version.text,
            "jetpack": version.jetpack,
            "max_opset": version.max_opset,
            "operators": version.matrix_note,
        },
        "precision": context.to_dict(view),
        "msla_deploy": {k: v for k, v in sorted(view.metadata.items()) if k.startswith("msla_deploy.")},
    }
    findings += preflight.check_all(view, version, context, notes, info, profiles)
    findings += quantization.check_int8(view, version, context, notes, info)
    if dla_requested:
        findings += dla.check_dla(view, version, context, info)
    for name in stale_pins(view, context):
        findings.append(
            Finding(
                WARNING,
                "precision",
                name,
                f"{PINNED_KEY if pinned is None else 'the manifest'} names '{name}', which is not a node of this graph",
                "re-export: the metadata does not match the graph",
            )
        )
    if version is None:
        notes.append("no --target-trt: TensorRT preflight (opset, operators, precision, DLA) skipped")
    info["notes"] = notes
    info["sources"] = list(trt_support.SOURCES) if version is not None else []
    order = {ERROR: 0, WARNING: 1}
    findings.sort(key=lambda f: order.get(f.severity, 2))  # stable: checks keep graph order within a severity
    return InspectReport(findings, info)
