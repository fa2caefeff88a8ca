"""The export-friendly LiteMLA against upstream's golden cases, in PyTorch and through ONNX Runtime."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from msla_deploy.export.graph import FORBIDDEN_OPS
from msla_deploy.export.torch_to_onnx import export_to_onnx
from msla_deploy.nn import LiteMLA, plan_static

from .fixtures import FIXTURES

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
