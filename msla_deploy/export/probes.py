"""Probes: named intermediate tensors (block and LiteMLA outputs) kept findable in the ONNX.

When parity fails, "where did the numbers drift?" needs the ONNX tensor that corresponds to a
PyTorch module's output. Exporters name tensors arbitrarily (and the dynamo exporter's scope
metadata is lost in its opset 18 -> 17 conversion), so the export returns each probed module's
output as an extra graph output named `PROBE_PREFIX + module path`; once exported those extra
outputs are unmarked again. The tensors keep their readable names and a validator can mark them
as outputs in a copy of the model.
"""

from __future__ import annotations

from typing import List, Sequence

import onnx
import torch
from torch import nn

from ..artifact.names import PROBE_PREFIX
from ..nn.capture import capture
from ..nn.litemla import LiteMLA

_CONTAINERS = (nn.ModuleList, nn.Sequential)


def probe_candidates(model: nn.Module) -> List[str]:
    """Every LiteMLA and its attention core (the fp32 island), and every member of a
    ModuleList/Sequential (the blocks of a stage or head), except what lives inside a LiteMLA."""
    names = []
    inside_attention: List[str] = []
    for parent_name, parent in model.named_modules():
        if isinstance(parent, LiteMLA):
            names.extend([parent_name, f"{parent_name}.core" if parent_name else "core"])
            inside_attention.append(f"{parent_name}." if parent_name else "")
    for parent_name, parent in model.named_modules():
        if isinstance(parent, _CONTAINERS) and not any((parent_name + ".").startswith(p) for p in inside_attention):
            prefix = f"{parent_name}." if parent_name else ""
            names.extend(f"{prefix}{child}" for child, _ in parent.named_children())
    return names


class ProbedModel(nn.Module):
    """Returns (output, *probe outputs) so that the exporter names each probe's tensor."""

    def __init__(self, model: nn.Module, names: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.names = list(names)

    def forward(self, x: torch.Tensor):
        with capture(self.model, self.names) as captured:
            out = self.model(x)
        found = dict(captured)
        return (out, *[found[name] for name in self.names])


def probe_output_names(names: Sequence[str]) -> List[str]:
    return [PROBE_PREFIX + name for name in names]


def unmark_probe_outputs(model: onnx.ModelProto) -> List[str]:
    """Remove the probe graph outputs (the tensors stay); returns the probe tensor names kept."""
    graph = model.graph
    produced = {o for node in graph.node for o in node.output}
    kept_outputs = [o for o in graph.output if not o.name.startswith(PROBE_PREFIX)]
    probes = [o.name for o in graph.output if o.name.startswith(PROBE_PREFIX) and o.name in produced]
    del graph.output[:]
    graph.output.extend(kept_outputs)
    return probes
