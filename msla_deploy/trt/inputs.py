"""What `build` reads: an export directory (its manifest) or a bare ONNX (its metadata).

The manifest's "precision" section (written by `export`) says which ONNX serves which
precision and which nodes must stay fp32 in a weakly typed fp16 build:

    "precision": {"precision": "fp32"|"fp16", "attention_precision": ..., "io_dtype": ...,
                  "onnx_files": {"fp32": "model.onnx"} | {"fp16": "model.onnx", "fp32": "model_fp32.onnx"},
                  "fp32_nodes": ["node_MatMul_12", ...]}

A directory exported before that section existed is fp32 with model.onnx and no fp32 nodes. A
multi-graph artifact (SAM: an image encoder and a prompt decoder) lists its graphs in the
manifest's "graphs" instead (artifact/graphs.py GraphRecord): each graph is read as one ModelInput
of its own (`load_graph`), with the same slots (its ONNX by precision, its fp32_file, its fp32
nodes) and its dynamic dimensions' profile, so the plan, the engine and trtexec treat it as they
treat a single-graph export. A
bare ONNX carries the same facts in its metadata_props ("msla_deploy.precision",
"msla_deploy.fp32_nodes", comma-separated); which slot it fills (fp32 graph or mixed-precision
graph) is read from the graph itself: any float16 tensor makes it the mixed-precision one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..artifact.graph import TensorSpec, graph_inputs, has_fp16, load_onnx, max_batch_of, metadata
from ..artifact.graphs import GraphRecord
from ..artifact.manifest import Manifest, read_manifest
from ..artifact.names import MANIFEST_NAME, META_FP32_NODES, META_PRECISION, ONNX_SUFFIX
from ..errors import BadInput


@dataclass(frozen=True)
class GraphFacts:
    """What the plan needs from one ONNX file (read without its weights' data)."""

    opset: int
    inputs: Tuple[TensorSpec, ...]
    node_names: frozenset
    single_output_nodes: frozenset  # node names with exactly one output
    has_fp16: bool
    cubic_resize: bool = False
    layer_norm: bool = False  # an ONNX LayerNormalization (opset 17+; TensorRT 8.5's parser has none)
    metadata: Dict[str, str] = field(default_factory=dict)

    @property
    def max_batch(self) -> Optional[int]:
        """The largest batch of a dynamic-batch export (its metadata), None for any other graph."""
        return max_batch_of(self.metadata)


@dataclass
class ModelInput:
    source: Path  # what the user named
    kind: str  # "directory" | "onnx"
    root: Path  # where relative paths are relative to (the artifact dir, or the ONNX's folder)
    export_precision: str
    onnx_files: Dict[str, Path]  # {"fp32": path, "fp16": path}, absolute
    fp32_nodes: Tuple[str, ...]
    manifest: Optional[Manifest] = None
    graphs: Dict[str, GraphFacts] = field(default_factory=dict)  # per onnx_files key
    graph: Optional[GraphRecord] = None  # one graph of a multi-graph artifact (its role, its profile)

    @property
    def record_path(self) -> Path:
        """Where the build record goes: the manifest, or build.json beside the engine (see build.py)."""
        return self.root / MANIFEST_NAME


def _graph_facts(path: Path) -> GraphFacts:
    model = load_onnx(path, load_external_data=False)
    graph = model.graph
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    return GraphFacts(
        opset=opset,
        inputs=tuple(graph_inputs(model)),
        node_names=frozenset(n.name for n in graph.node if n.name),
        # ArgMax is imported as a TopK layer with two outputs (values, indices): a single
        # --layerOutputTypes type would also retype its int32 indices
        single_output_nodes=frozenset(
            n.name for n in graph.node if n.name and len(n.output) == 1 and n.op_type not in ("ArgMax", "ArgMin")
        ),
        has_fp16=has_fp16(model),
        cubic_resize=any(
            n.op_type == "Resize" and any(a.name == "mode" and a.s == b"cubic" for a in n.attribute) for n in graph.node
        ),
        layer_norm=any(n.op_type == "LayerNormalization" for n in graph.node),
        metadata=metadata(model),
    )


def _split_nodes(text: str) -> Tuple[str, ...]:
    return tuple(n.strip() for n in (text or "").split(",") if n.strip())


def _listed_file(directory: Path, rel: str) -> Path:
    path = directory / rel
    if not path.is_file():
        raise BadInput(f"{path} is listed in the manifest but missing", "copy the whole export directory, or re-export")
    return path.resolve()


def graph_roles(manifest: Manifest) -> List[str]:
    return [g.role for g in manifest.graphs]


def load_graph(directory: Path, role: str, manifest: Optional[Manifest] = None) -> ModelInput:
    """One graph of a multi-graph artifact (SAM's "encoder" or "decoder") as `build` reads it: its
    ONNX in the slot of its precision, the fp32 ONNX beside an fp16/int8 one, its fp32 nodes."""
    directory = Path(directory)
    manifest = manifest if manifest is not None else read_manifest(directory)
    record = manifest.graph(role)
    slot = record.precision if record.precision in ("fp16", "int8") else "fp32"
    onnx_files = {slot: _listed_file(directory, record.file)}
    if record.fp32_file and slot != "fp32":
        onnx_files["fp32"] = _listed_file(directory, record.fp32_file)
    model = ModelInput(
        source=directory,
        kind="directory",
        root=directory.resolve(),
        export_precision=record.precision,
        onnx_files=onnx_files,
        fp32_nodes=tuple(record.fp32_nodes),
        manifest=manifest,
        graph=record,
    )
    model.graphs = {key: _graph_facts(path) for key, path in onnx_files.items()}
    return model


def load_directory(directory: Path) -> ModelInput:
    directory = Path(directory)
    manifest = read_manifest(directory)
    if manifest.graphs:
        roles = graph_roles(manifest)
        raise BadInput(
            f"{directory} holds {len(roles)} graphs ({', '.join(roles)}), not one model.onnx: this step reads a "
            "single-graph export",
            f"name the graph ({' or '.join(roles)}) where the command takes one, or use a command that reads the "
            "whole artifact (inspect, build)",
        )
    section = manifest.precision
    onnx_files = {key: _listed_file(directory, rel) for key, rel in section.onnx_files.items()}
    model = ModelInput(
        source=directory,
        kind="directory",
        root=directory.resolve(),
        export_precision=section.precision,
        onnx_files=onnx_files,
        fp32_nodes=tuple(section.fp32_nodes),
        manifest=manifest,
    )
    model.graphs = {key: _graph_facts(path) for key, path in onnx_files.items()}
    return model


def load_onnx_file(path: Path) -> ModelInput:
    path = Path(path)
    if path.suffix.lower() != ONNX_SUFFIX:
        raise BadInput(
            f"{path} is neither an export directory nor an .onnx file", "pass the export directory or its model.onnx"
        )
    facts = _graph_facts(path)
    meta = facts.metadata
    slot = "fp16" if facts.has_fp16 else "fp32"
    model = ModelInput(
        source=path,
        kind="onnx",
        root=path.resolve().parent,
        export_precision=meta.get(META_PRECISION, slot),
        onnx_files={slot: path.resolve()},
        fp32_nodes=_split_nodes(meta.get(META_FP32_NODES, "")),
    )
    model.graphs = {slot: facts}
    return model


def load_model_input(source: Path, graph: Optional[str] = None) -> ModelInput:
    """An export directory, its manifest.json or a bare ONNX; `graph` names one graph of a
    multi-graph artifact (SAM: "encoder" or "decoder")."""
    source = Path(source)
    if source.is_file() and source.name == MANIFEST_NAME:
        source = source.parent
    if graph is not None:
        if not source.is_dir():
            raise BadInput(
                f"{source} is not an export directory: only a multi-graph artifact has a {graph} graph",
                "pass the SAM artifact's directory",
            )
        return load_graph(source, graph)
    if source.is_dir():
        return load_directory(source)
    if source.is_file():
        return load_onnx_file(source)
    raise BadInput(f"{source}: no such file or directory", "pass an export directory or an .onnx file")


def unknown_nodes(model: ModelInput, key: str = "fp32") -> List[str]:
    """fp32 nodes the given graph does not have (a manifest/ONNX mismatch)."""
    graph = model.graphs.get(key)
    if graph is None:
        return []
    return [n for n in model.fp32_nodes if n not in graph.node_names]
