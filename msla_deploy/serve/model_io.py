"""What serving needs to know about an artifact beyond the resolver: a model name Triton takes,
an engine's I/O without TensorRT, and the batch as Triton sees it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from ..artifact.graph import TensorSpec, graph_inputs, graph_outputs, load_onnx
from ..artifact.names import MANIFEST_NAME
from ..artifact.resolve import Artifact, resolve
from ..errors import BadInput
from ..runtime.triton import check_model_name
from ..tasks import SAM

__all__ = [
    "MAX_QUEUE_DELAY_US",
    "Artifact",
    "BatchLayout",
    "TensorSpec",
    "batch_layout",
    "check_model_name",
    "default_name",
    "engine_io",
    "onnx_io",
    "open_artifact",
]

# what Triton accepts as a model name


def open_artifact(path: Path) -> Artifact:
    """The artifact to package or serve: one graph, or a SAM export's two (serve/sam_graphs.py)."""
    artifact = resolve(Path(path))
    if artifact.graph_roles and artifact.task.name != SAM:  # no other task has several graphs to pair up
        artifact.require_single_graph("package/serve", "serve one graph at a time (its .onnx)")
    return artifact


def default_name(art: Artifact) -> str:
    """The export directory's name (it says model, resolution and precision), else the file's stem."""
    source = (
        art.directory.name
        if art.directory is not None
        else (art.path.name if art.kind == "directory" else art.path.stem)
    )
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
        raise BadInput(
            f"{engine}: no ONNX beside it and no manifest says its inputs and outputs",
            "package the export directory the engine was built in",
        ) from None
    return inputs, outputs, MANIFEST_NAME


#: how long Triton's dynamic batcher may hold a request to fill a batch (packaged configs and serve)
MAX_QUEUE_DELAY_US = 2000


@dataclass(frozen=True)
class BatchLayout:
    """How Triton sees the batch: static (max_batch_size 0, the batch in the dims) or dynamic
    (max_batch_size N, dims without the batch: Triton's dynamic batcher forms 1..N)."""

    batch: int  # the static batch, or the largest dynamic one
    dynamic: bool

    @property
    def max_batch_size(self) -> int:
        return self.batch if self.dynamic else 0

    def dims(self, t: TensorSpec) -> Tuple:
        return tuple(t.shape[1:]) if self.dynamic else tuple(t.shape)


def batch_layout(
    inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec], max_batch: Optional[int], where: str
) -> BatchLayout:
    """A static graph (every dimension fixed; the first one is the batch), or one whose only
    dynamic dimension is the batch of an `export --batch dynamic` graph (max_batch known)."""
    tensors = (*inputs, *outputs)
    if max_batch is not None and all(t.static_but_batch for t in tensors):
        return BatchLayout(int(max_batch), True)
    for t in tensors:
        if not t.static:
            raise BadInput(
                f"{where}: {t.name} has a dynamic shape {list(t.shape)}",
                "package or serve a static export (msla-deploy export --batch N), or one with --batch dynamic "
                "--max-batch N",
            )
    firsts = {t.shape[0] for t in inputs if t.shape}
    return BatchLayout(int(firsts.pop()) if len(firsts) == 1 else 1, False)
