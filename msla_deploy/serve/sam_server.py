"""`serve` for a SAM export: one Triton server (PyTriton), two models with the interface the
packaged repository has (runtime/triton_sam.py): NAME_encoder, one picture a call, and
NAME_decoder, one row per prompt with Triton's dynamic batcher up to the profile's prompts.

Both graphs run in this process on ONNX Runtime (--backend auto, ort-cpu, ort-cuda, ort-trt); the
decoder is the serving decoder (embeddings per prompt, serve/sam_graphs.py), so rows of different
requests, pictures and clients run as one call. TensorRT engines are refused: the decoder engine
`build` writes takes one image's embeddings.
"""

from __future__ import annotations

from typing import Dict, List

import numpy as np

from ..artifact import sam_io
from ..artifact.graphs import DECODER, ENCODER
from ..errors import BadInput
from .model_io import Artifact
from .sam_graphs import ServedGraph, served_graphs, triton_dims
from .server import SERVE_BACKENDS, Batching, Binding, Server, batching_for, launch, pytriton_config, url_of


class _Sessions:
    """The server's two runtime sessions, closed together when it stops."""

    def __init__(self) -> None:
        self.by_role: Dict[str, object] = {}

    def close(self) -> None:
        for session in self.by_role.values():
            session.close()


def _backend(art: Artifact, requested: str):
    from .. import runtime

    if requested == "trt":
        raise BadInput(
            f"--backend trt: {art.path} is a SAM export, served from its ONNX graphs",
            "use --backend auto, ort-cpu, ort-cuda or ort-trt (its decoder engine takes one image's embeddings)",
        )
    chosen = runtime.choose(requested, art, allowed=SERVE_BACKENDS, command="serve")
    runtime.preflight(chosen)
    return chosen


def _decoder_infer(run, graph: ServedGraph):
    """Answer a batch of requests: rows of requests with the same points per prompt run together,
    at most the decoder's max prompts a run; each request gets its own rows back."""
    names = [t.name for t in graph.inputs]
    size = graph.layout.batch

    def infer(requests):
        answers: List[Dict[str, np.ndarray]] = [{} for _ in requests]
        groups: Dict[int, List[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault(int(np.shape(r[sam_io.POINT_COORDS])[1]), []).append(i)
        for members in groups.values():
            counts = [int(np.shape(requests[i][sam_io.POINT_COORDS])[0]) for i in members]
            stacked = {n: np.concatenate([np.asarray(requests[i][n]) for i in members]) for n in names}
            for n, shape in graph.reshape.items():  # the wire's [B, 1] -> the graph's [B]
                stacked[n] = stacked[n].reshape(len(stacked[n]), *shape)
            parts: Dict[str, List[np.ndarray]] = {t.name: [] for t in graph.outputs}
            for start in range(0, sum(counts), size):
                out = run({n: v[start : start + size] for n, v in stacked.items()})
                for n in parts:
                    parts[n].append(np.asarray(out[n]))
            joined = {n: np.concatenate(p) for n, p in parts.items()}
            offset = 0
            for i, count in zip(members, counts):
                answers[i] = {n: v[offset : offset + count] for n, v in joined.items()}
                offset += count
        return answers

    return infer


def _encoder_infer(run):
    def infer(requests):
        return [run({n: np.asarray(v) for n, v in r.items()}) for r in requests]

    return infer


def _described(graph: ServedGraph, specs) -> List[Dict]:
    return [{"name": t.name, "dtype": t.dtype, "dims": list(triton_dims(graph, t))} for t in specs]


def start_sam(pytriton, art: Artifact, *, host: str, port: int, name: str, backend: str) -> Server:
    from ..runtime import open_onnx

    Tensor = pytriton[4]
    chosen = _backend(art, backend)
    graphs = served_graphs(art, name)
    sessions = _Sessions()
    try:
        bindings, models = [], {}
        for graph in graphs:
            record = art.manifest.graph(graph.role)
            session = open_onnx(
                graph.onnx if graph.onnx is not None else graph.source,
                chosen,
                label=str(graph.source),
                precision=record.precision,
            )
            sessions.by_role[graph.role] = session
            batching = (
                batching_for(graph.layout)
                if graph.role == DECODER
                else Batching(False, 0, "one picture a call: the encoder takes one image")
            )
            if graph.role == DECODER:
                batching.why = f"one row per prompt: Triton gathers up to {graph.layout.batch} prompts, run as gathered"
                batching.pad = False

            def tensors(specs, g=graph):
                return [Tensor(name=t.name, dtype=np.dtype(t.dtype).type, shape=triton_dims(g, t)) for t in specs]

            infer = _decoder_infer(session.run, graph) if graph.role == DECODER else _encoder_infer(session.run)
            config = pytriton_config(pytriton, batching)
            bindings.append(Binding(graph.model, infer, tensors(graph.inputs), tensors(graph.outputs), config))
            models[graph.model] = {
                "graph": graph.role,
                "url": url_of(host, port, graph.model),
                "inputs": _described(graph, graph.inputs),
                "outputs": _described(graph, graph.outputs),
                "batching": batching.to_dict(),
            }
        triton, workdir, log_file = launch(pytriton, bindings, host=host, port=port)
    except BaseException:
        sessions.close()
        raise
    decoder = next(g for g in graphs if g.role == DECODER)
    return Server(
        url=url_of(host, port, name),
        host=host,
        port=port,
        model=name,
        artifact=art.path,
        inputs=[],
        outputs=[],
        batching=Batching(**{k: v for k, v in models[decoder.model]["batching"].items()}, pad=False),
        runner=sessions.by_role[ENCODER].describe(),
        log_file=log_file,
        weights_source=art.weights_source,
        weights_warning=art.weights_warning,
        models=models,
        _triton=triton,
        _workdir=workdir,
        _session=sessions,
    )
