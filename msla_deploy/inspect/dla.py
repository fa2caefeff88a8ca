"""DLA preflight: does the target have DLA at all, and which layers would fall back to the GPU.

A fallback is a warning (with GPU fallback allowed the engine builds; it only runs slower and
splits into several DLA loadables); no DLA in the version, or dynamic shapes, are errors.
Limits not written down by NVIDIA (see trt_support.py) are not guessed at.
"""

from __future__ import annotations

from collections import Counter
from typing import Dict, List, Optional, Tuple

import numpy as np
import onnx

from .model_view import ModelView, attribute
from .precision import PrecisionContext
from .preflight import dynamic_inputs
from .report import ERROR, WARNING, Finding
from .trt_support import (DLA_CONV_KERNEL, DLA_CONV_STRIDE, DLA_FALLBACK_REASONS, DLA_LAYERS, DLA_MAX_DIM, DLA_NO_LAYER,
                          DLA_RESIZE_SCALE_MAX, TrtVersion)

_LAYOUT = frozenset({"Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Slice", "Split", "Concat"})
CUBIC_NOTE = "DLA: cubic Resize is listed with half_pixel only; its scale limit is taken as linear's ([1, 4])"


def check_dla(view: ModelView, target: TrtVersion, context: PrecisionContext, info: Dict, notes: List[str]) -> List[Finding]:
    if target.dla == "no":
        return [Finding(
            ERROR, "dla-unavailable", "",
            f"TensorRT {target.name} has no DLA support (10.7 was the last 10.x with DLA; none in 10.8 ... 11.3)",
            "build for DLA with TensorRT <= 10.7 (JetPack 6.x: 10.3), or 11.4.1+ strongly typed on AGX Orin",
        )]
    findings: List[Finding] = []
    if target.dla == "strongly-typed":
        if not context.graph_has_fp16:
            findings.append(Finding(
                ERROR, "dla-unavailable", "",
                f"DLA on TensorRT {target.name} is strongly typed only and DLA computes fp16/int8: this fp32 graph cannot run on it",
                "export the mixed-precision fp16 ONNX",
            ))
        findings.append(Finding(
            WARNING, "dla-version", "",
            "TensorRT 11 has DLA only from 11.4.1, on AGX Orin with JetPack >= 7.2.2 (none in 11.0 ... 11.3)",
            "check the device's TensorRT version",
        ))
    dynamic = dynamic_inputs(view)
    if dynamic:
        findings.append(Finding(ERROR, "dla-dynamic", "", f"DLA needs static shapes; dynamic input(s): {', '.join(dynamic)}",
                                "export with static shapes"))

    groups: Dict[Tuple[str, str], List[onnx.NodeProto]] = {}
    on_dla = 0
    for node in view.nodes:
        if node.op_type in DLA_NO_LAYER or view.is_const(node.output[0] if node.output else ""):
            continue  # folded at build time: no layer
        reason = _fallback_reason(view, node, context, notes)
        if reason is None:
            on_dla += 1
        else:
            groups.setdefault((node.op_type, reason), []).append(node)
    for (op, reason), nodes in sorted(groups.items(), key=lambda item: (-len(item[1]), item[0])):
        first = nodes[0]
        module, source = view.module_of(first)
        findings.append(Finding(
            WARNING, "dla-fallback", view.label(first), f"{op} x{len(nodes)} falls back to the GPU: {reason}",
            "allow GPU fallback (--allowGPUFallback), or replace the op (e.g. HardSwish -> ReLU) to keep DLA busy",
            op, module, source, nodes=[view.label(n) for n in nodes],
        ))
    fallback = Counter()
    for (op, _), nodes in groups.items():
        fallback[op] += len(nodes)
    info["dla"] = {"layers_on_dla": on_dla, "gpu_fallback": sum(fallback.values()), "fallback_by_op": dict(sorted(fallback.items()))}
    return findings


def _fallback_reason(view: ModelView, node: onnx.NodeProto, context: PrecisionContext, notes: List[str]) -> Optional[str]:
    op = node.op_type
    if op not in DLA_LAYERS:
        return DLA_FALLBACK_REASONS.get(op, "not in DLA's layer list")
    if op not in _LAYOUT:
        if context.typing == "weak" and node.name in context.pinned:
            return "pinned to fp32: DLA computes fp16/int8 only"
        if context.typing == "strong" and not context.computes_fp16(view, node):
            return "typed float32 (an fp32 island): DLA computes fp16/int8 only"
    for name in list(node.input[:1]) + [o for o in node.output if o]:
        shape = view.shape(name)
        if shape and any(isinstance(d, int) and d > DLA_MAX_DIM for d in shape[1:]):
            return f"a dimension above {DLA_MAX_DIM} in {name} {shape}"
    if op == "Conv":
        return _conv_reason(view, node)
    if op == "ConvTranspose":
        if attribute(node, "group", 1) != 1 or any(d != 1 for d in attribute(node, "dilations", []) or []):
            return "grouped or dilated deconvolution"
        if any(p != 0 for p in attribute(node, "pads", []) or []):
            return "deconvolution with padding"
    if op == "Concat":
        shape = view.shape(node.output[0])
        axis = attribute(node, "axis", 1)
        if shape is None or (axis % len(shape)) != len(shape) - 3:
            return "concatenation off the channel axis"
    if op == "Resize":
        return _resize_reason(view, node, notes)
    return None


def _conv_reason(view: ModelView, node: onnx.NodeProto) -> Optional[str]:
    weight = view.shape(node.input[1]) if len(node.input) > 1 else None
    if weight is None or len(weight) != 4:
        return "not a 2D convolution"
    kernel = attribute(node, "kernel_shape", weight[2:])
    strides = attribute(node, "strides", [1, 1])
    if any(not DLA_CONV_KERNEL[0] <= k <= DLA_CONV_KERNEL[1] for k in kernel):
        return f"kernel {list(kernel)} outside [{DLA_CONV_KERNEL[0]}, {DLA_CONV_KERNEL[1]}]"
    if any(not DLA_CONV_STRIDE[0] <= s <= DLA_CONV_STRIDE[1] for s in strides):
        return f"stride {list(strides)} outside [{DLA_CONV_STRIDE[0]}, {DLA_CONV_STRIDE[1]}]"
    if isinstance(weight[0], int) and weight[0] > DLA_MAX_DIM:
        return f"{weight[0]} output channels (max {DLA_MAX_DIM})"
    return None


def _resize_scales(view: ModelView, node: onnx.NodeProto) -> Optional[np.ndarray]:
    if len(node.input) > 2 and node.input[2]:
        scales = view.const_value(node.input[2])
        if scales is not None and scales.size:
            return scales.astype(np.float64).reshape(-1)
    if len(node.input) > 3 and node.input[3]:
        sizes, shape = view.const_value(node.input[3]), view.shape(node.input[0])
        if sizes is not None and shape and all(isinstance(d, int) and d > 0 for d in shape) and sizes.size == len(shape):
            return sizes.astype(np.float64).reshape(-1) / np.asarray(shape, dtype=np.float64)
    return None


def _resize_reason(view: ModelView, node: onnx.NodeProto, notes: List[str]) -> Optional[str]:
    mode = attribute(node, "mode", "nearest")
    coord = attribute(node, "coordinate_transformation_mode", "half_pixel")
    if mode in ("linear", "cubic") and coord not in ("half_pixel", "pytorch_half_pixel"):
        return f"{mode} resize with {coord} coordinates (DLA: half_pixel only)"
    if mode == "nearest" and coord not in ("asymmetric", "half_pixel"):
        return f"nearest resize with {coord} coordinates"
    scales = _resize_scales(view, node)
    if scales is None:
        return "resize scales unknown at build time"
    limit = DLA_RESIZE_SCALE_MAX["nearest" if mode == "nearest" else "linear"]
    if scales.size != 4 or np.any(scales[:2] != 1):
        return "DLA resizes H and W of a 4D tensor only"
    if np.any(scales[2:] != np.round(scales[2:])) or np.any(scales[2:] < 1) or np.any(scales[2:] > limit):
        return f"scales {scales[2:].tolist()} are not integers in [1, {limit}]"
    if mode == "cubic" and CUBIC_NOTE not in notes:
        notes.append(CUBIC_NOTE)
    return None
