"""TensorRT preflight: what a target version's ONNX parser and builder will refuse or change.

Everything here is read from the graph and the support table (trt_support.py); nothing needs
TensorRT installed. The parser on the device stays the final word.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np
import onnx

from ..artifact.graph import max_batch_of
from .model_view import ModelView, attribute, graph_inputs
from .precision import PrecisionContext
from .report import ERROR, WARNING, Finding
from .trt_support import RESIZE_COORDINATE_MODES, RESIZE_DOCUMENTED_MODES, Target

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
# inputs where INT64_MAX/INT64_MIN mean "to the end": clamping them to int32 changes nothing
_CLAMP_IDIOM = {"Slice": (1, 2, 3, 4)}
_CUBIC_NOTE = (
    "cubic Resize: parsed since 8.5 GA and reported working from TensorRT 8.6.1, though the "
    "operator matrix still lists nearest and linear only"
)


def _node_finding(
    view: ModelView, node: onnx.NodeProto, severity: str, check: str, detail: str, fix: str = ""
) -> Finding:
    module, source = view.module_of(node)
    return Finding(severity, check, view.label(node), detail, fix, node.op_type, module, source)


def _grouped(
    view: ModelView, nodes: List[onnx.NodeProto], severity: str, check: str, detail: str, fix: str = ""
) -> Finding:
    first = nodes[0]
    module, source = view.module_of(first)
    return Finding(
        severity,
        check,
        view.label(first),
        detail,
        fix,
        first.op_type,
        module,
        source,
        nodes=[view.label(n) for n in nodes],
    )


def check_all(
    view: ModelView,
    target: Optional[Target],
    context: PrecisionContext,
    notes: List[str],
    info: Dict,
    profiles: Optional[Dict[str, Tuple[int, int, int]]] = None,
) -> List[Finding]:
    findings = check_dynamic(view, target, notes, profiles)
    if target is None:
        return findings
    findings += check_opset(view, target)
    findings += check_operators(view, target, notes)
    findings += check_types(view, target, notes, info)
    findings += check_precision(view, target, context, notes)
    return findings


def dynamic_inputs(view: ModelView) -> Dict[str, List]:
    found = {}
    for vi in graph_inputs(view):
        dims = view.shape(vi.name)
        if dims is None or any(not isinstance(d, int) or d <= 0 for d in dims):
            found[vi.name] = ["?" if d is None else d for d in (dims or [])]
    return found


def check_dynamic(
    view: ModelView,
    target: Optional[Target],
    notes: List[str],
    profiles: Optional[Dict[str, Tuple[int, int, int]]] = None,
) -> List[Finding]:
    """`profiles`: the (min, opt, max) of named dynamic dimensions that `build` gives TensorRT (a
    multi-graph artifact's manifest records them, e.g. SAM's decoder: prompts and points)."""
    dynamic = dynamic_inputs(view)
    if not dynamic:
        return []
    where = ", ".join(f"{name} {dims}" for name, dims in dynamic.items())
    named = {d for dims in dynamic.values() for d in dims if not (isinstance(d, int) and d > 0)}
    if profiles and named <= set(profiles):
        ranges = ", ".join(
            f"{dim} {profiles[dim][0]}..{profiles[dim][2]} (opt {profiles[dim][1]})" for dim in profiles if dim in named
        )
        notes.append(
            f"dynamic dimensions ({where}): `msla-deploy build` gives TensorRT the manifest's optimisation profile "
            f"({ranges}); DLA needs static shapes"
        )
        return _runtime_pads(view, target)
    max_batch = max_batch_of(view.metadata)
    if max_batch is not None and all(all(isinstance(d, int) and d > 0 for d in dims[1:]) for dims in dynamic.values()):
        # export --batch dynamic: what it is for; `build` gives TensorRT the profile (DLA refuses it there)
        notes.append(
            f"dynamic batch 1..{max_batch} ({where}): `msla-deploy build` gives TensorRT the optimisation profile "
            f"(min 1, opt and max {max_batch}); DLA needs static shapes"
        )
        return []
    findings = [
        Finding(
            WARNING,
            "dynamic-shape",
            "",
            f"input(s) with non-static dimensions: {where}",
            "export with static shapes (msla-deploy export --res HxW --batch N), or give the build an "
            "optimization profile (min/opt/max) for each dynamic input",
        )
    ]
    return findings + _runtime_pads(view, target)


def _runtime_pads(view: ModelView, target: Optional[Target]) -> List[Finding]:
    findings: List[Finding] = []
    if target is not None and target.version.major == 8:
        # TensorRT 8.x cannot reshape shape tensors computed at run time (efficientvit #63/#73)
        pads = [
            n
            for n in view.nodes
            if n.op_type == "Pad" and len(n.input) > 1 and n.input[1] and not view.is_const(n.input[1])
        ]
        if pads:
            findings.append(
                _grouped(
                    view,
                    pads,
                    ERROR,
                    "dynamic-shape",
                    f"{len(pads)} Pad node(s) compute their pads at run time; TensorRT {target.name} rejects them "
                    "('IShuffleLayer applied to shape tensor must have 0 or 1 reshape dimensions')",
                    "export with static shapes (no dynamic_axes)",
                )
            )
    return findings


def check_opset(view: ModelView, target: Target) -> List[Finding]:
    findings = []
    if view.opset > target.max_opset:
        findings.append(
            Finding(
                ERROR,
                "opset",
                "",
                f"opset {view.opset} is above {target.max_opset}, the highest TensorRT {target.name}'s parser takes",
                f"re-export with --opset {target.max_opset} (torch's dynamo exporter may keep opset 18 for Pad: "
                "use --exporter torchscript then)",
            )
        )
    elif view.opset < target.min_opset:
        findings.append(
            Finding(
                ERROR,
                "opset",
                "",
                f"opset {view.opset} is below {target.min_opset}, the lowest TensorRT {target.name}'s parser takes",
                f"re-export with an opset in {target.min_opset}..{target.max_opset}",
            )
        )
    foreign = sorted({o.domain for o in view.model.opset_import if o.domain not in ("", "ai.onnx")})
    if foreign:
        nodes = [n for n in view.nodes if n.domain not in ("", "ai.onnx")]
        if nodes:
            findings.append(
                _grouped(
                    view,
                    nodes,
                    ERROR,
                    "unsupported-op",
                    f"{len(nodes)} node(s) from custom domain(s) {', '.join(foreign)} need TensorRT plugins",
                    "register a plugin for each, or re-export with standard ONNX operators",
                )
            )
    return findings


#: operators with a known way round them
_OPERATOR_FIXES = {
    # opset 17 introduced the operator; below it, PyTorch writes a LayerNorm as elementary ops
    "LayerNormalization": "re-export with --opset 16 (LayerNorm as elementary ops), or target TensorRT 8.6+",
}


def check_operators(view: ModelView, target: Target, notes: List[str]) -> List[Finding]:
    findings = []
    unsupported: Dict[str, List[onnx.NodeProto]] = {}
    for node in view.nodes:
        if node.domain not in ("", "ai.onnx"):
            continue
        if node.op_type not in target.operators:
            unsupported.setdefault(node.op_type, []).append(node)
        elif node.op_type == "Resize":
            findings += _resize(view, node, target, notes)
        elif node.op_type == "ArgMax":
            findings += _argmax(view, node, target, notes)
        elif node.op_type == "Cast":
            findings += _cast(view, node, target)
        elif node.op_type == "Pad" and attribute(node, "mode", "constant") == "wrap" and not target.pad_wrap:
            findings.append(
                _node_finding(
                    view,
                    node,
                    ERROR,
                    "op-attribute",
                    f"Pad mode 'wrap' is not parsed by TensorRT {target.name}",
                    "use mode constant, reflect or edge",
                )
            )
    for op, nodes in sorted(unsupported.items()):
        findings.append(
            _grouped(
                view,
                nodes,
                ERROR,
                "unsupported-op",
                f"{op} ({len(nodes)} node(s)) is not in TensorRT {target.name}'s ONNX operator matrix "
                f"({target.matrix_note})",
                _OPERATOR_FIXES.get(op, "re-export it as supported operators, or target a newer TensorRT"),
            )
        )
    return findings


def _resize(view: ModelView, node: onnx.NodeProto, target: Target, notes: List[str]) -> List[Finding]:
    findings = []
    mode = attribute(node, "mode", "nearest")
    coord = attribute(node, "coordinate_transformation_mode", "half_pixel")
    if coord not in RESIZE_COORDINATE_MODES:
        findings.append(
            _node_finding(
                view,
                node,
                ERROR,
                "op-attribute",
                f"Resize coordinate_transformation_mode '{coord}' is not supported by TensorRT's parser",
                f"use one of {', '.join(sorted(RESIZE_COORDINATE_MODES))}",
            )
        )
    if attribute(node, "antialias", 0):
        findings.append(
            _node_finding(
                view,
                node,
                ERROR,
                "op-attribute",
                "Resize with antialias=1 is not supported by TensorRT's parser",
                "resize without antialiasing",
            )
        )
    if attribute(node, "keep_aspect_ratio_policy", "stretch") != "stretch":
        findings.append(
            _node_finding(
                view,
                node,
                ERROR,
                "op-attribute",
                "Resize keep_aspect_ratio_policy other than 'stretch' is not supported",
                "pass explicit sizes",
            )
        )
    if mode == "cubic":
        scales = view.const_value(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if scales is not None and scales.size > 2 and np.any(scales.reshape(-1)[:-2] != 1):
            findings.append(
                _node_finding(
                    view,
                    node,
                    ERROR,
                    "op-attribute",
                    "cubic Resize of more than the last 2 dimensions: the parser resizes only H and W cubically",
                    "resize only the spatial dimensions",
                )
            )
        if target.cubic_resize == "undocumented":
            findings.append(
                _node_finding(
                    view,
                    node,
                    WARNING,
                    "op-attribute",
                    f"cubic Resize: TensorRT {target.name}'s operator matrix lists nearest and linear only (its "
                    "parser source "
                    "has a cubic path; working reports start at 8.6.1)",
                    "check on the device (trtexec --onnx=...), or re-export with --upsample bilinear (mode linear) "
                    "at a small accuracy cost",
                )
            )
        elif _CUBIC_NOTE not in notes:
            notes.append(_CUBIC_NOTE)
    elif mode not in RESIZE_DOCUMENTED_MODES:
        findings.append(
            _node_finding(
                view,
                node,
                ERROR,
                "op-attribute",
                f"Resize mode '{mode}' is unknown to TensorRT's parser",
                "use nearest, linear or cubic",
            )
        )
    return findings


_FLOATS = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)


def _type_name(elem: Optional[int]) -> str:
    return onnx.TensorProto.DataType.Name(elem) if elem else "unknown"


def _argmax(view: ModelView, node: onnx.NodeProto, target: Target, notes: List[str]) -> List[Finding]:
    """ArgMax is imported as a TopK layer (k=1): its input types and index type differ per version."""
    findings = []
    elem = view.elem_type(node.input[0])
    if elem is not None and _type_name(elem) not in target.argmax_input_types:
        findings.append(
            _node_finding(
                view,
                node,
                ERROR,
                "dtype",
                f"ArgMax over a {_type_name(elem)} tensor: TensorRT {target.name}'s parser takes "
                f"{', '.join(sorted(target.argmax_input_types))} only",
                "take the argmax of the float logits",
            )
        )
    graph_outputs = {o.name for o in view.model.graph.output}
    uncast = node.output[0] in graph_outputs
    note = f"ArgMax: TensorRT {target.name} imports it as TopK (k=1) with {target.argmax_indices} indices" + (
        "" if uncast else "; the graph casts them itself"
    )
    if note not in notes:
        notes.append(note)
    if uncast and target.argmax_indices == "INT64":
        # 8.x narrows to INT32 itself (check_types reports the INT64 output binding there)
        findings.append(
            _node_finding(
                view,
                node,
                WARNING,
                "int64",
                f"ArgMax output '{node.output[0]}' is an INT64 network output on TensorRT {target.name}: DeepStream "
                "and most "
                "C++ consumers read int32 class maps",
                "cast the indices to int32 in the graph (msla-deploy export --head labels does)",
            )
        )
    return findings


def _cast(view: ModelView, node: onnx.NodeProto, target: Target) -> List[Finding]:
    if not target.uint8_cast_from_float_only:
        return []
    to, source = attribute(node, "to"), view.elem_type(node.input[0])
    if source is None or onnx.TensorProto.UINT8 not in (to, source):
        return []
    other = source if to == onnx.TensorProto.UINT8 else to
    if other in _FLOATS:
        return []
    return [
        _node_finding(
            view,
            node,
            ERROR,
            "dtype",
            f"Cast between UINT8 and {_type_name(other)}: TensorRT {target.name}'s parser casts UINT8 only to or "
            "from FP32/FP16",
            "keep label maps int32 (TensorRT 8.6 and later cast to UINT8 from any type)",
        )
    ]


def check_types(view: ModelView, target: Target, notes: List[str], info: Dict) -> List[Finding]:
    findings = []
    if not target.bf16:
        bf16 = [n for n, t in view.types.items() if t == onnx.TensorProto.BFLOAT16]
        if bf16:
            findings.append(
                Finding(
                    ERROR,
                    "dtype",
                    "",
                    f"{len(bf16)} bfloat16 tensor(s) (e.g. '{bf16[0]}'): TensorRT {target.name} has no BF16",
                    "export fp16 or fp32",
                )
            )
    if target.int64_native:
        return findings
    # 8.x: "TensorRT will attempt to cast down INT64 to INT32 ... clamping values to +-INT_MAX"
    int64_inits = [name for name, init in view.initializers.items() if init.data_type == onnx.TensorProto.INT64]
    if int64_inits:
        info["int64_cast_to_int32"] = int64_inits  # where the 8.x parser narrows weights
        notes.append(
            f"int64: TensorRT {target.name}'s parser casts {len(int64_inits)} INT64 initializer(s) to INT32 "
            f"(e.g. {', '.join(int64_inits[:3])})"
        )
    clamped = []
    for name in int64_inits:
        value = view.const_value(name)
        if value is None or not value.size or (value.min() >= INT32_MIN and value.max() <= INT32_MAX):
            continue
        if all(index in _CLAMP_IDIOM.get(user.op_type, ()) for user, index in view.users(name)):
            continue
        clamped.append((name, view.users(name)))
    for name, users in clamped:
        detail = f"INT64 initializer '{name}' holds values outside int32: TensorRT {target.name} clamps them to +-2^31"
        fix = "keep index/shape constants within int32"
        findings.append(
            _grouped(view, [u for u, _ in users], WARNING, "int64", detail, fix)
            if users
            else Finding(WARNING, "int64", "", detail, fix)
        )
    io64 = [
        vi.name
        for vi in list(graph_inputs(view)) + list(view.model.graph.output)
        if vi.type.tensor_type.elem_type == onnx.TensorProto.INT64
    ]
    if io64:
        findings.append(
            Finding(
                WARNING,
                "int64",
                "",
                f"INT64 network input/output(s) {', '.join(io64)} become INT32 bindings on TensorRT {target.name}",
                "feed and read them as int32",
            )
        )
    return findings


def check_precision(view: ModelView, target: Target, context: PrecisionContext, notes: List[str]) -> List[Finding]:
    """What the requested precision means on this version (docs/facts/tensorrt.md#weak-and-strong-typing:
    weak typing deprecated in 10.12, removed in 11.0)."""
    if context.assumed != "fp16":
        return []
    if not context.graph_has_fp16 and target.weak_typing == "removed":
        return [
            Finding(
                ERROR,
                "precision",
                "",
                f"TensorRT {target.name} is strongly typed only (no FP16 flag): this fp32 graph builds an fp32 engine",
                "export the mixed-precision fp16 ONNX (explicit Casts) for TensorRT 11",
            )
        ]
    if context.typing == "weak" and target.weak_typing == "deprecated":
        return [
            Finding(
                WARNING,
                "precision",
                "",
                f"an fp16 build of this graph on TensorRT {target.name} relies on weak typing (FP16 flag, layer "
                "precisions), "
                "deprecated since 10.12 and gone in 11.0",
                "export the mixed-precision fp16 ONNX and build it strongly typed",
            )
        ]
    if context.typing == "weak" and context.graph_has_fp16:
        notes.append(
            f"TensorRT {target.name} has no strongly typed mode: the graph's float32 nodes stay fp32 only "
            f"where pinned (precisionConstraints=obey, layerPrecisions)"
        )
    return []
