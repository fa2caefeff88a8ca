"""A LiteMLA laid out the way timm's `efficientvit_mit.LiteMLA` lays it out, written for our tests.

What differs from upstream (read from timm/models/efficientvit_mit.py, huggingface/
pytorch-image-models):

* sub-blocks are `ConvNormAct` (dropout / conv / norm / act) where an absent norm or act is an
  `nn.Identity` (no state-dict keys either way) and dropout is always a module;
* `kernel_func` is a module class argument (default `nn.ReLU`), built with inplace=False;
* eps defaults to 1e-5, not 1e-15;
* the forward keeps tokens in front of channels: it reshapes to [B, G, 3*dim, N], transposes to
  [B, G, N, 3*dim] and chunks the last axis in three. The channel layout is therefore the same
  head-major q|k|v per group as upstream's;
* the ones are appended to v's channel axis and the products run as (k^T v) then q (kv);
  the last column is the normaliser. Same numbers as upstream's v' k^T q, transposed;
* always the linear form (no quadratic branch), always in fp32 with autocast off on the
  input's device type, cast back to the input dtype afterwards.

Depends on torch only (the benchmark imports it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _as_pair(value) -> tuple:
    items = tuple(value) if isinstance(value, (list, tuple)) else (value,)
    return (items + items[-1:] * 2)[:2]


class ConvNormAct(nn.Module):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        bias: bool = False,
        norm_layer=nn.BatchNorm2d,
        act_layer=nn.ReLU,
    ) -> None:
        super().__init__()
        self.dropout = nn.Dropout(0.0)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)
        self.norm = norm_layer(out_channels) if norm_layer else nn.Identity()
        self.act = act_layer(inplace=True) if act_layer is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(self.dropout(x))))


class TimmStyleLiteMLA(nn.Module):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        heads=None,
        heads_ratio: float = 1.0,
        dim: int = 8,
        use_bias=False,
        norm_layer=(None, nn.BatchNorm2d),
        act_layer=(None, None),
        kernel_func=nn.ReLU,
        scales=(5,),
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.eps = eps
        heads = heads or int(in_channels // dim * heads_ratio)
        total_dim = heads * dim
        use_bias, norm_layer, act_layer = _as_pair(use_bias), _as_pair(norm_layer), _as_pair(act_layer)

        self.dim = dim
        self.qkv = ConvNormAct(in_channels, 3 * total_dim, 1, use_bias[0], norm_layer[0], act_layer[0])
        self.aggreg = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(3 * total_dim, 3 * total_dim, k, padding=k // 2, groups=3 * total_dim, bias=use_bias[0]),
                nn.Conv2d(3 * total_dim, 3 * total_dim, 1, groups=3 * heads, bias=use_bias[0]),
            )
            for k in scales
        )
        self.kernel_func = kernel_func(inplace=False)
        self.proj = ConvNormAct(
            total_dim * (1 + len(scales)), out_channels, 1, use_bias[1], norm_layer[1], act_layer[1]
        )

    def _attn(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        io_dtype = v.dtype
        q, k, v = q.float(), k.float(), v.float()
        kv = k.transpose(-1, -2) @ v  # [B, G, dim, dim+1]
        out = q @ kv  # [B, G, N, dim+1]; the last column is the normaliser
        out = out[..., :-1] / (out[..., -1:] + self.eps)
        return out.to(io_dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        qkv = self.qkv(x)
        qkv = torch.cat([qkv] + [op(qkv) for op in self.aggreg], dim=1)
        # tokens in front of channels; each group's last axis is q | k | v
        qkv = qkv.reshape(batch, -1, 3 * self.dim, height * width).transpose(-1, -2)
        q, k, v = qkv.chunk(3, dim=-1)
        q = self.kernel_func(q)
        k = self.kernel_func(k)
        v = F.pad(v, (0, 1), mode="constant", value=1.0)
        with torch.autocast(device_type=v.device.type, enabled=False):
            out = self._attn(q, k, v)
        out = out.transpose(-1, -2).reshape(batch, -1, height, width)
        return self.proj(out)
