"""The graph's head: what the graph outputs beyond (or instead of) the model's logits.

Which outputs a head gives is its task's (tasks.py); this module computes each output kind from
the logits, in PyTorch, so that the exported graph and the reference are the same computation.

Segmentation, `--head labels|both`: upstream's evaluation post-processing in the graph, so that
TensorRT, DeepStream, Triton and C++ consumers get train ids directly: the logits are resized to
the input resolution with torch's bicubic (ONNX Resize cubic, half_pixel, cubic_coeff_a=-0.75,
exclude_outside=0) and argmax'ed over the classes. ArgMax yields int64 in ONNX; TensorRT 8.x
narrows INT64 and DeepStream reads int32 class maps, so the graph casts the indices to int32.
With `--upsample bilinear` (for TensorRT 8.5, whose parser does not document cubic) the labels
resize is bilinear too, like the model's own head; parity then judges it against PyTorch's bicubic
reference like an fp16 graph.

Classification, `--head probs|topk`: the softmax over the classes, or its k best classes (ONNX TopK,
sorted, best first; indices int32 for the same reason) with their probabilities.

Every output is computed in the dtype the logits have (fp32, or fp16 for an fp16 export with fp16
I/O): the head adds no precision decision of its own.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..tasks import TOPK, OutputKind, OutputSpec, get_task

LABELS_DTYPE = torch.int32  # int32: what TensorRT binds natively on every version and DeepStream reads
_TORCH_MODES = {"cubic": "bicubic", "bilinear": "bilinear"}


def head_output_names(head: str, task: Optional[str]) -> Tuple[str, ...]:
    """The graph outputs of a head of this task (None: segmentation, an export before tasks), in order."""
    return get_task(task).output_names(head)


def labels_from_logits(logits: torch.Tensor, size: Tuple[int, int], upsample: str = "cubic") -> torch.Tensor:
    """Upstream's post-processing: [N, C, h, w] logits -> resize to `size` -> argmax -> [N, H, W] int32."""
    (h, w), (height, width) = (int(d) for d in logits.shape[-2:]), size
    if (h, w) != (height, width):
        if height % h == 0 and width % w == 0:
            # an exact factor (the logits are at 1/8): the same sampling as size=, and traced as a
            # constant-scales Resize, with no Shape arithmetic even when the batch is dynamic
            logits = F.interpolate(
                logits, scale_factor=(height / h, width / w), mode=_TORCH_MODES[upsample], align_corners=False
            )
        else:
            logits = F.interpolate(logits, size=(height, width), mode=_TORCH_MODES[upsample], align_corners=False)
    return logits.argmax(dim=1).to(LABELS_DTYPE)


def head_outputs(
    logits: torch.Tensor, outputs: Tuple[OutputSpec, ...], size: Tuple[int, int], upsample: str = "cubic"
) -> Tuple[torch.Tensor, ...]:
    """Each output of a head, computed from the logits, in order."""
    computed = []
    topk = None  # indices and scores come from one TopK
    for spec in outputs:
        if spec.kind == OutputKind.LOGITS:
            computed.append(logits)
        elif spec.kind == OutputKind.LABELS:
            computed.append(labels_from_logits(logits, size, upsample))
        elif spec.kind == OutputKind.PROBS:
            computed.append(torch.softmax(logits, dim=1))
        elif spec.kind in (OutputKind.TOPK_INDICES, OutputKind.TOPK_SCORES):
            if topk is None:
                k = min(TOPK, int(logits.shape[1]))
                topk = torch.topk(torch.softmax(logits, dim=1), k, dim=1, largest=True, sorted=True)
            computed.append(topk.indices.to(LABELS_DTYPE) if spec.kind == OutputKind.TOPK_INDICES else topk.values)
        else:
            raise ValueError(f"no head computes an output of kind {spec.kind!r}")
    return tuple(computed)


class GraphHead(nn.Module):
    """Wraps a module returning the logits, or a tuple starting with them (ProbedModel), and
    returns the head's outputs in order, followed by the tuple's rest."""

    def __init__(
        self, inner: nn.Module, outputs: Tuple[OutputSpec, ...], size: Tuple[int, int], upsample: str = "cubic"
    ) -> None:
        super().__init__()
        self.inner = inner
        self.outputs = tuple(outputs)
        self.size = (int(size[0]), int(size[1]))
        self.upsample = upsample

    def forward(self, x: torch.Tensor):
        out = self.inner(x)
        logits, rest = (out[0], tuple(out[1:])) if isinstance(out, tuple) else (out, ())
        heads = head_outputs(logits, self.outputs, self.size, self.upsample)
        return heads[0] if len(heads) == 1 and not rest else (*heads, *rest)


def with_head(module: nn.Module, head: str, size: Tuple[int, int], upsample: str, task: Optional[str]) -> nn.Module:
    """`module` itself for a head that is the logits alone (the graph stays exactly as before), else wrapped."""
    outputs = get_task(task).outputs(head)
    if [o.kind for o in outputs] == [OutputKind.LOGITS]:
        return module
    return GraphHead(module, outputs, size, upsample)
