"""A LiteMLA laid out the way upstream EfficientViT lays it out, written for our tests.

This is what a user's model file contains when they pasted (or vendored) upstream's attention
block: the same attribute names (so the same state-dict keys), the same forward math, and the
same run-time precision logic (CUDA autocast switched off around the attention, an fp16 upcast,
a Python branch on the token count). It is written from the architecture description in
`docs/facts/upstream.md#litemla` and `#dtype-and-autocast`, not copied, and the tests prove it
faithful against upstream's golden outputs in `tests/data/upstream/litemla/`.

Nothing here imports `msla_deploy`: the plug-and-play converter must recognise this class by
its structure alone. The benchmark imports this file too, so it depends on torch only.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _as_pair(value) -> tuple:
    """Upstream's tuple arguments: a scalar applies to both sub-convs, a short tuple repeats its last item."""
    items = tuple(value) if isinstance(value, (list, tuple)) else (value,)
    return (items + items[-1:] * 2)[:2]


def _norm(name: Optional[str], channels: int) -> Optional[nn.Module]:
    return nn.BatchNorm2d(channels) if name == "bn2d" else None


def _act(name: Optional[str]) -> Optional[nn.Module]:
    return nn.ReLU(inplace=False) if name == "relu" else None


class ConvNormActLayer(nn.Module):
    """Upstream's ConvLayer shape: attributes dropout / conv / norm / act, applied in that order."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        use_bias: bool = False,
        dropout: float = 0.0,
        norm: Optional[str] = "bn2d",
        act_func: Optional[str] = "relu",
    ) -> None:
        super().__init__()
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else None
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=use_bias)
        self.norm = _norm(norm, out_channels)
        self.act = _act(act_func)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dropout is not None:
            x = self.dropout(x)
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x)
        if self.act is not None:
            x = self.act(x)
        return x


class UpstreamStyleLiteMLA(nn.Module):
    """Multi-scale ReLU linear attention with upstream's structure and run-time behaviour."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        heads: Optional[int] = None,
        heads_ratio: float = 1.0,
        dim: int = 8,
        use_bias=False,
        norm=(None, "bn2d"),
        act_func=(None, None),
        kernel_func: str = "relu",
        scales: Sequence[int] = (5,),
        eps: float = 1.0e-15,
    ) -> None:
        super().__init__()
        self.eps = eps
        heads = heads or int(in_channels // dim * heads_ratio)
        total_dim = heads * dim
        use_bias, norm, act_func = _as_pair(use_bias), _as_pair(norm), _as_pair(act_func)

        self.dim = dim
        self.qkv = ConvNormActLayer(in_channels, 3 * total_dim, 1, use_bias[0], norm=norm[0], act_func=act_func[0])
        # per scale: a depthwise kxk, then a 1x1 whose 3*heads groups keep every head's q, k
        # and v slices apart
        self.aggreg = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(3 * total_dim, 3 * total_dim, k, padding=k // 2, groups=3 * total_dim, bias=use_bias[0]),
                nn.Conv2d(3 * total_dim, 3 * total_dim, 1, groups=3 * heads, bias=use_bias[0]),
            )
            for k in scales
        )
        self.kernel_func = _act(kernel_func)
        self.proj = ConvNormActLayer(
            total_dim * (1 + len(scales)), out_channels, 1, use_bias[1], norm=norm[1], act_func=act_func[1]
        )

    def _split_heads(self, qkv: torch.Tensor):
        batch, _, height, width = qkv.shape
        # head-major channels: each group of 3*dim holds one head's q, then k, then v
        qkv = torch.reshape(qkv, (batch, -1, 3 * self.dim, height * width))
        return qkv[:, :, : self.dim], qkv[:, :, self.dim : 2 * self.dim], qkv[:, :, 2 * self.dim :]

    @torch.autocast(device_type="cuda", enabled=False)
    def relu_linear_att(self, qkv: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = qkv.shape
        if qkv.dtype == torch.float16:
            qkv = qkv.float()
        q, k, v = self._split_heads(qkv)
        q = self.kernel_func(q)
        k = self.kernel_func(k)

        # the appended row of ones makes the last output row the normaliser sum_m k_m . q_n
        v = F.pad(v, (0, 0, 0, 1), mode="constant", value=1)
        vk = torch.matmul(v, k.transpose(-1, -2))
        out = torch.matmul(vk, q)
        if out.dtype == torch.bfloat16:
            out = out.float()
        out = out[:, :, :-1] / (out[:, :, -1:] + self.eps)
        return torch.reshape(out, (batch, -1, height, width))

    @torch.autocast(device_type="cuda", enabled=False)
    def relu_quadratic_att(self, qkv: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = qkv.shape
        q, k, v = self._split_heads(qkv)
        q = self.kernel_func(q)
        k = self.kernel_func(k)

        att_map = torch.matmul(k.transpose(-1, -2), q)  # [B, G, N keys, N queries]
        original_dtype = att_map.dtype
        if original_dtype in (torch.float16, torch.bfloat16):
            att_map = att_map.float()
        att_map = att_map / (torch.sum(att_map, dim=2, keepdim=True) + self.eps)
        att_map = att_map.to(original_dtype)
        out = torch.matmul(v, att_map)
        return torch.reshape(out, (batch, -1, height, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        qkv = self.qkv(x)
        qkv = torch.cat([qkv] + [op(qkv) for op in self.aggreg], dim=1)
        height, width = qkv.shape[-2:]
        # a Python branch on ints: a tracer freezes whichever side the example input took
        if height * width > self.dim:
            out = self.relu_linear_att(qkv).to(qkv.dtype)
        else:
            out = self.relu_quadratic_att(qkv)
        return self.proj(out)


def build_upstream_like(config: dict) -> nn.Module:
    """An upstream-style LiteMLA from a fixture's `config` (upstream's constructor arguments)."""
    config = dict(config)
    if "scales" in config:
        config["scales"] = tuple(config["scales"])
    return UpstreamStyleLiteMLA(**config)
