"""Which nodes compute in fp16: the "fp16 context" every hazard check asks about.

The rule (also the --precision help text):

* Strong typing: a graph that has float16 tensors (a mixed-precision export with explicit Casts),
  inspected with no target or for TensorRT >= 10 (STRONGLY_TYPED; TensorRT 11 only knows this):
  a node computes in fp16 exactly when its inputs are typed float16. An fp32 island is safe.
* Weak typing: an fp32 graph built with the FP16 flag (--precision fp16), or any graph for TensorRT
  8.x (which has no strongly typed mode): the builder may run every layer in fp16, except the
  nodes pinned to fp32, listed in the ONNX metadata "msla_deploy.fp32_nodes" (comma-separated
  node names, which a build passes as --layerPrecisions=<node>:fp32 with precisionConstraints=obey).
* fp32: an fp32 graph built without the FP16 flag: nothing computes in fp16.
* int8: a graph with QuantizeLinear/DequantizeLinear nodes (explicit quantization; an int8 export,
  metadata msla_deploy.precision=int8). A layer reading a DequantizeLinear output computes in int8.
  Strongly typed where the build is (no target, 9.0+ for the GPU, every 11.x): the rest computes in
  the graph's float32. Weakly typed on 8.x and for DLA before 11 (--int8 --fp16, as `build` plans
  it): the rest may run in fp16 except the pinned nodes (the LiteMLA cores, the labels head).

--precision auto (default) means int8 for a Q/DQ graph, fp16 if the graph has float16 tensors or
--dla is given (DLA runs fp16/int8 only), else fp32. Hazards that only bite in fp16 are then
reported only in fp16 context.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, List, Optional, Set

import onnx

from ..artifact.names import META_FP32_NODES, META_PRECISION
from ..choices import INSPECT_PRECISIONS as PRECISIONS
from ..errors import BadInput
from .model_view import ModelView
from .trt_support import Target

QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
PINNED_KEY = META_FP32_NODES
PRECISION_KEY = META_PRECISION
# ops that carry no arithmetic: whether they "run in fp16" changes no number
_NO_ARITHMETIC = frozenset(
    {
        "Cast",
        "Identity",
        "Reshape",
        "Transpose",
        "Squeeze",
        "Unsqueeze",
        "Flatten",
        "Concat",
        "Split",
        "Slice",
        "Gather",
        "Shape",
        "Constant",
        "Expand",
        "Pad",
    }
)


@dataclass
class PrecisionContext:
    requested: str
    assumed: str  # "fp16" | "fp32" | "int8"
    typing: str  # "strong" | "weak" | "fp32"
    graph_has_fp16: bool
    pinned: Set[str] = field(default_factory=set)
    rule: str = ""

    def computes_fp16(self, view: ModelView, node: onnx.NodeProto) -> bool:
        if self.typing == "fp32" or node.op_type in _NO_ARITHMETIC or node.op_type in QDQ_OPS:
            return False  # Q/DQ scales stay fp32 in TensorRT
        if self.assumed == "int8" and reads_dequantized(view, node):
            return False  # an int8 layer
        # an unknown type (shape inference could not reach it) counts as float: better a false
        # alarm than a missed hazard
        float_inputs = [
            n for n in node.input if n and view.elem_type(n) in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, None)
        ]
        if self.typing == "strong":
            # the data input decides (weights of a fp16 conv are fp16 too; a Resize's scales are not data)
            return bool(float_inputs) and view.is_float16(float_inputs[0])
        return node.name not in self.pinned and bool(float_inputs or not node.input)

    def to_dict(self, view: ModelView) -> dict:
        return {
            "requested": self.requested,
            "assumed": self.assumed,
            "typing": self.typing,
            "rule": self.rule,
            "graph_has_fp16": self.graph_has_fp16,
            "pinned_fp32_nodes": sorted(self.pinned),
            "fp16_nodes": sum(1 for n in view.nodes if self.computes_fp16(view, n)),
            "metadata_precision": view.metadata.get(PRECISION_KEY),
        }


def reads_dequantized(view: ModelView, node: onnx.NodeProto) -> bool:
    """A layer TensorRT runs in int8: one of its inputs is a DequantizeLinear output."""
    return any(
        i and view.producer.get(i) is not None and view.producer[i].op_type == "DequantizeLinear" for i in node.input
    )


def graph_has_qdq(view: ModelView) -> bool:
    return any(n.op_type in QDQ_OPS for n in view.nodes)


def graph_has_fp16(view: ModelView) -> bool:
    return any(t == onnx.TensorProto.FLOAT16 for t in view.types.values())


def pinned_nodes(view: ModelView) -> Set[str]:
    text = view.metadata.get(PINNED_KEY, "")
    return {name.strip() for name in text.split(",") if name.strip()}


def decide(
    view: ModelView, precision: str, target: Optional[Target], dla: bool, pinned: Optional[Iterable[str]] = None
) -> PrecisionContext:
    """`pinned`: the nodes a weakly typed build keeps in fp32, where the caller knows them (a SAM
    artifact's manifest records them per graph); None reads them from the graph's metadata (PINNED_KEY)."""
    if precision not in PRECISIONS:
        raise BadInput(f"--precision {precision!r} is unknown", f"choose one of {', '.join(PRECISIONS)}")
    has_fp16 = graph_has_fp16(view)
    pins = pinned_nodes(view) if pinned is None else set(pinned)
    if graph_has_qdq(view) or precision == "int8":
        return _decide_int8(view, precision, target, dla, has_fp16, pins)
    if dla and precision == "fp32":
        raise BadInput(
            "--dla with --precision fp32: DLA runs fp16 or int8 only", "drop --precision (DLA implies an fp16 build)"
        )
    if has_fp16 and precision == "fp32":
        raise BadInput(
            "--precision fp32 on a graph with float16 tensors: their types decide, not the build flags",
            "drop --precision, or inspect the fp32 export",
        )
    assumed = "fp16" if (precision == "fp16" or has_fp16 or dla) else "fp32"
    pinned = pins
    if assumed == "fp32":
        return PrecisionContext(
            precision, "fp32", "fp32", has_fp16, pinned, "fp32 graph, fp32 build: nothing computes in fp16"
        )
    if target is not None and target.weak_typing == "removed" and not has_fp16:
        # TensorRT 11 has no FP16 flag: an fp32 graph builds fp32 (preflight reports the mismatch)
        return PrecisionContext(
            precision,
            "fp16",
            "fp32",
            has_fp16,
            pinned,
            f"TensorRT {target.name} has no FP16 flag: this fp32 graph would build fp32",
        )
    if has_fp16 and (target is None or target.strongly_typed):
        return PrecisionContext(
            precision,
            "fp16",
            "strong",
            has_fp16,
            pinned,
            "strongly typed: a node computes in fp16 where its inputs are float16",
        )
    why = (
        "fp32 graph built with the FP16 flag" if not has_fp16 else f"TensorRT {target.name} has no strongly typed mode"
    )
    return PrecisionContext(
        precision,
        "fp16",
        "weak",
        has_fp16,
        pinned,
        f"weak typing ({why}): every node may run in fp16 unless pinned in {PINNED_KEY}",
    )


def _decide_int8(
    view: ModelView, precision: str, target: Optional[Target], dla: bool, has_fp16: bool, pinned: Set[str]
) -> PrecisionContext:
    if not graph_has_qdq(view):
        raise BadInput(
            f"--precision int8 on {view.path}, which has no QuantizeLinear/DequantizeLinear nodes: TensorRT would "
            "build it "
            "in fp32/fp16 (implicit int8 calibration is deprecated since 10.1 and gone in 11)",
            "inspect an int8 export's model.onnx (msla-deploy export --precision int8 --calib-images DIR)",
        )
    if precision in ("fp16", "fp32"):
        raise BadInput(
            f"--precision {precision} on a Q/DQ graph: its QuantizeLinear/DequantizeLinear nodes make TensorRT "
            "compute int8 "
            "whatever the build flags",
            "drop --precision (a Q/DQ graph is inspected as int8), or inspect the fp32 graph beside it "
            "(model_fp32.onnx)",
        )
    if target is not None and (not target.strongly_typed or (dla and target.dla == "yes")):
        why = "no strongly typed mode" if not target.strongly_typed else "DLA builds before 11.x are weakly typed"
        return PrecisionContext(
            precision,
            "int8",
            "weak",
            has_fp16,
            pinned,
            f"int8, weakly typed (TensorRT {target.name}: {why}; --int8 --fp16): layers reading a "
            f"DequantizeLinear run in int8, the others may run in fp16 unless pinned in {PINNED_KEY}",
        )
    return PrecisionContext(
        precision,
        "int8",
        "strong",
        has_fp16,
        pinned,
        "int8, strongly typed: layers reading a DequantizeLinear run in int8, the others in the graph's types",
    )


def stale_pins(view: ModelView, context: PrecisionContext) -> List[str]:
    names = {n.name for n in view.nodes}
    return sorted(p for p in context.pinned if p not in names)
