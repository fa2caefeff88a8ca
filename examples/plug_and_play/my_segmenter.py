"""A small segmenter with an EfficientViT-style attention block, as a user's own file.

It depends on torch only: the attention block below is laid out the way upstream EfficientViT
lays out its LiteMLA (the kind of class people paste into their projects). msla-deploy finds
it by its structure and swaps in its export-friendly version before exporting:

    msla-deploy export --model examples/plug_and_play/my_segmenter.py:build --res 256x256
"""

import torch
import torch.nn.functional as F
from torch import nn


class ConvBNAct(nn.Module):
    def __init__(self, cin, cout, k=3, stride=1, norm=True, act=True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, padding=k // 2, bias=not norm)
        self.norm = nn.BatchNorm2d(cout) if norm else None
        self.act = nn.Hardswish() if act else None

    def forward(self, x):
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x)
        if self.act is not None:
            x = self.act(x)
        return x


class LiteMLA(nn.Module):
    """Multi-scale ReLU linear attention (EfficientViT layout: qkv, aggreg, kernel_func, proj)."""

    def __init__(self, channels, dim=16, scales=(5,), eps=1e-15):
        super().__init__()
        heads = channels // dim
        width = 3 * heads * dim
        self.dim = dim
        self.eps = eps
        self.qkv = ConvBNAct(channels, width, 1, norm=False, act=False)
        self.aggreg = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(width, width, k, padding=k // 2, groups=width, bias=False),
                nn.Conv2d(width, width, 1, groups=3 * heads, bias=False),
            )
            for k in scales
        )
        self.kernel_func = nn.ReLU()
        self.proj = ConvBNAct(heads * dim * (1 + len(scales)), channels, 1, act=False)

    @torch.autocast(device_type="cuda", enabled=False)
    def attention(self, qkv):
        b, _, h, w = qkv.shape
        if qkv.dtype == torch.float16:
            qkv = qkv.float()
        qkv = qkv.reshape(b, -1, 3 * self.dim, h * w)
        q, k, v = qkv[:, :, : self.dim], qkv[:, :, self.dim : 2 * self.dim], qkv[:, :, 2 * self.dim :]
        q, k = self.kernel_func(q), self.kernel_func(k)
        v = F.pad(v, (0, 0, 0, 1), value=1.0)  # the ones row yields the normaliser
        out = (v @ k.transpose(-1, -2)) @ q
        out = out[:, :, :-1] / (out[:, :, -1:] + self.eps)
        return out.reshape(b, -1, h, w)

    def forward(self, x):
        qkv = self.qkv(x)
        qkv = torch.cat([qkv] + [op(qkv) for op in self.aggreg], dim=1)
        return self.proj(self.attention(qkv).to(qkv.dtype))


class MySegmenter(nn.Module):
    """Stride-8 logits: three stride-2 convs, one attention block with a residual, a 1x1 classifier."""

    def __init__(self, num_classes=19, width=64):
        super().__init__()
        self.stem = nn.Sequential(
            ConvBNAct(3, width // 4, stride=2),
            ConvBNAct(width // 4, width // 2, stride=2),
            ConvBNAct(width // 2, width, stride=2),
        )
        self.context = LiteMLA(width, dim=16)
        self.classifier = nn.Conv2d(width, num_classes, 1)

    def forward(self, x):
        x = self.stem(x)
        x = x + self.context(x)
        return self.classifier(x)


def build():
    return MySegmenter()
