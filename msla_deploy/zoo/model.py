"""EfficientViTSeg (backbone + seg head) and `build(name)` for the zoo models of both tasks."""

from __future__ import annotations

import torch
from torch import nn

from ..tasks import CLASSIFICATION, SAM
from .backbone import build_backbone
from .cls_head import ClsHead, EfficientViTCls
from .head import OUTPUT_KEY, SegHead
from .variants import architecture, get_spec

#: norm layers whose eps the zoo overrides (upstream's zoo sets all of these)
_NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)


class EfficientViTSeg(nn.Module):
    """Image [B, 3, H, W] -> logits [B, classes, H/8, W/8] (H, W multiples of 32)."""

    def __init__(self, backbone: nn.Module, head: SegHead) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.head(self.backbone(x))
        return features[OUTPUT_KEY]


def set_norm_eps(model: nn.Module, eps: float) -> None:
    for module in model.modules():
        if isinstance(module, _NORM_TYPES):
            module.eps = eps


def build(name: str) -> nn.Module:
    """Build a zoo model with random weights, in train mode (as upstream: no .eval()).

    Honours an enclosing `torch.device(...)` context, so `with torch.device("meta"):` gives a
    weightless model for shape and cost analysis.
    """
    spec = get_spec(name)
    if spec.task == SAM:
        from .sam import build_sam  # its own builder (encoder, prompt encoder, mask decoder)

        return build_sam(name)
    backbone_dims, head_dims, act = architecture(name)
    w = backbone_dims.widths
    if spec.task == CLASSIFICATION:
        model = EfficientViTCls(build_backbone(backbone_dims, act), ClsHead(w[4], head_dims, spec.num_classes, act))
    else:
        model = EfficientViTSeg(
            build_backbone(backbone_dims, act),
            SegHead((w[4], w[3], w[2]), head_dims, spec.num_classes, act),
        )
    set_norm_eps(model, spec.norm_eps)
    return model
