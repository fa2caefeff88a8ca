"""One loaded ONNX graph with the look-ups every check needs (torch-free).

Types and shapes come from onnx shape inference, so that a check can ask "is this node's input
float16?" of any graph, ours or someone else's. Constants are resolved through Constant nodes and
value-preserving ops (Cast, Reshape, ...) because exporters put an eps in any of those places.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import onnx
from onnx import numpy_helper

from ..artifact.names import ONNX_NAME, PROBE_PREFIX
from ..errors import BadInput

NAME_SCOPES_KEY = "pkg.torch.onnx.name_scopes"  # node metadata written by torch's dynamo exporter
FLOAT_TYPES = {
    onnx.TensorProto.FLOAT: "float32",
    onnx.TensorProto.FLOAT16: "float16",
    onnx.TensorProto.BFLOAT16: "bfloat16",
    onnx.TensorProto.DOUBLE: "float64",
}
# ops whose output holds the input's values (maybe re-laid-out or re-typed): a constant stays a
# constant through them, and a zero stays a zero
VALUE_PRESERVING = frozenset({"Cast", "Identity", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Expand"})


@dataclass
class ModelView:
    path: str
    model: onnx.ModelProto  # shape-inferred copy
    inferred: bool
    opset: int
    metadata: Dict[str, str]
    producer: Dict[str, onnx.NodeProto] = field(default_factory=dict)
    consumers: Dict[str, List[Tuple[onnx.NodeProto, int]]] = field(default_factory=lambda: defaultdict(list))
    types: Dict[str, int] = field(default_factory=dict)
    shapes: Dict[str, List] = field(default_factory=dict)
    initializers: Dict[str, onnx.TensorProto] = field(default_factory=dict)
    _const_cache: Dict[str, Optional[np.ndarray]] = field(default_factory=dict)

    @property
    def nodes(self) -> Sequence[onnx.NodeProto]:
        return self.model.graph.node

    # ---- tensors -----------------------------------------------------------------------------
    def elem_type(self, name: str) -> Optional[int]:
        return self.types.get(name)

    def is_float16(self, name: str) -> bool:
        return self.types.get(name) == onnx.TensorProto.FLOAT16

    def shape(self, name: str) -> Optional[List]:
        return self.shapes.get(name)

    def const_value(self, name: str) -> Optional[np.ndarray]:
        """The value of a tensor known before run time, with its stored dtype; None otherwise."""
        if not name:
            return None
        if name not in self._const_cache:
            self._const_cache[name] = None  # guards against cycles in malformed graphs
            self._const_cache[name] = self._resolve_const(name)
        return self._const_cache[name]

    def _resolve_const(self, name: str) -> Optional[np.ndarray]:
        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        node = self.producer.get(name)
        if node is None:
            return None
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    return numpy_helper.to_array(attr.t)
                if attr.name in ("value_float", "value_floats"):
                    return np.asarray(onnx.helper.get_attribute_value(attr), dtype=np.float32)
                if attr.name in ("value_int", "value_ints"):
                    return np.asarray(onnx.helper.get_attribute_value(attr), dtype=np.int64)
            return None
        if node.op_type in VALUE_PRESERVING and node.input:
            value = self.const_value(node.input[0])
            if value is None:
                return None
            if node.op_type == "Cast":
                to = attribute(node, "to", onnx.TensorProto.FLOAT)
                with np.errstate(over="ignore", under="ignore", invalid="ignore"):
                    # what the Cast does: 1e5 -> inf in fp16
                    return value.astype(onnx.helper.tensor_dtype_to_np_dtype(to))
            return value
        return None

    def is_const(self, name: str) -> bool:
        return self.const_value(name) is not None

    # ---- walking -------------------------------------------------------------------------------
    def users(self, name: str) -> List[Tuple[onnx.NodeProto, int]]:
        return self.consumers.get(name, [])

    def downstream(self, node: onnx.NodeProto, limit: int = 400) -> Iterator[str]:
        """Tensor names reachable from the node's outputs, nearest first."""
        seen, frontier, steps = set(), [o for o in node.output if o], 0
        while frontier and steps < limit:
            name = frontier.pop(0)
            if name in seen:
                continue
            seen.add(name)
            steps += 1
            yield name
            for user, _ in self.users(name):
                frontier.extend(o for o in user.output if o)

    # ---- names ---------------------------------------------------------------------------------
    @staticmethod
    def label(node: onnx.NodeProto) -> str:
        return node.name or (node.output[0] if node.output else node.op_type)

    def module_of(self, node: onnx.NodeProto) -> Tuple[Optional[str], Optional[str]]:
        """The PyTorch module a node came from, and how we know: exporter scopes, the legacy
        exporter's '/a/b.0/Op' node names, or the nearest probe tensor downstream."""
        for prop in node.metadata_props:
            if prop.key == NAME_SCOPES_KEY:
                scopes = _parse_scopes(prop.value)
                if scopes:
                    return scopes, "name_scopes"
        if node.name.startswith("/") and node.name.count("/") >= 2:
            return ".".join(p for p in node.name.strip("/").split("/")[:-1]), "node_name"
        for tensor in self.downstream(node):
            if tensor.startswith(PROBE_PREFIX):
                return tensor[len(PROBE_PREFIX) :] or "<root>", "probe"
        return None, None


def attribute(node: onnx.NodeProto, name: str, default=None):
    for attr in node.attribute:
        if attr.name == name:
            value = onnx.helper.get_attribute_value(attr)
            return value.decode() if isinstance(value, bytes) else value
    return default


def _parse_scopes(text: str) -> Optional[str]:
    """ "['', 'att', 'att.proj', 'conv2d']" -> 'att.proj' (the last entry names the op itself)."""
    try:
        scopes = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text or None
    if isinstance(scopes, (list, tuple)) and len(scopes) >= 2:
        return str(scopes[-2]) or "<root>"
    return None


def _dims(value_info: onnx.ValueInfoProto) -> Optional[List]:
    tensor_type = value_info.type.tensor_type
    if not tensor_type.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor_type.shape.dim]


def load(path) -> ModelView:
    """Read and shape-infer an ONNX file. Unreadable input is BadInput (exit 2), never a traceback."""
    path = Path(path)
    if path.is_dir() and (path / ONNX_NAME).is_file():  # an export directory: its model.onnx
        path = path / ONNX_NAME
    if not path.is_file():
        raise BadInput(f"{path}: no such file", "pass the path of an .onnx model (e.g. artifacts/<run>/model.onnx)")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf DecodeError, missing external data, ...
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise BadInput(
            f"{path} is not a readable ONNX model ({first})", "pass an .onnx file written by an ONNX exporter"
        ) from None
    if not model.opset_import or not model.graph.node:
        raise BadInput(
            f"{path} is not an ONNX model (no graph or opset)", "pass an .onnx file written by an ONNX exporter"
        )
    return view_of(model, str(path))


def view_of(model: onnx.ModelProto, path: str = "<memory>") -> ModelView:
    inferred = True
    try:
        model = onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False, data_prop=True)
    except Exception:  # an op onnx does not know, a broken shape: check what can be checked
        inferred = False
    graph = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    view = ModelView(
        path=path, model=model, inferred=inferred, opset=opset, metadata={p.key: p.value for p in model.metadata_props}
    )
    for init in graph.initializer:
        view.initializers[init.name] = init
        view.types[init.name] = init.data_type
        view.shapes[init.name] = list(init.dims)
    for vi in list(graph.input) + list(graph.output) + list(graph.value_info):
        if vi.type.HasField("tensor_type"):
            view.types.setdefault(vi.name, vi.type.tensor_type.elem_type)
            dims = _dims(vi)
            if dims is not None:
                view.shapes.setdefault(vi.name, dims)
    for node in graph.node:
        for out in node.output:
            if out:
                view.producer[out] = node
        for index, name in enumerate(node.input):
            if name:
                view.consumers[name].append((node, index))
        if node.op_type == "Constant" and node.output:
            value = view.const_value(node.output[0])
            if value is not None:
                view.types.setdefault(node.output[0], onnx.helper.np_dtype_to_tensor_dtype(value.dtype))
                view.shapes.setdefault(node.output[0], list(value.shape))
    return view


def graph_inputs(view: ModelView) -> List[onnx.ValueInfoProto]:
    return [i for i in view.model.graph.input if i.name not in view.initializers]
