"""int8 Q/DQ graphs: what is quantized, what stays fp32, and what TensorRT needs of the Q/DQ nodes.

What TensorRT consumes (docs/facts/tensorrt.md#int8): symmetric int8 Q/DQ (zero point 0), per-channel
weight scales, per-tensor activation scales; TensorRT 11 quantizes only through these nodes,
strongly typed. What is quantized is read from the graph itself (a layer reading a
DequantizeLinear output runs in int8) and, for an int8 export of ours, by PyTorch module name
from the metadata msla_deploy.int8_modules, the same record the manifest holds.

LiteMLA: its attention core has no Softmax, so generic quantizers quantize its activation x
activation matmuls, where the numerics break; an int8 matmul of two dequantized activations is
reported, and so is a DequantizeLinear feeding a node the graph pins to fp32 (TensorRT would fuse
the pair into an int8 layer, and the pin would not hold).
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Dict, List, Optional

import numpy as np
import onnx

from ..artifact.names import META_INT8_CALIBRATION, META_INT8_MODULES, META_INT8_POLICY, META_PRECISION
from .model_view import ModelView
from .precision import PINNED_KEY, QDQ_OPS, PrecisionContext, reads_dequantized
from .report import ERROR, WARNING, Finding
from .trt_support import Target

_PRODUCTS = frozenset({"MatMul", "Gemm", "Einsum"})


def _group(view: ModelView, nodes: List[onnx.NodeProto], severity: str, check: str, detail: str, fix: str) -> Finding:
    module, source = view.module_of(nodes[0])
    return Finding(
        severity,
        check,
        view.label(nodes[0]),
        detail,
        fix,
        nodes[0].op_type,
        module,
        source,
        nodes=[view.label(n) for n in nodes],
    )


def _modules(view: ModelView) -> Optional[Dict[str, str]]:
    text = view.metadata.get(META_INT8_MODULES)
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else None


def describe(view: ModelView, context: PrecisionContext) -> Dict:
    """The int8 section of the report: Q/DQ counts, int8 layers by op and by module, fp32 modules."""
    q = [n for n in view.nodes if n.op_type == "QuantizeLinear"]
    dq = [n for n in view.nodes if n.op_type == "DequantizeLinear"]
    layers = [n for n in view.nodes if n.op_type not in QDQ_OPS and reads_dequantized(view, n)]
    modules = _modules(view)
    if modules is None:  # a foreign Q/DQ graph: the modules its int8 layers come from, where the graph tells
        found = [view.module_of(n)[0] for n in layers]
        quantized = sorted({m for m in found if m})
        fp32: List[str] = []
        source = "graph (module of each int8 layer, where node scopes or probes tell)"
    else:
        quantized = [m for m, p in modules.items() if p == "int8"]
        fp32 = [m for m, p in modules.items() if p != "int8"]
        source = f"metadata {META_INT8_MODULES} (the export's manifest record)"
    policy = _json_metadata(view, META_INT8_POLICY)  # SAM's encoder: the policy and the blocks it keeps float
    calibration = view.metadata.get(META_INT8_CALIBRATION)
    try:
        calibration = json.loads(calibration) if calibration else None
    except ValueError:
        pass
    return {
        "quantize_nodes": len(q),
        "dequantize_nodes": len(dq),
        "int8_layers": len(layers),
        "int8_layers_by_op": dict(sorted(Counter(n.op_type for n in layers).items())),
        "quantized_modules": quantized,
        "fp32_modules": fp32,
        "modules_from": source,
        "fp32_nodes": sorted(context.pinned),  # the LiteMLA cores and the labels head of an int8 export
        "calibration": calibration,
        "typing": context.typing,
        **({"policy": policy} if isinstance(policy, dict) else {}),
    }


def _json_metadata(view: ModelView, key: str):
    """A metadata value written as JSON (None: absent or not JSON)."""
    text = view.metadata.get(key)
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def _check_qdq_nodes(view: ModelView) -> List[Finding]:
    asymmetric, wrong_type, per_channel_act = [], [], []
    for node in view.nodes:
        if node.op_type not in QDQ_OPS:
            continue
        zero = view.const_value(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        elem = view.elem_type(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if zero is None and elem is None:
            # no zero point: ONNX's default is uint8 0, a type TensorRT's Q/DQ do not take
            wrong_type.append(node)
        elif (zero is not None and zero.dtype != np.int8) or (elem is not None and elem != onnx.TensorProto.INT8):
            wrong_type.append(node)
        elif zero is not None and np.any(zero != 0):
            asymmetric.append(node)
        data = node.input[0]
        scale = view.const_value(node.input[1]) if len(node.input) > 1 else None
        weight = node.op_type == "DequantizeLinear" and view.is_const(data)
        if scale is not None and scale.size > 1 and not weight:
            per_channel_act.append(node)
    findings = []
    if wrong_type:
        findings.append(
            _group(
                view,
                wrong_type,
                ERROR,
                "qdq",
                f"{len(wrong_type)} Q/DQ node(s) are not int8 (uint8 or no zero point): TensorRT takes symmetric "
                "int8 Q/DQ",
                "re-quantize with int8 activations and weights (msla-deploy export --precision int8 does)",
            )
        )
    if asymmetric:
        findings.append(
            _group(
                view,
                asymmetric,
                ERROR,
                "qdq",
                f"{len(asymmetric)} Q/DQ node(s) have a non-zero zero point: TensorRT takes symmetric int8 (zero "
                "point 0)",
                "re-quantize symmetric (ONNX Runtime: ActivationSymmetric/WeightSymmetric True)",
            )
        )
    if per_channel_act:
        findings.append(
            _group(
                view,
                per_channel_act,
                ERROR,
                "qdq",
                f"{len(per_channel_act)} Q/DQ node(s) quantize an activation per channel: TensorRT takes per-tensor "
                "activation scales",
                "quantize activations per tensor (per-channel scales are for weights)",
            )
        )
    return findings


def _dequantized_activation(view: ModelView, name: str) -> bool:
    """`name` is a DequantizeLinear of an activation, not of a stored weight (a classifier's Gemm
    reads its int8 weight through one)."""
    producer = view.producer.get(name)
    return producer is not None and producer.op_type == "DequantizeLinear" and not view.is_const(producer.input[0])


def _check_attention(view: ModelView, context: PrecisionContext) -> List[Finding]:
    findings = []
    products = [
        n
        for n in view.nodes
        if n.op_type in _PRODUCTS
        and len(n.input) >= 2
        and all(not view.is_const(i) and _dequantized_activation(view, i) for i in n.input[:2])
    ]
    if products:
        findings.append(
            _group(
                view,
                products,
                WARNING,
                "int8-attention",
                f"{len(products)} int8 matrix product(s) of two activations (a LiteMLA core quantized: its token "
                "sums and the "
                "normaliser lose the most in int8)",
                "keep the attention cores in fp32 (msla-deploy export --precision int8 does unless --int8-attention)",
            )
        )
    fed = [n for n in view.nodes if n.name in context.pinned and reads_dequantized(view, n)]
    if fed:
        findings.append(
            _group(
                view,
                fed,
                WARNING,
                "int8-pinned",
                f"{len(fed)} node(s) listed in {PINNED_KEY} read a DequantizeLinear output: TensorRT fuses the pair "
                "into an int8 layer",
                "feed the fp32 nodes from unquantized tensors (re-export)",
            )
        )
    return findings


def check_int8(
    view: ModelView, target: Optional[Target], context: PrecisionContext, notes: List[str], info: Dict
) -> List[Finding]:
    """Findings for a Q/DQ graph (or one whose metadata says int8); fills info['int8']."""
    if context.assumed != "int8":
        if view.metadata.get(META_PRECISION) == "int8":
            return [
                Finding(
                    ERROR,
                    "precision",
                    "",
                    f"the metadata says {META_PRECISION}=int8 but the graph has no QuantizeLinear/DequantizeLinear "
                    "nodes: TensorRT would build it in float",
                    "re-export with msla-deploy export --precision int8",
                )
            ]
        return []
    info["int8"] = describe(view, context)
    findings = _check_qdq_nodes(view) + _check_attention(view, context)
    if target is None:
        return findings
    if context.typing == "weak":
        notes.append(
            f"int8 on TensorRT {target.name}: build weakly typed with --int8 --fp16 (explicit quantization); layers "
            "outside "
            f"the Q/DQ may run in fp16, except those pinned with --precisionConstraints=obey --layerPrecisions"
        )
        if not context.pinned:
            findings.append(
                Finding(
                    WARNING,
                    "precision",
                    "",
                    f"no fp32 nodes recorded ({PINNED_KEY}): with --fp16 every unquantized layer may run in fp16, "
                    "LiteMLA attention included",
                    "re-export with msla-deploy export --precision int8 (it records the attention cores to pin)",
                )
            )
        if target.weak_typing == "deprecated":
            findings.append(
                Finding(
                    WARNING,
                    "precision",
                    "",
                    "weak typing (--int8 --fp16) is deprecated from TensorRT 10.12 and gone in 11.0",
                    "build the Q/DQ graph strongly typed",
                )
            )
    else:
        flag = (
            "no precision flag (every network is strongly typed)"
            if target.weak_typing == "removed"
            else "--stronglyTyped"
        )
        notes.append(
            f"int8 on TensorRT {target.name}: explicit quantization built strongly typed ({flag}): the Q/DQ nodes "
            "are the int8, "
            "everything else computes in the graph's float32"
        )
    return findings
