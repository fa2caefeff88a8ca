"""The export-friendly LiteMLA (multi-scale ReLU linear attention).

Same constructor arguments and state-dict names as upstream's LiteMLA, so upstream weights load
strictly, but built for deployment:

* Static plan. Once `plan` is set (see `msla_deploy.nn.planning`), the batch, token count,
  every reshape size and the linear-vs-quadratic choice are Python ints fixed for one input
  shape: a traced graph has no Shape/Gather arithmetic and no branch left to freeze by accident.
* No autocast decorator, no dtype branch. Precision is a policy: `island_dtype` is the dtype of
  the "fp32 island" (both matmuls, the normaliser and the division), entered and left with
  explicit casts that vanish from the graph when the dtypes already agree.
* eps survives export. The dynamo exporter's optimizer treats a scalar constant within 1e-8 of 0
  as zero and deletes `den + 1e-15`; eps therefore lives in a 1-element (non-scalar) buffer,
  which that rewrite rule does not match. Without eps an all-zero query gives 0/0 = NaN.
* No Pad of v with a row of ones: the normaliser (sum over tokens of k, dotted with q) is
  computed directly, which is the same number and one op fewer per block.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import torch
from torch import nn

from .layers import ConvLayer, build_act, repeat_last

#: the batch of a plan for a dynamic-batch export: a leading -1 in the reshapes is all the graph
#: needs (no Shape/Gather arithmetic), since every other size stays a Python int
ANY_BATCH = -1


@dataclass(frozen=True)
class AttentionPlan:
    """Static shapes of one LiteMLA call: everything the forward needs as Python ints."""

    batch: int  # ANY_BATCH: the reshapes say -1, the one dimension a dynamic-batch graph leaves open
    height: int
    width: int
    groups: int  # heads * (1 + number of scales)
    dim: int

    @property
    def tokens(self) -> int:
        return self.height * self.width

    @property
    def linear(self) -> bool:
        # upstream's rule, compared with the per-head dim: both branches compute the same
        # numbers, the quadratic one is cheaper for a handful of tokens
        return self.tokens > self.dim

    @property
    def branch(self) -> str:
        return "linear" if self.linear else "quadratic"


def _cast(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    # dtypes are fixed when the graph is traced, so this decides at trace time, not at run
    # time: an fp32 graph gets no Cast nodes at all (the legacy exporter would emit no-op ones)
    return t if t.dtype == dtype else t.to(dtype)


#: eps used when the attention itself runs in fp16: 2**-14, fp16's smallest normal number.
#: upstream's 1e-15 is 0 in fp16; with token-mean scaling the denominators are O(0.1..10).
FP16_EPS = 2.0**-14


class AttentionCore(nn.Module):
    """The precision-critical part of LiteMLA: both matmuls, the normaliser and the division.

    A module of its own (no parameters, no state-dict keys) so that its output tensor can be
    found in an exported graph (probes) and pinned to fp32 in weakly typed TensorRT builds.

    Modes, set by the precision policy (`msla_deploy.nn.precision`):
    * `island_dtype=float32` (default): computed in fp32 whatever the activations' dtype,
      entered and left through explicit casts. Upstream does the same for fp16 inputs.
    * `island_dtype=float16` and `token_scaling=True`: the whole block in fp16. The result is
      invariant to scaling k (the normaliser divides it out), so token sums become token means
      (1/N in both the numerator and the normaliser) and stay far below 65504, and eps becomes
      `FP16_EPS`. Linear branch: k and v divided by sqrt(N), the k sum by sqrt(N) again.
      Quadratic branch: k divided by N, v untouched (it is averaged with weights summing to 1).
    * `island_dtype=float16`, `token_scaling=False`: naive fp16 (eps underflows to 0, token sums
      overflow). Exists to demonstrate the failure; never the default.
    """

    def __init__(self, eps: float) -> None:
        super().__init__()
        self.eps = float(eps)
        # 1-element, not 0-d: see the module docstring. Not persistent: no state-dict key.
        self.register_buffer("eps_tensor", torch.full((1,), self.eps), persistent=False)
        self.register_buffer("fp16_eps_tensor", torch.full((1,), FP16_EPS), persistent=False)
        self.island_dtype: torch.dtype = torch.float32
        self.token_scaling = False

    def _apply(self, fn, *args, **kwargs):
        # .half()/.to(dtype) convert every floating buffer; eps (1e-15) is 0 in fp16, so it is
        # kept in fp32 here and cast to the island's dtype where it is used
        module = super()._apply(fn, *args, **kwargs)
        self.eps_tensor = torch.full((1,), self.eps, dtype=torch.float32, device=self.eps_tensor.device)
        return module

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: AttentionPlan) -> torch.Tensor:
        """q, k (after the kernel function) and v: [B, G, d, N]. Returns [B, G, d, N] in the island dtype."""
        q, k, v = (_cast(t, self.island_dtype) for t in (q, k, v))
        scaled = self.token_scaling
        eps = self.fp16_eps_tensor.to(self.island_dtype) if scaled else _cast(self.eps_tensor, self.island_dtype)
        # With token scaling both branches compute the same number, token means in place of
        # token sums: mean_m(v_m k_m.q_n) / (mean_m(k_m.q_n) + eps). Only the factors the
        # normaliser divides out are scaled; how they are split differs per branch.
        if plan.linear:
            if scaled:
                # kv and the normaliser both carry a 1/N: sqrt(N) on each of k and v keeps kv in
                # range, and the k sum gets the other sqrt(N) below
                inv_root = 1.0 / math.sqrt(plan.tokens)
                k = k * inv_root
                v = v * inv_root
            kv = torch.matmul(v, k.transpose(-1, -2))  # [B, G, d, d]: sum_m v_m k_m^T
            num = torch.matmul(kv, q)  # [B, G, d, N]
            k_sum = k.sum(dim=-1, keepdim=True)  # [B, G, d, 1]
            if scaled:
                k_sum = k_sum * inv_root  # (sum_m k_m) / N: the same 1/N scale as kv
            # [B, G, 1, N]: sum_m k_m . q_n, as a product and a sum over d: no transpose needed
            den = (k_sum * q).sum(dim=2, keepdim=True)
            return num / (den + eps)
        if scaled:
            # the division by att's sum cancels k's scale only, so all of the 1/N goes on k (the
            # normaliser becomes a mean, as in the linear branch). v is not scaled: it meets
            # weights that sum to 1, so its products stay as large as v itself
            k = k * (1.0 / plan.tokens)
        att = torch.matmul(k.transpose(-1, -2), q)  # [B, G, N, N]: k_m . q_n
        att = att / (att.sum(dim=2, keepdim=True) + eps)
        return torch.matmul(v, att)  # [B, G, d, N]

    @property
    def island_is_fp32(self) -> bool:
        return self.island_dtype == torch.float32

    def extra_repr(self) -> str:
        mode = (
            "fp32 island"
            if self.island_is_fp32
            else ("fp16, token-mean scaling" if self.token_scaling else "fp16, naive")
        )
        return f"eps={self.eps:g}, {mode}"


class LiteMLA(nn.Module):
    """Lightweight multi-scale linear attention, planned for static shapes."""

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
        heads = heads or int(in_channels // dim * heads_ratio)
        total_dim = heads * dim
        use_bias = repeat_last(use_bias, 2)
        norm = repeat_last(norm, 2)
        act_func = repeat_last(act_func, 2)

        qkv = ConvLayer(in_channels, 3 * total_dim, 1, use_bias=use_bias[0], norm=norm[0], act_func=act_func[0])
        aggreg = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(3 * total_dim, 3 * total_dim, k, padding=k // 2, groups=3 * total_dim, bias=use_bias[0]),
                # groups = 3*heads: mixes channels only inside one head's q, k or v slice
                nn.Conv2d(3 * total_dim, 3 * total_dim, 1, groups=3 * heads, bias=use_bias[0]),
            )
            for k in scales
        )
        proj = ConvLayer(
            total_dim * (1 + len(scales)), out_channels, 1, use_bias=use_bias[1], norm=norm[1], act_func=act_func[1]
        )
        self._assemble(qkv, aggreg, build_act(kernel_func), proj, dim=dim, heads=heads, eps=eps)

    def _assemble(
        self,
        qkv: nn.Module,
        aggreg: nn.ModuleList,
        kernel_func: nn.Module,
        proj: nn.Module,
        *,
        dim: int,
        heads: int,
        eps: float,
    ) -> None:
        self.qkv = qkv
        self.aggreg = aggreg
        self.kernel_func = kernel_func
        self.proj = proj
        self.dim = int(dim)
        self.heads = int(heads)
        self.eps = float(eps)
        self.core = AttentionCore(eps)
        self.plan: Optional[AttentionPlan] = None

    @classmethod
    def adopt(
        cls,
        qkv: nn.Module,
        aggreg: nn.ModuleList,
        kernel_func: nn.Module,
        proj: nn.Module,
        *,
        dim: int,
        heads: int,
        eps: float,
    ) -> "LiteMLA":
        """Build one around existing submodules (plug-and-play swap): weights are shared, not copied."""
        module = cls.__new__(cls)
        nn.Module.__init__(module)
        module._assemble(qkv, aggreg, kernel_func, proj, dim=dim, heads=heads, eps=eps)
        return module

    @property
    def groups(self) -> int:
        return self.heads * (1 + len(self.aggreg))

    def plan_for(self, input_shape: Tuple[int, ...]) -> AttentionPlan:
        batch, _, height, width = (int(s) for s in input_shape)
        return AttentionPlan(batch=batch, height=height, width=width, groups=self.groups, dim=self.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        plan = self.plan
        if plan is None:
            # eager use without a plan: shapes are plain ints here, nothing is traced
            plan = self.plan_for(x.shape)
        elif not torch.jit.is_tracing() and tuple(x.shape) != (
            x.shape[0] if plan.batch == ANY_BATCH else plan.batch,
            x.shape[1],
            plan.height,
            plan.width,
        ):
            raise ValueError(
                f"LiteMLA planned for {plan.batch}x{plan.height}x{plan.width} inputs got {tuple(x.shape)}; "
                "re-plan the model for this input shape (msla_deploy.nn.plan_static)"
            )
        qkv = self.qkv(x)
        qkv = torch.cat([qkv] + [op(qkv) for op in self.aggreg], dim=1)
        out = self.attend(qkv, plan)
        return self.proj(out)

    def attend(self, qkv: torch.Tensor, plan: AttentionPlan) -> torch.Tensor:
        """Multi-head ReLU attention over [B, G*3*dim, H, W] with shapes taken from `plan`."""
        d = plan.dim
        # channels are head-major: group g owns [3*d*g, 3*d*(g+1)) laid out as q, k, v
        q, k, v = qkv.reshape(plan.batch, plan.groups, 3 * d, plan.tokens).split([d, d, d], dim=2)
        q = self.kernel_func(q)
        k = self.kernel_func(k)

        out = _cast(self.core(q, k, v, plan), q.dtype)
        # [B, G, d, N] -> [B, G*d, H, W]: group-major, dim-minor, as upstream
        return out.reshape(plan.batch, plan.groups * d, plan.height, plan.width)

    def extra_repr(self) -> str:
        p = self.plan
        plan = (
            "unplanned" if p is None else f"{'N' if p.batch == ANY_BATCH else p.batch}x{p.height}x{p.width} {p.branch}"
        )
        return f"dim={self.dim}, heads={self.heads}, scales={len(self.aggreg)}, plan={plan}"
