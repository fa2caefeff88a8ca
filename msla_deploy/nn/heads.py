"""The graph's head: logits (upstream's output), labels, or both.

`--head labels` puts upstream's evaluation post-processing into the graph, so that TensorRT,
DeepStream, Triton and C++ consumers get train ids directly: the logits are resized to the
input resolution with torch's bicubic (ONNX Resize cubic, half_pixel, cubic_coeff_a=-0.75,
exclude_outside=0) and argmax'ed over the classes. ArgMax yields int64 in ONNX; TensorRT 8.x
narrows INT64 and DeepStream reads int32 class maps, so the graph casts the indices to int32.

The resize runs in the dtype the logits have (fp32, or fp16 for an fp16 export with fp16 I/O):
the head adds no precision decision of its own. With `--upsample bilinear` (for TensorRT 8.5,
whose parser does not document cubic) the labels resize is bilinear too, like the model's own
head; parity then judges it against PyTorch's bicubic reference like an fp16 graph.
"""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..artifact.names import LABELS_NAME, OUTPUT_NAME
from ..choices import HEADS

DEFAULT_HEAD = HEADS[0]
LABELS_DTYPE = torch.int32  # int32: what TensorRT binds natively on every version and DeepStream reads
_TORCH_MODES = {"cubic": "bicubic", "bilinear": "bilinear"}


def head_output_names(head: str) -> Tuple[str, ...]:
    """The graph outputs of a head, in order."""
    return {"logits": (OUTPUT_NAME,), "labels": (LABELS_NAME,), "both": (OUTPUT_NAME, LABELS_NAME)}[head]


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


class SegmentationHead(nn.Module):
    """Wraps a module returning the logits, or a tuple starting with them (ProbedModel), and
    returns the head's outputs in `head_output_names` order, followed by the tuple's rest."""

    def __init__(self, inner: nn.Module, head: str, size: Tuple[int, int], upsample: str = "cubic") -> None:
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        self.inner = inner
        self.head = head
        self.size = (int(size[0]), int(size[1]))
        self.upsample = upsample

    def forward(self, x: torch.Tensor):
        out = self.inner(x)
        logits, rest = (out[0], tuple(out[1:])) if isinstance(out, tuple) else (out, ())
        if self.head == "logits":
            heads: Tuple[torch.Tensor, ...] = (logits,)
        else:
            labels = labels_from_logits(logits, self.size, self.upsample)
            heads = (labels,) if self.head == "labels" else (logits, labels)
        return heads[0] if len(heads) == 1 and not rest else (*heads, *rest)


def with_head(module: nn.Module, head: str, size: Tuple[int, int], upsample: str = "cubic") -> nn.Module:
    """`module` itself for the logits head (the graph stays exactly as before), else wrapped."""
    return module if head == DEFAULT_HEAD else SegmentationHead(module, head, size, upsample)
