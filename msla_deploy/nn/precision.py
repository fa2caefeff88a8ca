"""Precision policy: decided once, in the model, and visible in the exported graph.

An fp16 export is the model itself in half precision with explicit casts where the numerics
need fp32, so the ONNX means the same thing to every TensorRT (strongly typed on 10.12+/11,
where the FP16 builder flag is gone). What the policy does to an EfficientViT-style model:

* BatchNorm is folded into the preceding conv in fp32 before anything is rounded: running
  variances plus eps (1e-7 in the L series: a subnormal in fp16) never meet fp16.
  Norm layers that cannot be folded are kept in fp32 between casts.
* LiteMLA's attention core is an fp32 island (default) or runs in fp16 with token-mean scaling.
* Graph inputs and outputs stay float32 unless `io_dtype="fp16"`.
* Resize stays bicubic (upstream parity) unless `upsample="bilinear"` (TensorRT 8.5).

`guards=False` is the naive conversion (everything half, eps underflowing, token sums in fp16),
kept only so that tests and users can see what the guards prevent.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Dict, Iterator, List

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..choices import FLOAT_PRECISIONS as PRECISIONS
from ..choices import UPSAMPLE_MODES
from .layers import UpSampleLayer
from .litemla import AttentionCore

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm2d)
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16}


@dataclass(frozen=True)
class PrecisionPolicy:
    precision: str = "fp32"  # weights and activations
    attention: str = "fp32"  # LiteMLA attention core
    io_dtype: str = "fp32"  # graph input and output
    upsample: str = "cubic"
    guards: bool = True

    def __post_init__(self) -> None:
        for field_name, allowed in (
            ("precision", PRECISIONS),
            ("attention", PRECISIONS),
            ("io_dtype", PRECISIONS),
            ("upsample", UPSAMPLE_MODES),
        ):
            if getattr(self, field_name) not in allowed:
                raise ValueError(f"{field_name} must be one of {allowed}, got {getattr(self, field_name)!r}")

    @classmethod
    def from_options(cls, options) -> "PrecisionPolicy":
        """The policy an export's options ask for (artifact.options.ExportOptions)."""
        return cls(
            precision=options.precision,
            attention=options.attention_precision,
            io_dtype=options.io_dtype,
            upsample=options.upsample,
            guards=options.fp16_guards,
        )

    @property
    def compute_dtype(self) -> torch.dtype:
        return _DTYPES[self.precision]

    @property
    def io_torch_dtype(self) -> torch.dtype:
        return _DTYPES[self.io_dtype]

    def to_dict(self) -> Dict:
        return asdict(self)


def fold_batchnorm(model: nn.Module) -> List[str]:
    """Fold `.norm` BatchNorm2d into `.conv` for conv-then-norm layers (ConvLayer and look-alikes).

    Only eval-mode semantics (running statistics) are folded; returns the folded layers' names.
    """
    folded = []
    for name, module in model.named_modules():
        conv, norm = getattr(module, "conv", None), getattr(module, "norm", None)
        if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d) and norm.track_running_stats:
            module.conv = fuse_conv_bn_eval(conv.eval(), norm.eval())
            module.norm = None
            folded.append(name)
    return folded


class _Fp32Island(nn.Module):
    """Runs a wrapped module in fp32 between explicit casts (norms that could not be folded)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner.float()

    def _apply(self, fn, *args, **kwargs):
        module = super()._apply(fn, *args, **kwargs)
        self.inner.float()  # .half() on the model must not reach in here
        return module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.float()).to(x.dtype)


def _replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)


class IOCast(nn.Module):
    """Casts the graph input to the compute dtype and the output to the I/O dtype."""

    def __init__(self, model: nn.Module, compute_dtype: torch.dtype, io_dtype: torch.dtype) -> None:
        super().__init__()
        self.model = model
        self.compute_dtype = compute_dtype
        self.io_dtype = io_dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.model(x if x.dtype == self.compute_dtype else x.to(self.compute_dtype))
        return y if y.dtype == self.io_dtype else y.to(self.io_dtype)


def set_upsample_mode(model: nn.Module, mode: str) -> int:
    """cubic (upstream) or bilinear for every UpSampleLayer; returns how many were changed."""
    torch_mode = {"cubic": "bicubic", "bilinear": "bilinear"}[mode]
    layers = [m for m in model.modules() if isinstance(m, UpSampleLayer)]
    for layer in layers:
        layer.mode = torch_mode
    return len(layers)


def apply_policy(model: nn.Module, policy: PrecisionPolicy) -> nn.Module:
    """A deployable copy of an eval-mode fp32 `model` under `policy` (the original is untouched)."""
    model = copy.deepcopy(model).eval()
    set_upsample_mode(model, policy.upsample)
    if policy.precision == "fp32":
        return model
    if policy.guards:
        fold_batchnorm(model)
        norms = [name for name, m in model.named_modules() if isinstance(m, _NORMS)]
        for name in norms:
            _replace_module(model, name, _Fp32Island(model.get_submodule(name)))
    for core in (m for m in model.modules() if isinstance(m, AttentionCore)):
        if not policy.guards:
            core.island_dtype, core.token_scaling = torch.float16, False
        elif policy.attention == "fp16":
            core.island_dtype, core.token_scaling = torch.float16, True
        else:
            core.island_dtype, core.token_scaling = torch.float32, False
    model = model.half()
    return IOCast(model, policy.compute_dtype, policy.io_torch_dtype).eval()


@contextmanager
def fp16_storage_proxy(deployable: nn.Module) -> Iterator[nn.Module]:
    """A fast PyTorch stand-in for an fp16 engine, built from the fp16 deployable model.

    CPU half-precision convolutions are ~20x slower than fp32 here (minutes at 1024x2048), and
    ONNX Runtime on x86 upcasts many fp16 ops internally. This proxy runs fp32 arithmetic on
    fp16-rounded weights and rounds every module's output through fp16: fp16 storage with fp32
    accumulation, which is how tensor-core kernels compute. Attention cores keep their policy
    dtype (an fp16 island really runs in fp16), so overflow and eps underflow show up as inf/NaN.
    """
    proxy = copy.deepcopy(deployable).float()  # weights keep their fp16 rounding
    if isinstance(proxy, IOCast):
        proxy.compute_dtype = torch.float32
        proxy.io_dtype = torch.float32

    def round_output(module, args, output):
        return output.half().float() if isinstance(output, torch.Tensor) and output.is_floating_point() else output

    handles = [m.register_forward_hook(round_output) for m in proxy.modules() if not isinstance(m, IOCast)]
    try:
        yield proxy
    finally:
        for handle in handles:
            handle.remove()
