"""The graphs of a multi-graph artifact (SAM: an image encoder and a prompt decoder), as typed records.

A single-graph export (segmentation, classification) is described by the manifest's `precision`
and `onnx` sections and has no `graphs` section. A SAM export lists each graph here: its role,
the ONNX that runs and its precision, the fp32 ONNX beside it for weakly typed TensorRT builds,
the nodes such a build keeps in fp32, its inputs and outputs, and the dynamic dimensions with
the TensorRT optimisation profile each one gets (min, opt, max). build, validate, bench, predict
and serve read it from here; the manifest (manifest.py) reads and writes it.

Torch- and numpy-free.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from ..errors import BadInput

#: the roles of SAM's two graphs (tasks.py's Task.graphs)
ENCODER, DECODER = "encoder", "decoder"

Dim = Union[int, str]  # a size, or the name of a dynamic dimension


@dataclass(frozen=True)
class TensorRecord:
    name: str
    shape: Tuple[Dim, ...]
    dtype: str  # numpy's name: float32, float16, int32, ...

    def to_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> "TensorRecord":
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            raise _error(f"{where} is not a tensor record (name, shape, dtype)")
        shape = data.get("shape")
        if not isinstance(shape, list) or not all(isinstance(d, (int, str)) and not isinstance(d, bool) for d in shape):
            raise _error(f"{where}.shape is not a list of sizes and dimension names")
        return cls(data["name"], tuple(shape), str(data.get("dtype", "float32")))


@dataclass(frozen=True)
class DimProfile:
    """A dynamic dimension's range: what TensorRT's optimisation profile and Triton's config get."""

    min: int
    opt: int
    max: int

    def to_list(self) -> List[int]:
        return [self.min, self.opt, self.max]

    @classmethod
    def from_value(cls, value: Any, where: str) -> "DimProfile":
        if (
            not isinstance(value, list)
            or len(value) != 3
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            or not 1 <= value[0] <= value[1] <= value[2]
        ):
            raise _error(f"{where} is not [min, opt, max] with 1 <= min <= opt <= max")
        return cls(*value)


@dataclass
class GraphRecord:
    role: str  # ENCODER | DECODER
    file: str  # the ONNX that runs, relative to the artifact directory
    precision: str  # fp32 | fp16 | int8: what `file` computes in
    inputs: List[TensorRecord]
    outputs: List[TensorRecord]
    fp32_file: Optional[str] = None  # the fp32 ONNX beside an fp16/int8 `file` (weakly typed builds)
    fp32_nodes: List[str] = field(default_factory=list)  # nodes of fp32_file a weakly typed fp16 build pins
    profile: Dict[str, DimProfile] = field(default_factory=dict)  # dynamic dimension -> its range

    @property
    def dynamic(self) -> bool:
        return bool(self.profile)

    def input(self, name: str) -> TensorRecord:
        return _named(self.inputs, name, self.role)

    def output(self, name: str) -> TensorRecord:
        return _named(self.outputs, name, self.role)

    def shapes(self, point: str) -> Dict[str, Tuple[int, ...]]:
        """Every input's shape at the profile's "min", "opt" or "max" (trtexec's --minShapes ...)."""
        sizes = {dim: getattr(p, point) for dim, p in self.profile.items()}
        return {t.name: tuple(sizes[d] if isinstance(d, str) else d for d in t.shape) for t in self.inputs}

    @property
    def files(self) -> List[str]:
        return [self.file] + ([self.fp32_file] if self.fp32_file else [])

    def to_dict(self) -> Dict[str, Any]:
        data: Dict[str, Any] = {
            "role": self.role,
            "file": self.file,
            "precision": self.precision,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
        }
        if self.fp32_file:
            data["fp32_file"] = self.fp32_file
        data["fp32_nodes"] = list(self.fp32_nodes)
        if self.profile:
            data["profile"] = {dim: p.to_list() for dim, p in self.profile.items()}
        return data

    @classmethod
    def from_dict(cls, data: Any, where: str, relative) -> "GraphRecord":
        """`relative(text, where)` checks a path stays inside the artifact (the manifest's rule)."""
        if not isinstance(data, dict):
            raise _error(f"{where} is not an object")
        for key in ("role", "file", "precision"):
            if not isinstance(data.get(key), str):
                raise _error(f"{where}.{key} is missing or not a string")
        tensors = {}
        for key in ("inputs", "outputs"):
            items = data.get(key)
            if not isinstance(items, list) or not items:
                raise _error(f"{where}.{key} lists no tensors")
            tensors[key] = [TensorRecord.from_dict(t, f"{where}.{key}[{i}]") for i, t in enumerate(items)]
        profile = data.get("profile") or {}
        if not isinstance(profile, dict):
            raise _error(f"{where}.profile is not an object")
        nodes = data.get("fp32_nodes") or []
        if not isinstance(nodes, list):
            raise _error(f"{where}.fp32_nodes is not a list")
        fp32_file = data.get("fp32_file")
        return cls(
            role=data["role"],
            file=relative(data["file"], f"{where}.file"),
            precision=data["precision"],
            inputs=tensors["inputs"],
            outputs=tensors["outputs"],
            fp32_file=relative(fp32_file, f"{where}.fp32_file") if fp32_file is not None else None,
            fp32_nodes=[str(n) for n in nodes],
            profile={str(d): DimProfile.from_value(v, f"{where}.profile.{d}") for d, v in profile.items()},
        )


def find_graph(graphs: Sequence[GraphRecord], role: str) -> GraphRecord:
    for graph in graphs:
        if graph.role == role:
            return graph
    raise _error(f"the manifest lists no {role} graph (it has {', '.join(g.role for g in graphs) or 'none'})")


def _named(tensors: Sequence[TensorRecord], name: str, role: str) -> TensorRecord:
    for tensor in tensors:
        if tensor.name == name:
            return tensor
    raise _error(f"the {role} graph has no tensor {name!r}")


def _error(problem: str) -> BadInput:
    return BadInput(f"manifest graphs: {problem}", "re-export the directory with msla-deploy export")
