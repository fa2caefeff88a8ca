"""Find the ONNX nodes of each LiteMLA's fp32 island, to pin them in weakly typed builds.

TensorRT <= 10.11 (all of JetPack 5/6) builds fp16 engines from the fp32 ONNX with the FP16
flag; the attention must then be forced to fp32 by layer name (`--layerPrecisions`). The island
ends at the attention core's output, a probe tensor with a readable name; walking back from it
until the island's inputs (the kernel function's ReLUs, the q/k/v Split, a Reshape or Cast)
gives exactly the matmuls, the normaliser, eps and the division.
"""

from __future__ import annotations

from typing import Dict, Iterable, List

import onnx

# where an island starts: its inputs are produced by these ops (not part of the island)
BOUNDARY_OPS = frozenset({"Relu", "Split", "Reshape", "Cast", "Slice"})


def island_nodes(model: onnx.ModelProto, core_outputs: Iterable[str]) -> List[str]:
    """Names of the nodes computing each core output, in graph order."""
    producer: Dict[str, onnx.NodeProto] = {o: n for n in model.graph.node for o in n.output}
    selected = set()
    for tensor in core_outputs:
        stack = [tensor]
        while stack:
            node = producer.get(stack.pop())
            if node is None or node.op_type in BOUNDARY_OPS or node.name in selected:
                continue
            selected.add(node.name)
            stack.extend(node.input)
    return [n.name for n in model.graph.node if n.name in selected]


def name_unnamed_nodes(model: onnx.ModelProto) -> None:
    """TensorRT names layers after nodes: give every node a unique, stable name."""
    taken = {n.name for n in model.graph.node if n.name}
    for index, node in enumerate(model.graph.node):
        if not node.name:
            candidate = f"{node.op_type}_{index}"
            while candidate in taken:
                candidate += "_"
            node.name = candidate
            taken.add(candidate)
