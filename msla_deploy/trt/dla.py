"""DLA preflight without TensorRT: which ONNX nodes will fall back to the GPU, and why.

A rule table keyed by ONNX op type, with sources. It is a forecast: TensorRT decides per layer
(engine.py asks `IBuilderConfig.can_run_on_DLA` for every layer before a real build and records
that answer). Verdicts: "dla" (supported, within the listed limits), "gpu" (falls back),
"maybe" (depends on attributes or sizes that the rule does not check).

Sources:
- H: NVIDIA/TensorRT release/10.7 include/NvInfer.h, the "If executing this layer on DLA"
  comments (10.7 is the last 10.x with DLA).
- T: docs.nvidia.com/deeplearning/tensorrt/latest/inference-library/dla-layer-restrictions.html,
  "DLA Layer Support Summary" (Activation: ReLU, Sigmoid, TanH, Clipped ReLU, Leaky ReLU;
  ElementWise: Sum, Sub, Product, Max, Min, Div, Pow; Concatenation: channel axis only;
  Convolution: kernel [1,32], stride [1,8], channels [1,8192]; FP16/INT8 only; no dynamic dims;
  non-batch dims <= 8192).
- F: docs/facts/tensorrt.md#dla (hswish and GELU fall back; matrix products of two
  activations are not listed).

int8 Q/DQ graphs (explicit quantization): QuantizeLinear/DequantizeLinear nodes make no layer of
their own (TensorRT folds them into the scales of the layers around them), so they are counted
apart, never as fallbacks. A layer reading a DequantizeLinear output computes in int8. In a
weakly typed build (8.5 ... 10.7: --int8 --fp16) every other layer may run in fp16 and the rule
table decides. In a strongly typed one (the only DLA mode of 11.4+) the graph's types decide: a
layer that is not quantized computes in float32, which DLA does not run, and a quantized layer
whose output stays float32 (no QuantizeLinear after it) may be placed on the GPU for that output.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Tuple

import onnx

DLA_MAX_DIM = 8192  # T: maximum size of a non-batch dimension


@dataclass(frozen=True)
class Rule:
    verdict: str  # dla | gpu | maybe
    reason: str
    source: str


# ONNX op type -> rule. Ops missing from the table fall back ("not listed as DLA-supported").
RULES: Dict[str, Rule] = {
    "Conv": Rule("dla", "convolution (kernel <= 32, stride <= 8, <= 8192 maps)", "H, T"),
    "ConvTranspose": Rule("maybe", "deconvolution: 2D, no groups or dilation, padding 0", "H, T"),
    "Relu": Rule("dla", "ReLU activation", "H, T"),
    "Sigmoid": Rule("dla", "Sigmoid activation", "H, T"),
    "Tanh": Rule("dla", "TanH activation", "H, T"),
    "Clip": Rule("dla", "clipped ReLU activation", "H, T"),
    "LeakyRelu": Rule("dla", "Leaky ReLU activation", "T"),
    "PRelu": Rule("dla", "parametric ReLU with constant slopes", "H"),
    "HardSwish": Rule(
        "gpu", "hswish is not a DLA activation (ReLU, Sigmoid, TanH, clipped/leaky ReLU only)", "H, T, F"
    ),
    "HardSigmoid": Rule("gpu", "hard sigmoid is not a DLA activation", "H, T"),
    "Gelu": Rule("gpu", "GELU is not a DLA activation", "H, T, F"),
    "Erf": Rule("gpu", "erf (GELU's core) has no DLA support", "H"),
    "Elu": Rule("gpu", "ELU is not a DLA activation", "H, T"),
    "Selu": Rule("gpu", "SELU is not a DLA activation", "H, T"),
    "Softplus": Rule("gpu", "softplus is not a DLA activation", "H, T"),
    "Mish": Rule("gpu", "mish is not a DLA activation", "H, T"),
    "Add": Rule("dla", "elementwise sum", "H, T"),
    "Sub": Rule("dla", "elementwise sub", "H, T"),
    "Mul": Rule("dla", "elementwise product", "H, T"),
    "Max": Rule("dla", "elementwise max", "H, T"),
    "Min": Rule("dla", "elementwise min", "H, T"),
    "Div": Rule(
        "maybe",
        "elementwise div: in the current DLA table, not in the 10.7 header's list (SUM, PROD, MAX, MIN, SUB)",
        "H, T",
    ),
    "Pow": Rule("maybe", "elementwise pow: in the current DLA table, not in the 10.7 header's list", "H, T"),
    "BatchNormalization": Rule("dla", "batch norm (a scale layer)", "T"),
    "MaxPool": Rule("dla", "max pooling", "H"),
    "AveragePool": Rule("dla", "average pooling", "H"),
    "GlobalAveragePool": Rule("maybe", "global average pooling: window limited to 8 (H)", "H"),
    "LRN": Rule("dla", "LRN, window 3/5/7/9", "H, T"),
    "Concat": Rule("maybe", "concatenation on the channel axis only", "H, T"),
    "Resize": Rule("maybe", "nearest (integer scales 1-32) or linear (half_pixel, scales 1-4) only", "H"),
    "Softmax": Rule("maybe", "softmax: axis size <= 1024 (8192 when the other dims are 1)", "H"),
    "Slice": Rule("maybe", "slice: 4D, constant starts, stride 1, not on the first axis", "H"),
    "Split": Rule("maybe", "split becomes slices: 4D, stride 1, not on the first axis", "H"),
    "Abs": Rule("dla", "the only unary op DLA runs", "H"),
    "MatMul": Rule("maybe", "matrix product with a constant operand (one of two activations falls back)", "F"),
    "Gemm": Rule("maybe", "matrix product with a constant operand", "F"),
    "Equal": Rule("gpu", "comparisons are INT8 only on DLA", "T"),
    "Greater": Rule("gpu", "comparisons are INT8 only on DLA", "T"),
    "Less": Rule("gpu", "comparisons are INT8 only on DLA", "T"),
    "Gather": Rule("gpu", "IGatherLayer: 'No DLA support'", "H"),
}
# Nodes that make no layer of their own.
NO_LAYER = {"Constant", "Identity"}
# Q/DQ: fused into the neighbouring layers' scales (explicit quantization), never a layer on DLA or GPU
QDQ = frozenset({"QuantizeLinear", "DequantizeLinear"})
# no arithmetic: in a strongly typed graph these run where their neighbours run
_LAYOUT = frozenset({"Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Shape", "Cast"})
FP32_TYPED = "not quantized: float32 in a strongly typed graph, and DLA computes fp16/int8 only"
FP32_OUTPUT = (
    "int8 layer with a float32 output (no QuantizeLinear after it): DLA writes int8/fp16, TensorRT may place it on "
    "the GPU"
)


@dataclass(frozen=True)
class NodeVerdict:
    name: str
    op_type: str
    verdict: str
    reason: str
    source: str

    def to_dict(self) -> Dict:
        return {
            "name": self.name,
            "op_type": self.op_type,
            "verdict": self.verdict,
            "reason": self.reason,
            "source": self.source,
        }


@dataclass(frozen=True)
class Preflight:
    nodes: Tuple[NodeVerdict, ...]
    problems: Tuple[str, ...]  # whole-network problems (dynamic or oversize dims)
    qdq_fused: int = 0  # QuantizeLinear/DequantizeLinear nodes: folded into their neighbours, not layers
    quantized: Tuple[str, ...] = ()  # layers computing in int8 (reading a DequantizeLinear output)

    @property
    def gpu(self) -> List[NodeVerdict]:
        return [n for n in self.nodes if n.verdict == "gpu"]

    @property
    def maybe(self) -> List[NodeVerdict]:
        return [n for n in self.nodes if n.verdict == "maybe"]

    def counts(self) -> Dict[str, int]:
        c = Counter(n.verdict for n in self.nodes)
        return {k: c.get(k, 0) for k in ("dla", "maybe", "gpu")}

    def summary_by_op(self, verdict: str = "gpu") -> List[Tuple[str, int, str]]:
        """[(op_type, count, reason)] for one verdict, most frequent first."""
        groups: Dict[Tuple[str, str], int] = Counter((n.op_type, n.reason) for n in self.nodes if n.verdict == verdict)
        return sorted(((op, count, reason) for (op, reason), count in groups.items()), key=lambda r: (-r[1], r[0]))

    def to_dict(self) -> Dict:
        return {
            "source": "rule table (msla_deploy/trt/dla.py), a forecast; TensorRT's can_run_on_DLA decides",
            "counts": self.counts(),
            "qdq_fused": self.qdq_fused,
            "int8_layers": len(self.quantized),
            "problems": list(self.problems),
            "gpu": [n.to_dict() for n in self.gpu],
            "maybe": [n.to_dict() for n in self.maybe],
        }


def _attr(node: onnx.NodeProto, name: str):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return None


def _judge(node: onnx.NodeProto, constants: set, pinned: set) -> NodeVerdict:
    name = node.name or f"<{node.op_type}>"
    if node.name in pinned:
        return NodeVerdict(name, node.op_type, "gpu", "pinned to fp32 for accuracy; DLA runs fp16/int8 only", "T")
    rule = RULES.get(node.op_type)
    if rule is None:
        return NodeVerdict(name, node.op_type, "gpu", f"{node.op_type} is not listed as DLA-supported", "H, T")
    verdict, reason = rule.verdict, rule.reason
    if node.op_type == "Resize":
        mode = _attr(node, "mode")
        mode = mode.decode() if isinstance(mode, bytes) else (mode or "nearest")
        if mode == "cubic":
            verdict, reason = "gpu", "cubic Resize: DLA resizes nearest or linear only"
        else:
            reason = f"{mode} Resize: " + rule.reason
    elif node.op_type in ("MatMul", "Gemm"):
        operands = [i for i in node.input[:2] if i]
        if operands and not any(i in constants for i in operands):
            verdict, reason = "gpu", "matrix product of two activations (not DLA-supported)"
    elif node.op_type == "Concat" and _attr(node, "axis") == 1:
        verdict, reason = "dla", "concatenation on the channel axis"
    elif node.op_type == "Conv":
        group = _attr(node, "group") or 1
        strides = _attr(node, "strides") or []
        kernel = _attr(node, "kernel_shape") or []
        if any(k > 32 for k in kernel) or any(s > 8 for s in strides):
            verdict, reason = "gpu", f"convolution kernel {list(kernel)} / stride {list(strides)} beyond DLA's 32 / 8"
        elif group > 8192:
            verdict, reason = "gpu", f"{group} groups, DLA allows 8192"
    return NodeVerdict(name, node.op_type, verdict, reason, rule.source)


def _typed_int8(node: NodeVerdict, quantized: bool, output_quantized: bool) -> NodeVerdict:
    """A strongly typed Q/DQ graph: what its types make of the rule table's verdict."""
    if node.verdict == "gpu" or node.op_type in _LAYOUT:
        return node
    if not quantized:
        return NodeVerdict(node.name, node.op_type, "gpu", FP32_TYPED, "T")
    if not output_quantized and node.verdict == "dla":
        return NodeVerdict(node.name, node.op_type, "maybe", FP32_OUTPUT, "T")
    return node


def preflight(onnx_path: Path, fp32_nodes: Iterable[str] = (), strongly_typed: bool = False) -> Preflight:
    """Forecast DLA placement for every node of an ONNX graph (weights are not loaded).

    fp32_nodes: nodes kept in fp32 on purpose (pinned, or an fp32 island). strongly_typed: the
    build takes types from the graph (matters for a Q/DQ graph: see the module's docstring)."""
    model = onnx.load(str(onnx_path), load_external_data=False)
    graph = model.graph
    constants = {t.name for t in graph.initializer}
    constants |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    pinned = set(fp32_nodes)
    dq_outputs = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    q_inputs = {n.input[0] for n in graph.node if n.op_type == "QuantizeLinear" and n.input}
    problems: List[str] = []
    for vi in graph.input:
        if vi.name in constants:
            continue
        dims = [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]
        if any(d is None or d <= 0 for d in dims):
            problems.append(f"input {vi.name} has dynamic dimensions; DLA needs static shapes")
        elif any(d > DLA_MAX_DIM for d in dims[1:]):
            problems.append(f"input {vi.name} {dims}: DLA allows at most {DLA_MAX_DIM} per non-batch dimension")
    layers = [n for n in graph.node if n.op_type not in NO_LAYER and n.op_type not in QDQ]
    quantized = [n.name for n in layers if any(i in dq_outputs for i in n.input)]
    verdicts = [_judge(n, constants, pinned) for n in layers]
    if strongly_typed and dq_outputs:
        int8 = set(quantized)
        verdicts = [
            v if n.name in pinned else _typed_int8(v, n.name in int8, all(o in q_inputs for o in n.output if o))
            for n, v in zip(layers, verdicts)
        ]
    fused = sum(1 for n in graph.node if n.op_type in QDQ)
    return Preflight(tuple(verdicts), tuple(problems), fused, tuple(quantized))


def format_preflight(result: Preflight, limit: int = 12) -> List[str]:
    """Lines for the terminal: counts, then the GPU fallbacks grouped by op type."""
    c = result.counts()
    lines = [
        f"DLA preflight (forecast): {c['dla']} nodes on DLA, {c['maybe']} depend on sizes/attributes, {c['gpu']} "
        "fall back to the GPU"
    ]
    if result.qdq_fused:
        lines.append(
            f"  int8: {len(result.quantized)} quantized layers; {result.qdq_fused} QuantizeLinear/DequantizeLinear "
            "nodes "
            "fold into them (not layers, not counted)"
        )
    lines += [f"  problem: {p}" for p in result.problems]
    for op, count, reason in result.summary_by_op("gpu")[:limit]:
        lines.append(f"  GPU  {count:4d} x {op}: {reason}")
    for op, count, reason in result.summary_by_op("maybe")[:limit]:
        lines.append(f"  ?    {count:4d} x {op}: {reason}")
    return lines
