"""The two models a SAM artifact is served as (names and wire layout: runtime/triton_sam.py): the
graphs they run and the tensors Triton declares for them. Shared by `package --triton` (a model
repository) and `serve` (PyTriton), so both serve the same interface."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..artifact import sam_io
from ..artifact.graph import TensorSpec, graph_inputs, graph_outputs, load_onnx
from ..artifact.graphs import DECODER, ENCODER
from ..errors import BadInput
from ..runtime.triton_sam import ROLES, WIRE_SHAPES, model_names
from .model_io import Artifact, BatchLayout, onnx_io

__all__ = ["ServedGraph", "served_graphs", "triton_dims"]


@dataclass
class ServedGraph:
    role: str  # encoder | decoder
    model: str  # its Triton model name
    source: Path  # the export's ONNX it comes from
    onnx: Optional[bytes]  # what the server runs where it is not `source` as it is (the decoder: embeddings per prompt)
    inputs: List[TensorSpec]
    outputs: List[TensorSpec]
    layout: BatchLayout  # encoder: static batch 1; decoder: dynamic over prompts up to the profile's max
    reshape: Dict[str, Tuple[int, ...]]  # input -> the graph's per-row shape where the wire's differs


def serving_decoder(path: Path):
    """decoder.onnx with image_embeddings' first dimension made the prompts dimension: one row per
    prompt, as Triton's batcher joins them. The graph broadcasts [1, ...] embeddings over the
    prompts, so the same graph takes [B, ...] (tests/serve/test_serve_sam.py checks the answers).
    Recorded intermediate shapes are dropped: they were inferred for one image."""
    model = load_onnx(path)
    inputs = {i.name: i for i in model.graph.input}
    if sam_io.IMAGE_EMBEDDINGS not in inputs:
        raise BadInput(f"{path} has no input {sam_io.IMAGE_EMBEDDINGS!r}", "re-export the directory with msla-deploy")
    first = inputs[sam_io.IMAGE_EMBEDDINGS].type.tensor_type.shape.dim[0]
    first.Clear()
    first.dim_param = sam_io.PROMPTS_DIM
    del model.graph.value_info[:]
    return model


def served_graphs(art: Artifact, name: str) -> List[ServedGraph]:
    """The encoder and decoder models of a SAM export directory, named after `name`."""
    names = model_names(name)
    graphs = []
    for role in ROLES:
        record = art.manifest.graph(role)
        path = art.directory / record.file
        if not path.is_file():
            raise BadInput(f"{art.path}: the {role} graph {record.file} is missing", "re-export the directory")
        if role == ENCODER:
            inputs, outputs = onnx_io(path)
            layout, data = BatchLayout(1, False), None
        else:
            model = serving_decoder(path)
            inputs, outputs = graph_inputs(model), graph_outputs(model)
            layout, data = BatchLayout(_max_prompts(art, record), True), model.SerializeToString()
        if role == ENCODER and any(not t.static for t in (*inputs, *outputs)):
            raise BadInput(f"{path}: the encoder is not static", "re-export the directory with msla-deploy")
        reshape = {t.name: tuple(t.shape[1:]) for t in inputs if t.name in WIRE_SHAPES} if role == DECODER else {}
        graphs.append(ServedGraph(role, names[role], path, data, inputs, outputs, layout, reshape))
    return graphs


def _max_prompts(art: Artifact, record) -> int:
    profile = record.profile.get(sam_io.PROMPTS_DIM)
    if profile is None:
        raise BadInput(
            f"{art.path}: its decoder has no dynamic prompts dimension to batch over",
            "serve an export with the dynamic decoder (msla-deploy export's default)",
        )
    return profile.max


def triton_dims(graph: ServedGraph, t: TensorSpec) -> Tuple[int, ...]:
    """A tensor's dims as Triton declares them: without the batch where Triton batches, the wire's
    per-row shape where it differs from the graph's, -1 for a dynamic dimension (the points)."""
    if t.name in graph.reshape:
        return WIRE_SHAPES[t.name]
    dims = graph.layout.dims(t)
    return tuple(d if isinstance(d, int) else -1 for d in dims)


def reshape_of(graph: ServedGraph, t: TensorSpec) -> Optional[Tuple[int, ...]]:
    return graph.reshape.get(t.name)
