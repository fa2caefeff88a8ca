"""Make an exported ONNX deployable and prove it: static, folded, checked, self-describing.

TensorRT 8.x rejects shape arithmetic computed at run time (efficientvit #63/#73), so the
exported graph must be fully static. These checks run on every export; a violation is an
export failure, never a warning.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List

import onnx

from ..artifact.names import BATCH_DIM
from ..errors import CheckFailed

# ops that mean shapes or control flow are computed at run time
FORBIDDEN_OPS = ("Shape", "Gather", "ConstantOfShape", "If", "Loop", "Size", "NonZero")


@dataclass
class GraphReport:
    op_counts: Dict[str, int]
    node_count: int
    inputs: List[Dict]
    outputs: List[Dict]
    opset: int
    problems: List[str] = field(default_factory=list)

    def to_dict(self) -> Dict:
        return {
            "opset": self.opset,
            "node_count": self.node_count,
            "op_counts": dict(sorted(self.op_counts.items())),
            "inputs": self.inputs,
            "outputs": self.outputs,
        }


def constants_to_initializers(model: onnx.ModelProto) -> None:
    """Turn Constant nodes (the legacy exporter's reshape sizes) into initializers."""
    graph = model.graph
    kept = []
    for node in graph.node:
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            tensor = onnx.TensorProto()
            tensor.CopyFrom(node.attribute[0].t)
            tensor.name = node.output[0]
            graph.initializer.append(tensor)
        else:
            kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)


def drop_unused_initializers(model: onnx.ModelProto) -> None:
    graph = model.graph
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def _dims(value_info: onnx.ValueInfoProto) -> List:
    shape = value_info.type.tensor_type.shape
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in shape.dim]


def _describe(value_info: onnx.ValueInfoProto) -> Dict:
    elem = value_info.type.tensor_type.elem_type
    return {
        "name": value_info.name,
        "shape": _dims(value_info),
        "dtype": onnx.helper.tensor_dtype_to_np_dtype(elem).name,
    }


def mark_batch_dynamic(model: onnx.ModelProto) -> None:
    """A dynamic-batch graph's I/O as TensorRT and Triton read it: the first dimension of every
    input and output is BATCH_DIM, every other one a number (the legacy exporter names the
    output's spatial dimensions too; shape inference gives their sizes back)."""
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    for value in [v for v in graph.input if v.name not in initializers] + list(graph.output):
        dims = value.type.tensor_type.shape.dim
        for i, dim in enumerate(dims):
            if i == 0 or not dim.HasField("dim_value"):
                dim.Clear()
        if dims:
            dims[0].dim_param = BATCH_DIM
    inferred = {o.name: o for o in onnx.shape_inference.infer_shapes(model, data_prop=True).graph.output}
    for value in graph.output:
        known = inferred[value.name].type.tensor_type.shape.dim
        for dim, other in zip(list(value.type.tensor_type.shape.dim)[1:], list(known)[1:]):
            if other.HasField("dim_value"):
                dim.dim_value = other.dim_value


def _static(dims: List, dynamic_batch: bool) -> bool:
    fixed = dims[1:] if dynamic_batch and dims else dims
    return all(isinstance(d, int) and d > 0 for d in fixed)


def inspect_static(model: onnx.ModelProto, dynamic_batch: bool = False) -> GraphReport:
    """Shape-infer strictly and list everything that is not static (but the batch, if `dynamic_batch`)."""
    inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    graph = inferred.graph
    op_counts = Counter(node.op_type for node in graph.node)
    problems = []
    for op in FORBIDDEN_OPS:
        names = [n.name or n.output[0] for n in graph.node if n.op_type == op]
        if names:
            problems.append(f"{len(names)} {op} node(s) (run-time shape/control flow), e.g. {names[0]}")
    initializers = {t.name for t in graph.initializer}
    values = list(graph.input) + list(graph.output) + list(graph.value_info)
    typed = {v.name for v in values}
    for v in values:
        dims = _dims(v)
        if not v.type.tensor_type.HasField("shape") or not _static(dims, dynamic_batch):
            problems.append(f"tensor {v.name!r} has non-static shape {dims}")
            break
    untyped = [o for n in graph.node for o in n.output if o and o not in typed and o not in initializers]
    if untyped:
        problems.append(f"{len(untyped)} tensor(s) without an inferred shape, e.g. {untyped[0]!r}")
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    return GraphReport(
        op_counts=dict(op_counts),
        node_count=len(graph.node),
        inputs=[_describe(i) for i in graph.input if i.name not in initializers],
        outputs=[_describe(o) for o in graph.output],
        opset=opset,
        problems=problems,
    )


def set_metadata(model: onnx.ModelProto, metadata: Dict[str, str]) -> None:
    del model.metadata_props[:]
    for key in sorted(metadata):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, str(metadata[key])


def finalize(
    model: onnx.ModelProto, *, producer_version: str, metadata: Dict[str, str], dynamic_batch: bool = False
) -> GraphReport:
    """Clean up in place, check, and stamp metadata. Raises CheckFailed if the graph is not deployable."""
    constants_to_initializers(model)
    drop_unused_initializers(model)
    if dynamic_batch:
        mark_batch_dynamic(model)
    report = inspect_static(model, dynamic_batch)
    if report.problems:
        raise CheckFailed(
            "exported graph is not static: " + "; ".join(report.problems),
            "some forward code computes shapes at run time (x.shape arithmetic, a LiteMLA look-alike left unswapped: "
            "see the warnings above); make it use fixed sizes, or report the model",
        )
    check_and_stamp(model, producer_version=producer_version, metadata=metadata)
    return report


def check_and_stamp(model: onnx.ModelProto, *, producer_version: str, metadata: Dict[str, str]) -> None:
    """Clean up in place, run onnx.checker, stamp producer and metadata: finalize's last steps, and
    all of them for a graph whose shapes are dynamic by design (SAM's decoder: its caller checks
    what the run-time shapes read)."""
    constants_to_initializers(model)
    drop_unused_initializers(model)
    model.producer_name = "msla-deploy"
    model.producer_version = producer_version
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckFailed(f"onnx.checker rejects the exported graph: {first}", "please report this model") from None
    set_metadata(model, metadata)
