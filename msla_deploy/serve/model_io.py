"""What serving needs to know about an artifact: which file runs, its named inputs and outputs
(shape and dtype), the recipe hash and a default model name.

An adapter over what is on disk today (manifest, ONNX graph, build records); when the artifact
layer's resolver lands this becomes a thin view of `artifact.resolve(path)`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..artifact.names import MANIFEST_NAME, META_MODEL, META_PRECISION, META_RECIPE, ONNX_NAME, ONNX_SUFFIX, is_engine_file
from ..errors import BadInput


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: Tuple[int, ...]  # -1 where the graph leaves a dimension symbolic
    dtype: str  # numpy's name: "float32", "float16", "int64", ...

    def to_dict(self) -> Dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}



# what Triton accepts as a model name, and what we derive one from
_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def check_model_name(name: str) -> str:
    if not _NAME_OK.match(name or ""):
        raise BadInput(f"model name {name!r} is not usable by Triton", "use letters, digits, '.', '_' and '-' (--name)")
    return name


def default_model_name(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._") or "model"
    return name if name[0].isalnum() else "m" + name


@dataclass
class ServedArtifact:
    path: Path  # as given
    kind: str  # "directory" | "onnx" | "engine"
    directory: Optional[Path]  # the export directory (with manifest.json), if any
    manifest: Optional[Dict]
    onnx_path: Optional[Path]
    engines: List[Path] = field(default_factory=list)
    metadata: Dict[str, str] = field(default_factory=dict)  # the ONNX's metadata_props

    @property
    def recipe_sha256(self) -> Optional[str]:
        return (self.manifest or {}).get("recipe_sha256") or self.metadata.get(META_RECIPE)

    @property
    def model_name(self) -> Optional[str]:
        model = (self.manifest or {}).get("model")
        return (model.get("name") if isinstance(model, dict) else None) or self.metadata.get(META_MODEL)

    @property
    def precision(self) -> Optional[str]:
        return self.metadata.get(META_PRECISION) or ((self.manifest or {}).get("options") or {}).get("precision")

    def default_name(self) -> str:
        source = self.directory.name if self.directory is not None else self.path.stem
        return default_model_name(source)


def _read_manifest(folder: Path) -> Optional[Dict]:
    from ..parity.artifact import read_manifest_if_any  # one reader of manifests (BadInput on a broken one)

    return read_manifest_if_any(folder)


def _load_graph(path: Path):
    from ..parity.artifact import load_onnx

    return load_onnx(path)


def open_artifact(path: Path) -> ServedArtifact:
    path = Path(path)
    if not path.exists():
        raise BadInput(f"{path}: no such file or directory", "pass an export directory, a .onnx or an engine")
    if path.is_dir():
        manifest = _read_manifest(path)
        onnx_path = path / ONNX_NAME if (path / ONNX_NAME).is_file() else None
        engines = sorted(p for p in path.iterdir() if p.is_file() and is_engine_file(p.name))
        if onnx_path is None and not engines:
            raise BadInput(f"{path} has neither {ONNX_NAME} nor an engine", "pass an export directory written by msla-deploy export")
        art = ServedArtifact(path, "directory", path, manifest, onnx_path, engines)
    elif path.suffix == ONNX_SUFFIX:
        directory = path.parent if (path.parent / MANIFEST_NAME).is_file() else None
        art = ServedArtifact(path, "onnx", directory, _read_manifest(path.parent) if directory else None, path)
    elif is_engine_file(path.name):
        directory = path.parent if (path.parent / MANIFEST_NAME).is_file() else None
        beside = path.parent / ONNX_NAME
        art = ServedArtifact(path, "engine", directory, _read_manifest(path.parent) if directory else None,
                             beside if beside.is_file() else None, [path])
    else:
        raise BadInput(f"{path} is neither an export directory, a .onnx nor an engine", "pass what msla-deploy export or build wrote")
    if art.onnx_path is not None:
        art.metadata = {p.key: p.value for p in _load_graph(art.onnx_path).metadata_props}
    return art


def _dims(value_info) -> Tuple[int, ...]:
    dims = value_info.type.tensor_type.shape.dim
    return tuple(d.dim_value if d.HasField("dim_value") else -1 for d in dims)


def onnx_io(onnx_path: Path) -> Tuple[List[TensorSpec], List[TensorSpec]]:
    """The graph's inputs (initializers excluded) and outputs, as the ONNX declares them."""
    from onnx import helper

    graph = _load_graph(onnx_path).graph
    initializers = {i.name for i in graph.initializer}

    def spec(v) -> TensorSpec:
        return TensorSpec(v.name, _dims(v), helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name)

    return [spec(v) for v in graph.input if v.name not in initializers], [spec(v) for v in graph.output]


def _manifest_io(manifest: Dict) -> Optional[Tuple[List[TensorSpec], List[TensorSpec]]]:
    onnx_entry = (manifest or {}).get("onnx") or {}
    try:
        return tuple(  # type: ignore[return-value]
            [TensorSpec(str(t["name"]), tuple(int(d) for d in t["shape"]), str(t["dtype"])) for t in onnx_entry[side]]
            for side in ("inputs", "outputs")
        )
    except (KeyError, TypeError, ValueError):
        return None


def engine_io(art: ServedArtifact, engine: Path) -> Tuple[List[TensorSpec], List[TensorSpec], str]:
    """An engine's I/O without TensorRT: the ONNX it was built from (its build record), else the
    ONNX beside it, else the manifest's record of the export. Also says where it was read."""
    from ..parity.artifact import engine_build_record

    record = engine_build_record(engine, art.manifest) or {}
    built_from = (record.get("onnx") or {}).get("file")
    if built_from:
        candidate = Path(built_from) if Path(built_from).is_absolute() else engine.parent / built_from
        if candidate.is_file():
            return (*onnx_io(candidate), f"{candidate.name} (the ONNX it was built from)")
    if art.onnx_path is not None:
        return (*onnx_io(art.onnx_path), f"{art.onnx_path.name} beside it")
    from_manifest = _manifest_io(art.manifest or {})
    if from_manifest is not None:
        return (*from_manifest, MANIFEST_NAME)
    raise BadInput(f"{engine}: no ONNX beside it and no manifest says its inputs and outputs",
                   "package the export directory the engine was built in")


def static_batch(inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec], where: str) -> int:
    """The batch of a static graph (every dimension fixed, one leading batch shared by all I/O)."""
    for t in (*inputs, *outputs):
        if any(d < 0 for d in t.shape):
            raise BadInput(f"{where}: {t.name} has a dynamic shape {list(t.shape)}",
                           "package a static export (msla-deploy export --batch N)")
    batches = {t.shape[0] for t in (*inputs, *outputs) if t.shape}
    return batches.pop() if len(batches) == 1 else 1
