"""What `build` reads: an export directory (its manifest) or a bare ONNX (its metadata).

The manifest's "precision" section (written by `export`) says which ONNX serves which
precision and which nodes must stay fp32 in a weakly typed fp16 build:

    "precision": {"precision": "fp32"|"fp16", "attention_precision": ..., "io_dtype": ...,
                  "onnx_files": {"fp32": "model.onnx"} | {"fp16": "model.onnx", "fp32": "model_fp32.onnx"},
                  "fp32_nodes": ["node_MatMul_12", ...]}

A directory exported before that section existed is fp32 with model.onnx and no fp32 nodes. A
bare ONNX carries the same facts in its metadata_props ("msla_deploy.precision",
"msla_deploy.fp32_nodes", comma-separated); which slot it fills (fp32 graph or mixed-precision
graph) is read from the graph itself: any float16 tensor makes it the mixed-precision one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import onnx

from ..errors import BadInput
from ..artifact.names import MANIFEST_NAME
from ..artifact.manifest import read_manifest

META_PRECISION = "msla_deploy.precision"
META_FP32_NODES = "msla_deploy.fp32_nodes"
DEFAULT_ONNX = "model.onnx"


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: Tuple  # ints, or strings for dynamic dimensions
    dtype: str

    @property
    def static(self) -> bool:
        return all(isinstance(d, int) and d > 0 for d in self.shape)

    def to_dict(self) -> Dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


@dataclass(frozen=True)
class GraphFacts:
    """What the plan needs from one ONNX file (read without its weights' data)."""

    opset: int
    inputs: Tuple[TensorSpec, ...]
    node_names: frozenset
    single_output_nodes: frozenset  # node names with exactly one output
    has_fp16: bool
    cubic_resize: bool = False
    metadata: Dict[str, str] = field(default_factory=dict)


@dataclass
class ModelInput:
    source: Path  # what the user named
    kind: str  # "directory" | "onnx"
    root: Path  # where relative paths are relative to (the artifact dir, or the ONNX's folder)
    export_precision: str
    onnx_files: Dict[str, Path]  # {"fp32": path, "fp16": path}, absolute
    fp32_nodes: Tuple[str, ...]
    manifest: Optional[Dict] = None
    graphs: Dict[str, GraphFacts] = field(default_factory=dict)  # per onnx_files key

    @property
    def record_path(self) -> Path:
        """Where the build record goes: the manifest, or build.json beside the engine (see build.py)."""
        return self.root / MANIFEST_NAME


def _graph_facts(path: Path) -> GraphFacts:
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # a truncated or foreign file
        raise BadInput(f"{path} is not a readable ONNX model ({type(exc).__name__}: {exc})", "point at the export's model.onnx") from None
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    inputs = []
    for vi in graph.input:
        if vi.name in initializers:
            continue
        tt = vi.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tt.shape.dim)
        try:
            dtype = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type).name
        except Exception:
            dtype = str(tt.elem_type)
        inputs.append(TensorSpec(vi.name, dims, dtype))
    fp16 = onnx.TensorProto.FLOAT16
    has_fp16 = (
        any(t.data_type == fp16 for t in graph.initializer)
        or any(v.type.tensor_type.elem_type == fp16 for v in list(graph.input) + list(graph.output) + list(graph.value_info))
        or any(n.op_type == "Cast" and any(a.name == "to" and a.i == fp16 for a in n.attribute) for n in graph.node)
    )
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    return GraphFacts(
        opset=opset,
        inputs=tuple(inputs),
        node_names=frozenset(n.name for n in graph.node if n.name),
        single_output_nodes=frozenset(n.name for n in graph.node if n.name and len(n.output) == 1),
        has_fp16=has_fp16,
        cubic_resize=any(
            n.op_type == "Resize" and any(a.name == "mode" and a.s == b"cubic" for a in n.attribute) for n in graph.node
        ),
        metadata={p.key: p.value for p in model.metadata_props},
    )


def _split_nodes(text: str) -> Tuple[str, ...]:
    return tuple(n.strip() for n in (text or "").split(",") if n.strip())


def load_directory(directory: Path) -> ModelInput:
    directory = Path(directory)
    if not (directory / MANIFEST_NAME).is_file():
        raise BadInput(f"{directory} has no {MANIFEST_NAME}: not an export directory", "run `msla-deploy export` first, or pass the .onnx file itself")
    try:
        manifest = read_manifest(directory)
    except ValueError as exc:
        raise BadInput(f"{directory / MANIFEST_NAME} is not valid JSON ({exc})", "re-export the directory") from None
    section = manifest.get("precision")
    if section is None:  # exported before the precision contract: fp32, model.onnx, nothing pinned
        export_precision, files, fp32_nodes = "fp32", {"fp32": DEFAULT_ONNX}, ()
    else:
        if not isinstance(section, dict) or not isinstance(section.get("onnx_files"), dict):
            raise BadInput(f"{directory / MANIFEST_NAME}: 'precision' has no 'onnx_files' table", "re-export the directory with this version of msla-deploy")
        export_precision = section.get("precision", "fp32")
        files = dict(section["onnx_files"])
        fp32_nodes = tuple(section.get("fp32_nodes") or ())
    onnx_files = {}
    for key, rel in files.items():
        if key not in ("fp32", "fp16"):
            continue
        path = directory / rel
        if not path.is_file():
            raise BadInput(f"{path} is listed in the manifest but missing", "copy the whole export directory, or re-export")
        onnx_files[key] = path.resolve()
    if not onnx_files:
        raise BadInput(f"{directory / MANIFEST_NAME} lists no fp32 or fp16 ONNX", "re-export the directory")
    model = ModelInput(
        source=directory, kind="directory", root=directory.resolve(), export_precision=export_precision,
        onnx_files=onnx_files, fp32_nodes=fp32_nodes, manifest=manifest,
    )
    model.graphs = {key: _graph_facts(path) for key, path in onnx_files.items()}
    return model


def load_onnx(path: Path) -> ModelInput:
    path = Path(path)
    if path.suffix.lower() != ".onnx":
        raise BadInput(f"{path} is neither an export directory nor an .onnx file", "pass the export directory or its model.onnx")
    facts = _graph_facts(path)
    meta = facts.metadata
    slot = "fp16" if facts.has_fp16 else "fp32"
    model = ModelInput(
        source=path, kind="onnx", root=path.resolve().parent,
        export_precision=meta.get(META_PRECISION, slot),
        onnx_files={slot: path.resolve()}, fp32_nodes=_split_nodes(meta.get(META_FP32_NODES, "")),
    )
    model.graphs = {slot: facts}
    return model


def load_model_input(source: Path) -> ModelInput:
    source = Path(source)
    if source.is_dir():
        return load_directory(source)
    if source.is_file():
        if source.name == MANIFEST_NAME:
            return load_directory(source.parent)
        return load_onnx(source)
    raise BadInput(f"{source}: no such file or directory", "pass an export directory or an .onnx file")


def unknown_nodes(model: ModelInput, key: str = "fp32") -> List[str]:
    """fp32 nodes the given graph does not have (a manifest/ONNX mismatch)."""
    graph = model.graphs.get(key)
    if graph is None:
        return []
    return [n for n in model.fp32_nodes if n not in graph.node_names]
