"""EfficientViT-SAM served by Triton: the two models `package --triton` and `serve` give a SAM
artifact, how they are named, what travels on the wire, and the client side of
`SamPredictor("triton://HOST:PORT/NAME")` (torch-free; tritonclient through runtime/triton.py).

    NAME_encoder   image [1, 3, S, S] -> image_embeddings [1, 256, 64, 64]; no batching (one picture a call)
    NAME_decoder   one row per prompt, Triton's dynamic batcher over the rows (max_batch_size = the
                   decoder's `prompts` maximum): image_embeddings [256, 64, 64], point_coords [P, 2],
                   point_labels [P], mask_input [1, 256, 256], has_mask_input [1]
                   -> masks [M, 256, 256], iou_predictions [M]

Why every decoder input is per prompt, the image's embeddings too: Triton's dynamic batcher joins
requests along the first dimension of every input, so an input that is not per row cannot be
batched. Per-prompt embeddings let prompts of different pictures (different clients) run as one
decoder call; the price is 4 MiB of fp32 embeddings per prompt on the wire. The decoder the
server runs is the export's decoder.onnx with image_embeddings' first dimension made the prompts
dimension (serve/sam_graphs.py): it broadcasts one image's embeddings over the prompts, and the
same graph takes one per prompt. Requests with another number of points per prompt are batched
apart (Triton batches equal shapes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, Optional, Union

import numpy as np

from ..artifact import sam_io
from ..artifact.graph import TensorSpec
from ..artifact.graphs import DECODER, ENCODER
from ..errors import BadInput
from .session import Session
from .triton import DEFAULT_TIMEOUT_S, TritonSession, check_model_name, parse_target

if TYPE_CHECKING:
    from ..artifact.graphs import GraphRecord
    from ..artifact.resolve import Artifact

__all__ = ["ROLES", "WIRE_SHAPES", "ServedSam", "TritonSamDecoder", "model_names", "open_served"]

ROLES = (ENCODER, DECODER)
#: decoder inputs whose per-prompt shape on the wire differs from the graph's (has_mask_input is
#: [B] in the graph: Triton's batched tensors need a dimension past the batch, so [B, 1] on the wire)
WIRE_SHAPES = {sam_io.HAS_MASK_INPUT: (1,)}


def model_names(name: str) -> Dict[str, str]:
    """role -> the Triton model name of that graph: NAME_encoder, NAME_decoder (the one place they are spelled)."""
    check_model_name(name)
    return {role: check_model_name(f"{name}_{role}") for role in ROLES}


class TritonSamDecoder(Session):
    """The served decoder as the local decoder graph looks: one image's embeddings [1, ...] and B
    prompts in, [B, ...] out. Each run repeats the embeddings per prompt and sends has_mask_input
    as [B, 1] (the wire layout above)."""

    backend = "triton"

    def __init__(self, served: TritonSession) -> None:
        self.served = served
        self.info = served.info
        self.max_batch = None  # SamPredictor splits prompts by max_prompts itself
        self.outputs = dict(served.outputs)
        self.inputs = {n: TensorSpec(n, self._local_shape(n, s), s.dtype) for n, s in served.inputs.items()}

    @staticmethod
    def _local_shape(name: str, spec: TensorSpec):
        if name == sam_io.IMAGE_EMBEDDINGS:
            return (1, *spec.shape[1:])
        if name in WIRE_SHAPES:
            return tuple(spec.shape[:1])
        return tuple(spec.shape)

    @property
    def max_prompts(self) -> int:
        return self.served.max_batch_size

    def _run(self, feeds: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        rows = int(np.shape(feeds[sam_io.POINT_COORDS])[0])
        wire = dict(feeds)
        embeddings = np.asarray(feeds[sam_io.IMAGE_EMBEDDINGS])
        wire[sam_io.IMAGE_EMBEDDINGS] = np.broadcast_to(embeddings, (rows, *embeddings.shape[1:]))
        for name, shape in WIRE_SHAPES.items():
            wire[name] = np.asarray(feeds[name]).reshape(rows, *shape)
        return self.served.run(wire)

    def describe(self) -> Dict:
        return self.served.describe()

    def close(self) -> None:
        self.served.close()


@dataclass
class ServedName:
    """What stands for the artifact where only the server is named (SamPredictor("triton://...")):
    errors name the address."""

    path: str

    @property
    def name(self) -> str:
        return self.path


@dataclass
class ServedSam:
    artifact: object  # the Artifact given, else a ServedName
    encoder: TritonSession
    decoder: TritonSamDecoder
    encoder_graph: Optional["GraphRecord"]
    decoder_graph: Optional["GraphRecord"]
    max_prompts: Optional[int]
    max_points: Optional[int]
    weights_source: Optional[str] = None
    weights_warning: Optional[str] = None


def open_served(
    artifact: Union[str, "Artifact", object], url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S
) -> ServedSam:
    """Both models of a SAM served at `url` (triton://HOST:PORT/NAME). `artifact`: the export they
    were packaged from (its manifest gives the decoder's profile, and the served models must have
    its graphs' inputs and outputs), or None (the server says what there is to know)."""
    host, port, name = parse_target(url)
    if name is None:
        raise BadInput(
            f"{url}: a SAM is served as two models (NAME_encoder, NAME_decoder)",
            "name them: triton://HOST:PORT/NAME (msla-deploy serve prints it)",
        )
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    names = model_names(name)
    encoder = TritonSession(f"triton://{address}/{names[ENCODER]}", timeout_s=timeout_s)
    try:
        decoder = TritonSamDecoder(TritonSession(f"triton://{address}/{names[DECODER]}", timeout_s=timeout_s))
    except BaseException:
        encoder.close()
        raise
    try:
        return _describe(artifact, url, encoder, decoder)
    except BaseException:
        encoder.close()
        decoder.close()
        raise


def _describe(artifact, url: str, encoder: TritonSession, decoder: TritonSamDecoder) -> ServedSam:
    missing = [n for n in sam_io.DECODER_INPUTS if n not in decoder.inputs]
    if missing or decoder.served.max_batch_size < 1:
        lacks = missing[0] if missing else "batching"
        raise BadInput(
            f"{decoder.served.url} is not a SAM decoder served by msla-deploy (no {lacks})",
            "serve the export with msla-deploy serve, or package it with msla-deploy package --triton",
        )
    if artifact is None:
        return ServedSam(ServedName(url), encoder, decoder, None, None, decoder.max_prompts, None)
    graphs = {role: artifact.manifest.graph(role) for role in ROLES}
    for role, session in ((ENCODER, encoder), (DECODER, decoder)):
        _check_same_io(url, role, graphs[role], session)
    profile = graphs[DECODER].profile
    points = profile[sam_io.POINTS_DIM].max if sam_io.POINTS_DIM in profile else None
    prompts = min(p for p in (decoder.max_prompts, _max(profile, sam_io.PROMPTS_DIM)) if p)
    return ServedSam(
        artifact,
        encoder,
        decoder,
        graphs[ENCODER],
        graphs[DECODER],
        prompts,
        points,
        artifact.weights_source,
        artifact.weights_warning,
    )


def _max(profile, dim: str) -> Optional[int]:
    return profile[dim].max if dim in profile else None


def _check_same_io(url: str, role: str, graph: "GraphRecord", session) -> None:
    """The served model's tensors are the graph's: names, dtypes and every fixed size (the served
    side leaves the prompts and points dimensions open)."""

    def fixed(shape):
        return tuple(d if isinstance(d, int) else None for d in shape)

    def agree(mine, theirs) -> bool:
        return len(mine) == len(theirs) and all(a is None or b is None or a == b for a, b in zip(mine, theirs))

    served = {**session.inputs, **session.outputs}
    for t in (*graph.inputs, *graph.outputs):
        spec = served.get(t.name)
        mine = fixed(t.shape)
        theirs = None if spec is None else fixed(spec.shape)
        if role == DECODER and theirs is not None and t.name != sam_io.IMAGE_EMBEDDINGS:
            theirs = (None, *theirs[1:])  # the served rows: up to max_batch_size prompts
        if spec is None or spec.dtype != t.dtype or not agree(mine, theirs):
            got = "nothing" if spec is None else f"{list(spec.shape)} {spec.dtype}"
            raise BadInput(
                f"the {role} served at {url} is not this artifact's: {t.name} is {got}, the artifact's "
                f"{list(t.shape)} {t.dtype}",
                "point triton:// at the models served from this artifact (or pass that artifact)",
            )
