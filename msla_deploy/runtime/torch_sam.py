"""SAM's `--backend torch`: the two graphs of a SAM export run by the PyTorch rebuild of the
exported model (the reference evaluate compares the deployed graphs with).

Each graph is a Session with the ONNX graph's tensor names and shapes (the manifest's graph
record), running what the export traced (zoo/sam/graphs.py): the encoder planned for the
graph's input size in fp32 (`fp32_encoder`), the decoder as `SamDecoderGraph` with the export's
head. fp32, eager, on the CPU, whatever the artifact's precision. The model is rebuilt
once for both graphs (and its weights checked against the manifest's hash, loading.py).
"""

from __future__ import annotations

import weakref
from typing import Dict, Optional

import numpy as np

from ..artifact.graph import TensorSpec
from ..artifact.sam_io import DECODER_INPUTS, ENCODER_INPUTS, IMAGE
from .session import Session
from .torch_backend import rebuild, torch_info

PURPOSE = "--backend torch"
#: the rebuilt model of an artifact while a session of it is open: the decoder opened after the
#: encoder reuses it instead of rebuilding it (freed with the last session that holds it)
_REBUILT: "weakref.WeakValueDictionary" = weakref.WeakValueDictionary()


def _sam(artifact):
    key = (str(artifact.directory), artifact.manifest.weights.get("state_dict_sha256"))
    sam = _REBUILT.get(key)
    if sam is None:
        sam = rebuild(artifact.manifest, PURPOSE)
        _REBUILT[key] = sam
    return sam


def _specs(records) -> Dict[str, TensorSpec]:
    return {r.name: TensorSpec(r.name, tuple(r.shape), "float32") for r in records}


class TorchSamGraph(Session):
    """One graph of a SAM export in PyTorch; `graph` is its manifest record (GraphRecord)."""

    def __init__(self, artifact, graph, *, threads: Optional[int] = None) -> None:
        import torch

        from ..zoo.sam.graphs import SamDecoderGraph, fp32_encoder

        self._torch = torch
        self.role = graph.role
        # the forward's argument order, whatever the manifest's
        order = ENCODER_INPUTS if graph.role == "encoder" else DECODER_INPUTS
        self.inputs = {
            name: spec for name, spec in sorted(_specs(graph.inputs).items(), key=lambda i: order.index(i[0]))
        }
        self.outputs = _specs(graph.outputs)
        self._sam = _sam(artifact)  # held: the other graph's session may reuse it
        if graph.role == "encoder":
            side = int(self.inputs[IMAGE].shape[-1])
            self.module = fp32_encoder(self._sam, side)
        else:
            head = artifact.manifest.options.head
            self.module = SamDecoderGraph(self._sam, multimask=head == "multimask").eval()
        # threads are process-wide in PyTorch: the encoder's session sets them and puts them back
        self._previous_threads = torch.get_num_threads() if graph.role == "encoder" else None
        if threads and self._previous_threads is not None:
            torch.set_num_threads(threads)
        self.backend = "torch"
        self.info = {**torch_info(torch), "graph": graph.role}

    def _run(self, feeds: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        torch = self._torch
        args = [torch.from_numpy(np.ascontiguousarray(feeds[name], dtype=np.float32)) for name in self.inputs]
        with torch.inference_mode():
            output = self.module(*args)
        values = output if isinstance(output, (tuple, list)) else (output,)
        return {name: value.detach().float().numpy() for name, value in zip(self.outputs, values)}

    def close(self) -> None:
        if self._previous_threads is not None:
            self._torch.set_num_threads(self._previous_threads)
            self._previous_threads = None


def open_torch_graph(artifact, graph, threads: Optional[int] = None) -> Session:
    """The session of one graph of a SAM export (`graph`: its manifest record)."""
    return TorchSamGraph(artifact, graph, threads=threads)
