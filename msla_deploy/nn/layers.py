"""Primitive layers of the EfficientViT family, export-friendly.

Attribute names follow upstream's so that official state dicts load strictly. Unlike upstream,
nothing here decides precision at run time (no autocast decorators, no dtype branches): the
graph a tracer sees is the graph that runs.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn


def repeat_last(value, length: int) -> tuple:
    """Expand a scalar or short tuple to `length` items by repeating the last item."""
    items = tuple(value) if isinstance(value, (list, tuple)) else (value,)
    if not items:
        raise ValueError("expected at least one value")
    return items + (items[-1],) * (length - len(items))


def build_act(name: Optional[str]) -> Optional[nn.Module]:
    if name is None:
        return None
    factories = {
        "relu": nn.ReLU,
        "relu6": nn.ReLU6,
        "hswish": nn.Hardswish,
        "silu": nn.SiLU,
        # upstream's "gelu" is the tanh approximation
        "gelu": lambda: nn.GELU(approximate="tanh"),
    }
    factory = factories.get(name)
    return factory() if factory is not None else None


def build_norm(name: Optional[str], channels: int) -> Optional[nn.Module]:
    if name == "bn2d":
        return nn.BatchNorm2d(channels)
    return None


class ConvLayer(nn.Module):
    """Conv2d ("same" padding for odd kernels) -> optional BatchNorm -> optional activation."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
        use_bias: bool = False,
        dropout: float = 0.0,
        norm: Optional[str] = "bn2d",
        act_func: Optional[str] = "relu",
    ) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else None
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=(kernel_size // 2) * dilation,
            dilation=dilation,
            groups=groups,
            bias=use_bias,
        )
        self.norm = build_norm(norm, out_channels)
        self.act = build_act(act_func)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dropout is not None:
            x = self.dropout(x)
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x)
        if self.act is not None:
            x = self.act(x)
        return x


class UpSampleLayer(nn.Module):
    """Resize by an integer factor or to a fixed size.

    Upstream upcasts fp16 inputs here and never casts back, which breaks `model.half()`;
    this version keeps the input dtype, so precision stays a decision of the policy.
    """

    def __init__(
        self,
        mode: str = "bicubic",
        size: Union[int, Sequence[int], None] = None,
        factor: int = 2,
        align_corners: bool = False,
    ) -> None:
        super().__init__()
        self.mode = mode
        self.size: Optional[Tuple[int, int]] = repeat_last(size, 2)[:2] if size is not None else None
        self.factor = None if self.size is not None else factor
        self.align_corners = align_corners

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.factor == 1 or (self.size is not None and tuple(x.shape[-2:]) == self.size):
            return x
        corners = self.align_corners if self.mode in ("bilinear", "bicubic") else None
        if self.size is not None:
            return F.interpolate(x, size=self.size, mode=self.mode, align_corners=corners)
        return F.interpolate(x, scale_factor=self.factor, mode=self.mode, align_corners=corners)


class IdentityLayer(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class ResidualBlock(nn.Module):
    """main(x) + shortcut(x); no residual when shortcut is None."""

    def __init__(
        self,
        main: Optional[nn.Module],
        shortcut: Optional[nn.Module],
        post_act: Optional[str] = None,
        pre_norm: Optional[nn.Module] = None,
    ) -> None:
        super().__init__()
        self.pre_norm = pre_norm
        self.main = main
        self.shortcut = shortcut
        self.post_act = build_act(post_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.main is None:
            return x
        res = self.main(x if self.pre_norm is None else self.pre_norm(x))
        if self.shortcut is None:
            return res
        res = res + self.shortcut(x)
        return self.post_act(res) if self.post_act is not None else res


class OpSequential(nn.Module):
    """Apply ops in order; None entries are dropped before indexing (state-dict layout)."""

    def __init__(self, ops: Sequence[Optional[nn.Module]]) -> None:
        super().__init__()
        self.op_list = nn.ModuleList([op for op in ops if op is not None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for op in self.op_list:
            x = op(x)
        return x


class DAGBlock(nn.Module):
    """Reads named features from a dict, merges them, and writes named outputs back."""

    def __init__(
        self,
        inputs: "dict[str, nn.Module]",
        merge: str,
        post_input: Optional[nn.Module],
        middle: nn.Module,
        outputs: "dict[str, nn.Module]",
    ) -> None:
        super().__init__()
        if merge not in ("add", "cat"):
            raise ValueError(f"merge must be 'add' or 'cat', got {merge!r}")
        self.input_keys = list(inputs)
        self.input_ops = nn.ModuleList(inputs.values())
        self.merge = merge
        self.post_input = post_input
        self.middle = middle
        self.output_keys = list(outputs)
        self.output_ops = nn.ModuleList(outputs.values())

    def forward(self, features: "dict[str, torch.Tensor]") -> "dict[str, torch.Tensor]":
        feats = [op(features[key]) for key, op in zip(self.input_keys, self.input_ops)]
        if self.merge == "add":
            # right-nested like upstream (f0 + (f1 + f2)): only matters for bit-exactness
            merged = feats[-1]
            for f in reversed(feats[:-1]):
                merged = f + merged
        else:
            merged = torch.cat(feats, dim=1)
        if self.post_input is not None:
            merged = self.post_input(merged)
        merged = self.middle(merged)
        for key, op in zip(self.output_keys, self.output_ops):
            features[key] = op(merged)
        return features
