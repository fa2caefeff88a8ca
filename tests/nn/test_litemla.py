"""The export-friendly LiteMLA against upstream's golden cases, in PyTorch and through ONNX Runtime."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort
import pytest
import torch

from msla_deploy.export.graph import FORBIDDEN_OPS
from msla_deploy.export.torch_to_onnx import export_to_onnx
from msla_deploy.nn import LiteMLA, plan_static
from msla_deploy.nn.litemla import FP16_EPS, AttentionCore, AttentionPlan
from tests.fixtures import FIXTURES

LITEMLA = FIXTURES / "litemla"
CASES = sorted(json.loads((LITEMLA / "index.json").read_text()))
REL_TOL = 1e-5  # max abs error <= 1e-5 * max |reference|


def load_case(name: str):
    case = torch.load(LITEMLA / f"{name}.pt", weights_only=True)
    module = LiteMLA(**case["config"]).eval()
    module.load_state_dict(case["state_dict"], strict=True)
    return module, case["input"], case["output"]


def rel_error(actual, reference) -> float:
    actual, reference = np.asarray(actual, np.float64), np.asarray(reference, np.float64)
    return float(np.abs(actual - reference).max() / np.abs(reference).max())


def run_ort(proto, x: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


@pytest.mark.parametrize("name", CASES)
def test_pytorch_matches_upstream(name):
    module, x, reference = load_case(name)
    with torch.no_grad():
        unplanned = module(x)
        planned, plans = plan_static(module, x)
        again = module(x)
    assert rel_error(unplanned, reference) <= REL_TOL
    assert rel_error(planned, reference) <= REL_TOL
    assert torch.equal(planned, again)  # the plan changes no number
    expected_branch = "quadratic" if "quadratic" in name else "linear"
    assert plans[""].branch == expected_branch


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
@pytest.mark.parametrize("name", CASES)
def test_onnx_matches_upstream_and_is_static(name, exporter):
    module, x, reference = load_case(name)
    plan_static(module, x)
    proto, used = export_to_onnx(module, x, opset=17, exporter=exporter, input_name="input", output_names=["out"])
    assert used == exporter
    ops = {node.op_type for node in proto.graph.node}
    assert not ops & set(FORBIDDEN_OPS), ops
    assert "Pad" not in ops and "Cast" not in ops  # the fp32 graph has no casts to keep
    actual = run_ort(proto, x)
    assert np.isfinite(actual).all()
    assert rel_error(actual, reference) <= REL_TOL


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_zero_query_head_gives_zero_not_nan(exporter):
    """eps must survive export: the dynamo optimizer deletes a scalar `+ 1e-15`."""
    module, x, reference = load_case("c64_dim16_zero_query")
    plan_static(module, x)
    proto, _ = export_to_onnx(module, x, opset=17, exporter=exporter, input_name="input", output_names=["out"])
    adds = [n for n in proto.graph.node if n.op_type == "Add"]
    assert adds, "the eps Add was optimised away"
    actual = run_ort(proto, x)
    assert not np.isnan(actual).any()
    assert rel_error(actual, reference) <= REL_TOL


def test_without_eps_the_zero_query_case_is_nan():
    """The hazard is real: the same module with eps 0 produces NaN, so the test above can fail."""
    module, x, _ = load_case("c64_dim16_zero_query")
    module.core.eps_tensor.zero_()
    with torch.no_grad():
        assert torch.isnan(module(x)).any()


def test_planned_module_rejects_another_shape():
    module, x, _ = load_case("c64_dim16_s5")
    plan_static(module, x)
    with pytest.raises(ValueError, match="re-plan"):
        module(x[:, :, :8])


def test_state_dict_has_upstream_names_only():
    module, _, _ = load_case("c96_dim8_s3s5")
    case = torch.load(LITEMLA / "c96_dim8_s3s5.pt", weights_only=True)
    assert list(module.state_dict()) == list(case["state_dict"])  # eps buffer is not persistent


def test_island_dtype_is_a_policy_switch():
    """Precision-ready: fp16 activations with an fp32 island stay finite where naive fp16 is NaN."""
    module, x, reference = load_case("c64_dim16_zero_query")
    half = module.half()
    with torch.no_grad():
        naive = half.float().half()
        naive.core.island_dtype = torch.float16
        nan_naive = torch.isnan(naive(x.half())).any()
        naive.core.island_dtype = torch.float32
        guarded = naive(x.half())
    assert nan_naive  # eps underflows to 0 in fp16: 0/0
    assert torch.isfinite(guarded).all()
    assert rel_error(guarded.float(), reference) < 2e-2


# --- token-mean scaling (the `--attention-precision fp16` mode), in both branches -----------

# 8 tokens <= dim 16: quadratic; 128 tokens: linear (the rule upstream uses)
TOKEN_GRIDS = {"quadratic": (2, 4), "linear": (8, 16)}


@dataclass(frozen=True)
class _BranchPlan(AttentionPlan):
    """A plan that takes the branch it is told to, so that both can run on the same input."""

    take_linear: bool = True

    @property
    def linear(self) -> bool:
        return self.take_linear


def _qkv(tokens: int, seed: int = 0, groups: int = 4, dim: int = 16):
    generator = torch.Generator().manual_seed(seed)
    q, k = (torch.relu(torch.randn(1, groups, dim, tokens, generator=generator)) for _ in range(2))
    v = torch.randn(1, groups, dim, tokens, generator=generator) * 3
    return q, k, v


def _core(island_dtype=torch.float32, token_scaling=False) -> AttentionCore:
    core = AttentionCore(1e-15)
    core.island_dtype, core.token_scaling = island_dtype, token_scaling
    return core


@pytest.mark.parametrize("branch", sorted(TOKEN_GRIDS))
def test_token_scaling_gives_the_unscaled_result_in_both_branches(branch):
    """In fp32 arithmetic only the scaling is at work: it must change nothing but eps's weight.

    Before the fix the quadratic branch came out 1/sqrt(N) (0.354 at 8 tokens) too small."""
    height, width = TOKEN_GRIDS[branch]
    plan = AttentionPlan(batch=1, height=height, width=width, groups=4, dim=16)
    assert plan.branch == branch
    q, k, v = _qkv(plan.tokens)
    with torch.no_grad():
        reference = _core()(q, k, v, plan)
        scaled = _core(token_scaling=True)(q, k, v, plan)
    ratio = (scaled / reference).flatten()
    # eps is 2**-14 against denominators (token means of k.q) of order 1: ~1e-4 at most
    assert abs(ratio.median().item() - 1.0) < 1e-4, ratio.median().item()
    assert rel_error(scaled, reference) < 1e-3


@pytest.mark.parametrize("island_dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("token_scaling", [False, True], ids=["unscaled", "token-mean"])
@pytest.mark.parametrize("tokens_hw", [(2, 4), (8, 16)], ids=["8tokens", "128tokens"])
def test_both_branches_mean_the_same_in_every_mode(tokens_hw, token_scaling, island_dtype):
    """On one input, the linear and the quadratic formulation agree with each other and with an
    fp64 unscaled reference: no mode may be a scale factor off in one branch only.

    Token-mean scaling divides numerator and normaliser by N and uses eps 2**-14, so it is
    exactly the unscaled formula with eps N * 2**-14: that is the reference it is held to."""
    height, width = tokens_hw
    tokens = height * width
    q, k, v = _qkv(tokens, seed=1)
    core = _core(island_dtype, token_scaling)
    fields = {"batch": 1, "height": height, "width": width, "groups": 4, "dim": 16}
    eps = tokens * FP16_EPS if token_scaling else 1e-15
    with torch.no_grad():
        reference = AttentionCore(eps).double()(q.double(), k.double(), v.double(), AttentionPlan(**fields))
        linear, quadratic = (core(q, k, v, _BranchPlan(**fields, take_linear=take)).double() for take in (True, False))
    tolerance = 1e-5 if island_dtype == torch.float32 else 5e-3  # fp16 rounding of q, k, v
    assert rel_error(linear, reference) < tolerance
    assert rel_error(quadratic, reference) < tolerance
    assert rel_error(quadratic, linear) < tolerance
