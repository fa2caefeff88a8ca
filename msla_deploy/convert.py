"""Plug-and-play: find the LiteMLA blocks in a user's model and swap in the export-friendly one.

A user's network may carry upstream EfficientViT's LiteMLA, a verbatim copy of it under any
module path, or timm's `efficientvit_mit.LiteMLA`. All three share one structure (`qkv`,
`aggreg`, `kernel_func`, `proj`, `dim`, `eps`) and one channel layout (head-major q|k|v groups),
so they are recognised by that structure, never by import path, and rebuilt with
`msla_deploy.nn.LiteMLA.adopt` around their own submodules: weights are shared, state-dict keys
do not change, and each block keeps its own eps (timm uses 1e-5, upstream 1e-15).

Structure cannot prove the forward math. Every swap is therefore checked by running the foreign
block and its replacement on one small seeded input; a block that disagrees, or that looks like
LiteMLA but is inconsistent, is left in place and reported with the reason.
"""

from __future__ import annotations

import math
import numbers
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Dict, Iterator, List, Optional, Tuple

import torch
from torch import nn

from .errors import one_line_text
from .nn import LiteMLA

# ---------------------------------------------------------------------------------------------
# Recognition
# ---------------------------------------------------------------------------------------------

#: the submodules a LiteMLA has; the name signature that makes a module a candidate
SIGNATURE = ("qkv", "aggreg", "proj")
#: everything the export-friendly LiteMLA keeps; any other child would be dropped by a swap
KNOWN_CHILDREN = frozenset(SIGNATURE + ("kernel_func",))


@dataclass(frozen=True)
class AttentionLayout:
    """What a consistent LiteMLA look-alike was read to be."""

    dim: int
    heads: int
    scales: Tuple[int, ...]  # aggregation kernel sizes
    eps: float
    kernel: str  # the kernel function's class, e.g. "ReLU"
    in_channels: int


@dataclass(frozen=True)
class Candidate:
    """A module with LiteMLA's submodule names: either a readable layout or the reason it is not."""

    path: str
    module: nn.Module
    layout: Optional[AttentionLayout]
    problem: Optional[str]


class _Inconsistent(Exception):
    """Internal: a candidate failed a consistency check (the message says which)."""


def class_name(obj: object) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _keeps_size(conv: nn.Conv2d) -> bool:
    """Stride 1 and 'same' padding: upstream reshapes with the qkv map's size, ours with the input's."""
    if conv.stride != (1, 1) or conv.padding_mode != "zeros":
        return False
    if conv.padding == "same":
        return True
    return all(k % 2 == 1 and p == d * (k - 1) // 2 for k, p, d in zip(conv.kernel_size, conv.padding, conv.dilation))


def _only_conv(block: nn.Module, role: str) -> nn.Conv2d:
    convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
    if len(convs) != 1:
        raise _Inconsistent(f"{role} holds {len(convs)} Conv2d modules, expected one")
    return convs[0]


def _read_scales(aggreg: nn.Module, channels: int) -> Tuple[int, ...]:
    if not isinstance(aggreg, nn.ModuleList):
        raise _Inconsistent(f"aggreg is a {type(aggreg).__name__}, expected a ModuleList")
    scales = []
    for i, branch in enumerate(aggreg):
        convs = list(branch) if isinstance(branch, nn.Sequential) else []
        if len(convs) != 2 or not all(isinstance(c, nn.Conv2d) for c in convs):
            raise _Inconsistent(f"aggreg.{i} is not a Sequential of two Conv2d (depthwise kxk, grouped 1x1)")
        spatial, mixing = convs
        k = spatial.kernel_size[0]
        if not (spatial.in_channels == spatial.out_channels == spatial.groups == channels):
            raise _Inconsistent(f"aggreg.{i}.0 is not a depthwise conv over the {channels} qkv channels")
        if spatial.kernel_size != (k, k) or not _keeps_size(spatial):
            raise _Inconsistent(f"aggreg.{i}.0 is not a square stride-1 'same' conv")
        if (
            mixing.kernel_size != (1, 1)
            or not (mixing.in_channels == mixing.out_channels == channels)
            or not _keeps_size(mixing)
        ):
            raise _Inconsistent(f"aggreg.{i}.1 is not a stride-1 1x1 conv over the {channels} qkv channels")
        scales.append(int(k))
    return tuple(scales)


def _read_layout(module: nn.Module) -> AttentionLayout:
    """Read dim, heads, scales and eps off a candidate, checking that they agree with each other."""
    extra = sorted(set(module._modules) - KNOWN_CHILDREN)
    if extra:
        raise _Inconsistent(
            f"has submodule(s) {', '.join(extra)} beyond qkv/aggreg/kernel_func/proj; a swap would drop them"
        )
    own_state = list(module._parameters) + [n for n in module._buffers if n not in module._non_persistent_buffers_set]
    if own_state:
        raise _Inconsistent(f"has its own parameter(s)/buffer(s) {', '.join(own_state)}; a swap would drop them")

    dim = getattr(module, "dim", None)
    if not isinstance(dim, numbers.Integral) or isinstance(dim, bool) or dim <= 0:
        raise _Inconsistent(f"has no positive integer `dim` attribute (got {dim!r})")
    eps = getattr(module, "eps", None)
    if not isinstance(eps, numbers.Real) or isinstance(eps, bool) or not math.isfinite(eps) or eps < 0:
        raise _Inconsistent(f"has no non-negative float `eps` attribute (got {eps!r})")
    kernel_func = getattr(module, "kernel_func", None)
    if not callable(kernel_func):
        raise _Inconsistent("has no callable `kernel_func` (the ReLU applied to q and k)")

    qkv = _only_conv(module.qkv, "qkv")
    if not _keeps_size(qkv):
        raise _Inconsistent("its qkv conv changes the spatial size")
    if qkv.out_channels % (3 * dim):
        raise _Inconsistent(f"qkv gives {qkv.out_channels} channels, not a multiple of 3*dim = {3 * dim}")
    heads = qkv.out_channels // (3 * dim)
    scales = _read_scales(module.aggreg, qkv.out_channels)

    proj = _only_conv(module.proj, "proj")
    expected = heads * dim * (1 + len(scales))
    if proj.in_channels != expected:
        raise _Inconsistent(
            f"proj takes {proj.in_channels} channels, but {heads} heads x dim {dim} x {1 + len(scales)} scales make "
            f"{expected}"
        )
    kernel = type(kernel_func).__name__ if isinstance(kernel_func, nn.Module) else getattr(kernel_func, "__name__", "?")
    return AttentionLayout(int(dim), int(heads), scales, float(eps), kernel, int(qkv.in_channels))


def _candidate(path: str, module: nn.Module) -> Optional[Candidate]:
    if isinstance(module, LiteMLA):
        return None  # already export-friendly
    if not all(isinstance(module._modules.get(name), nn.Module) for name in SIGNATURE):
        return None
    try:
        return Candidate(path, module, _read_layout(module), None)
    except _Inconsistent as exc:
        return Candidate(path, module, None, str(exc))


def scan_litemla(model: nn.Module) -> List[Candidate]:
    """Every module with LiteMLA's submodule names, consistent or not, in `named_modules` order."""
    found = (_candidate(name, module) for name, module in model.named_modules())
    return [c for c in found if c is not None]


def is_litemla_like(module: nn.Module) -> bool:
    """True for a foreign LiteMLA whose structure is consistent (false for ours and for look-alikes)."""
    candidate = _candidate("", module)
    return candidate is not None and candidate.problem is None


def find_litemla(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """(name, module) of every consistent foreign LiteMLA in `model`; "" names the root."""
    return [(c.path, c.module) for c in scan_litemla(model) if c.problem is None]


# ---------------------------------------------------------------------------------------------
# Swapping
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SwapRecord:
    """One LiteMLA look-alike and what happened to it (for the CLI and the manifest)."""

    path: str  # "" is the root module
    source: str  # the foreign class as module.qualname
    swapped: bool
    dim: Optional[int] = None
    heads: Optional[int] = None
    scales: Tuple[int, ...] = ()
    eps: Optional[float] = None
    kernel: Optional[str] = None
    problem: Optional[str] = None  # why it was left in place

    def to_dict(self) -> Dict:
        data = asdict(self)
        data["scales"] = list(self.scales)
        return data

    def summary(self) -> str:
        where = self.path or "<root>"
        if not self.swapped:
            return f"left {where} ({self.source}) in place: {self.problem}"
        return (
            f"swapped {where} ({self.source}): dim {self.dim}, {self.heads} heads, "
            f"scales {'/'.join(map(str, self.scales))}, eps {self.eps:g}"
        )


# relative tolerance of the swap check, by dtype: an exact swap differs by rounding only, a
# wrong layout or different math differs by O(1)
_CHECK_RTOL = {torch.float64: 1e-6, torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 5e-2}


def _adopt(module: nn.Module, layout: AttentionLayout) -> LiteMLA:
    new = LiteMLA.adopt(
        module.qkv, module.aggreg, module.kernel_func, module.proj, dim=layout.dim, heads=layout.heads, eps=layout.eps
    )
    weight = _only_conv(module.qkv, "qkv").weight
    new.core.to(weight.device)  # buffers made by adopt live on the CPU
    # the flag only: the submodules are shared and keep their own modes
    new.training = module.training
    return new


@contextmanager
def _eval_mode(*modules: nn.Module) -> Iterator[None]:
    """Eval for the duration (no BN statistics update, no dropout), then every flag as it was."""
    saved = [(m, m.training) for root in modules for m in root.modules()]
    try:
        for root in modules:
            root.eval()
        yield
    finally:
        for m, flag in saved:
            m.training = flag


def check_swap(foreign: nn.Module, replacement: LiteMLA, layout: AttentionLayout) -> Optional[str]:
    """Run both on one seeded input; None when they agree, else why not."""
    weight = _only_conv(foreign.qkv, "qkv").weight
    # the smallest square map with more tokens than dim: the linear branch, the one deployed
    side = max(2, math.isqrt(layout.dim) + 1)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, layout.in_channels, side, side, generator=generator).to(weight.device, weight.dtype)
    try:
        with torch.no_grad(), _eval_mode(foreign, replacement):
            # .forward, not __call__: the foreign block's own hooks are not ours to fire
            want = foreign.forward(x)
            got = replacement.forward(x)
    except Exception as exc:  # the check must not crash the export: report and leave it
        return f"a test forward failed ({type(exc).__name__}: {one_line_text(exc)})"
    if not isinstance(want, torch.Tensor) or want.shape != got.shape:
        return (
            f"its forward returns {getattr(want, 'shape', type(want).__name__)}, the standard LiteMLA "
            f"{tuple(got.shape)}"
        )
    if not torch.isfinite(want).all():
        return "its forward gives non-finite values on a random input; cannot verify a swap"
    error = (got.double() - want.double()).abs().max().item()
    scale = want.double().abs().max().item()
    if not error <= _CHECK_RTOL.get(want.dtype, 1e-2) * scale + 1e-12:
        return (
            f"its output differs from the standard LiteMLA math by {error:.3g} (max |out| {scale:.3g}); "
            "a different forward or channel layout"
        )
    return None


def _replace_children(model: nn.Module, replacements: Dict[int, nn.Module]) -> nn.Module:
    """Point every parent at the replacement (a block shared by two parents is swapped in both)."""
    if id(model) in replacements:
        return replacements[id(model)]
    for parent in list(model.modules()):
        for name, child in list(parent._modules.items()):
            if child is not None and id(child) in replacements:
                setattr(parent, name, replacements[id(child)])
    return model


def swap_litemla(model: nn.Module, *, verify: bool = True) -> Tuple[nn.Module, List[SwapRecord]]:
    """Replace every foreign LiteMLA in `model` by the export-friendly one, in place.

    Returns (model, records). The returned model is `model` itself unless the root is a LiteMLA,
    which cannot be replaced in place. Records list swapped blocks and look-alikes left in place
    (`swapped=False`, with `problem`). With `verify`, each swap is first checked numerically.
    """
    records: List[SwapRecord] = []
    replacements: Dict[int, nn.Module] = {}
    for candidate in scan_litemla(model):
        source, layout, problem = class_name(candidate.module), candidate.layout, candidate.problem
        replacement = None
        if layout is not None:
            replacement = _adopt(candidate.module, layout)
            if verify:
                problem = check_swap(candidate.module, replacement, layout)
        if layout is None or problem is not None:
            fields = {} if layout is None else _layout_fields(layout)
            records.append(SwapRecord(candidate.path, source, False, problem=problem, **fields))
            continue
        replacements[id(candidate.module)] = replacement
        records.append(SwapRecord(candidate.path, source, True, **_layout_fields(layout)))
    return _replace_children(model, replacements), records


def _layout_fields(layout: AttentionLayout) -> Dict:
    return dict(dim=layout.dim, heads=layout.heads, scales=layout.scales, eps=layout.eps, kernel=layout.kernel)
