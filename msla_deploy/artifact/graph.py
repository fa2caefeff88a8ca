"""What an ONNX file says about itself: its graph I/O and metadata, read once, with one error.

torch-free and runtime-free (only `onnx`): every stage that needs "what does this model take and
give" asks here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
import onnx

from ..errors import BadInput
from .names import META_MAX_BATCH

Dim = Union[int, str]  # a static size, or the name of a symbolic dimension


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: Tuple[Dim, ...]
    dtype: str  # numpy dtype name: "float32", "float16", "int32", ...

    @property
    def static(self) -> bool:
        return all(isinstance(d, int) and d > 0 for d in self.shape)

    @property
    def static_but_batch(self) -> bool:
        """Every dimension after the first is fixed (the first may be a dynamic batch)."""
        return bool(self.shape) and all(isinstance(d, int) and d > 0 for d in self.shape[1:])

    @property
    def numpy_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)

    def to_dict(self) -> Dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


def load_onnx(path: Path, load_external_data: bool = True) -> onnx.ModelProto:
    """The graph, or a one-line BadInput for a truncated or foreign file."""
    try:
        return onnx.load(str(path), load_external_data=load_external_data)
    except Exception as exc:  # protobuf DecodeError, external-data errors, ...: all mean "not a usable ONNX"
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BadInput(
            f"{path} is not a readable ONNX model ({detail}; truncated?)", "re-export it, or copy the file again"
        ) from None


def _dtype_name(elem_type: int) -> str:
    if not elem_type:
        return "float32"
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)).name
    except Exception:  # a type numpy has no name for (bfloat16, float8 ...)
        return onnx.TensorProto.DataType.Name(elem_type).lower()


def _spec(value: onnx.ValueInfoProto) -> TensorSpec:
    tensor = value.type.tensor_type
    dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tensor.shape.dim)
    return TensorSpec(value.name, dims, _dtype_name(tensor.elem_type))


def graph_inputs(model: onnx.ModelProto) -> List[TensorSpec]:
    """The graph's real inputs (initializers listed as inputs by old exporters left out)."""
    initializers = {i.name for i in model.graph.initializer}
    return [_spec(v) for v in model.graph.input if v.name not in initializers]


def graph_outputs(model: onnx.ModelProto) -> List[TensorSpec]:
    return [_spec(v) for v in model.graph.output]


def metadata(model: onnx.ModelProto) -> Dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def max_batch_of(meta: Dict[str, str]) -> Optional[int]:
    """The largest batch an `export --batch dynamic --max-batch N` graph records; None for any other."""
    text = meta.get(META_MAX_BATCH, "")
    return int(text) if text.isdigit() and int(text) > 0 else None


def has_fp16(model: onnx.ModelProto) -> bool:
    """Any float16 tensor: the mixed-precision graph of an fp16 export."""
    fp16 = onnx.TensorProto.FLOAT16
    g = model.graph
    return (
        any(t.data_type == fp16 for t in g.initializer)
        or any(v.type.tensor_type.elem_type == fp16 for v in list(g.input) + list(g.output) + list(g.value_info))
        or any(n.op_type == "Cast" and any(a.name == "to" and a.i == fp16 for a in n.attribute) for n in g.node)
    )
