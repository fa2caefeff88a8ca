"""What serving needs to know about an artifact beyond the resolver: a model name Triton takes,
an engine's I/O without TensorRT, and the static batch."""

from __future__ import annotations

import re
from pathlib import Path
from typing import List, Sequence, Tuple

from ..artifact.graph import TensorSpec, graph_inputs, graph_outputs, load_onnx
from ..artifact.names import MANIFEST_NAME
from ..artifact.resolve import Artifact, resolve
from ..errors import BadInput

__all__ = ["Artifact", "TensorSpec", "check_model_name", "default_name", "engine_io", "onnx_io", "open_artifact", "static_batch"]

# what Triton accepts as a model name
_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def open_artifact(path: Path) -> Artifact:
    return resolve(Path(path))


def check_model_name(name: str) -> str:
    if not _NAME_OK.match(name or ""):
        raise BadInput(f"model name {name!r} is not usable by Triton", "use letters, digits, '.', '_' and '-' (--name)")
    return name


def default_name(art: Artifact) -> str:
    """The export directory's name (it says model, resolution and precision), else the file's stem."""
    source = art.directory.name if art.directory is not None else (art.path.name if art.kind == "directory" else art.path.stem)
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", source).strip("-._") or "model"
    return name if name[0].isalnum() else "m" + name


def onnx_io(onnx_path: Path) -> Tuple[List[TensorSpec], List[TensorSpec]]:
    model = load_onnx(onnx_path, load_external_data=False)
    return graph_inputs(model), graph_outputs(model)


def engine_io(art: Artifact, engine: Path) -> Tuple[List[TensorSpec], List[TensorSpec], str]:
    """An engine's I/O without TensorRT: the ONNX it was built from (its build record), else the
    ONNX beside it, else the manifest's record of the export. Also says where it was read."""
    record = art.build_record(engine)
    built_from = record.onnx_file if record is not None else None
    if built_from:
        candidate = Path(built_from) if Path(built_from).is_absolute() else engine.parent / built_from
        if candidate.is_file():
            return (*onnx_io(candidate), f"{candidate.name} (the ONNX it was built from)")
    if art.onnx_path is not None:
        return (*onnx_io(art.onnx_path), f"{art.onnx_path.name} beside it")
    recorded = (art.manifest.onnx if art.manifest is not None else None) or {}
    try:
        inputs, outputs = (
            [TensorSpec(str(t["name"]), tuple(int(d) for d in t["shape"]), str(t["dtype"])) for t in recorded[side]]
            for side in ("inputs", "outputs")
        )
    except (KeyError, TypeError, ValueError):
        raise BadInput(f"{engine}: no ONNX beside it and no manifest says its inputs and outputs",
                       "package the export directory the engine was built in") from None
    return inputs, outputs, MANIFEST_NAME


def static_batch(inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec], where: str) -> int:
    """The batch of a static graph (every dimension fixed; the first one is the batch)."""
    for t in (*inputs, *outputs):
        if not t.static:
            raise BadInput(f"{where}: {t.name} has a dynamic shape {list(t.shape)}",
                           "package or serve a static export (msla-deploy export --batch N)")
    firsts = {t.shape[0] for t in inputs if t.shape}
    return int(firsts.pop()) if len(firsts) == 1 else 1
