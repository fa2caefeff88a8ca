"""fp16 that holds: the precision policy, the mixed-precision ONNX, and stress tests.

A naive fp16 version must fail these tests and ours must pass: every stress test below runs
both, so none of them can pass by accident on benign numbers.
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

from msla_deploy.artifact.options import ExportOptions
from msla_deploy.cli import app
from msla_deploy.export.pipeline import run_export
from msla_deploy.nn import LiteMLA, plan_static
from msla_deploy.nn.precision import PrecisionPolicy, apply_policy, fp16_storage_proxy
from msla_deploy.nn.stress import apply_stress_weights
from tests.fixtures import FIXTURES

B0 = "efficientvit-seg-b0-cityscapes"
B0_WEIGHTS = FIXTURES / B0 / "weights.pt"
FP16_MAX = 65504.0
runner = CliRunner()


def stressed_attention(tokens_hw=(64, 128)):
    """A LiteMLA from the golden fixtures with stress weights, planned for 8192 tokens."""
    case = torch.load(FIXTURES / "litemla" / "c64_dim16_s5.pt", weights_only=True)
    module = LiteMLA(**case["config"]).eval()
    module.load_state_dict(case["state_dict"])
    apply_stress_weights(module)
    torch.manual_seed(0)
    x = torch.rand(1, 64, *tokens_hw) * 2  # post-activation-like inputs
    reference, _ = plan_static(module, x)
    return module, x, reference


def run_proxy(module, x, policy):
    with torch.no_grad(), fp16_storage_proxy(apply_policy(module, policy)) as proxy:
        return proxy(x)


def test_stress_weights_reach_fp16_overflow():
    """The stress is real: token sums at 8192 tokens exceed fp16's range in fp32."""
    module, x, _ = stressed_attention()
    sums = {}
    hook = module.core.register_forward_hook(
        lambda m, args, out: sums.update(kv=torch.matmul(args[2], args[1].transpose(-1, -2)).abs().max().item())
    )
    with torch.no_grad():
        module(x)
    hook.remove()
    assert module.plan.tokens == 8192
    assert sums["kv"] > FP16_MAX


@pytest.mark.parametrize("attention", ["fp32", "fp16"])
def test_guarded_fp16_attention_survives_stress_and_naive_does_not(attention):
    module, x, reference = stressed_attention()
    naive = run_proxy(module, x, PrecisionPolicy("fp16", guards=False))
    assert not torch.isfinite(naive).all()  # sums overflow and 0/0 where queries are zero

    ours = run_proxy(module, x, PrecisionPolicy("fp16", attention=attention))
    assert torch.isfinite(ours).all()
    cosine = torch.nn.functional.cosine_similarity(ours.flatten().double(), reference.flatten().double(), dim=0)
    assert cosine >= 0.999
    rel = ((ours - reference).abs().max() / reference.abs().max()).item()
    assert rel < (5e-3 if attention == "fp32" else 5e-2)


def test_real_half_precision_agrees_with_the_proxy():
    """The proxy stands in for fp16 arithmetic: on a small input, real CPU half agrees with it."""
    module, x, _ = stressed_attention(tokens_hw=(16, 32))
    deployable = apply_policy(module, PrecisionPolicy("fp16"))
    with torch.no_grad():
        real = deployable(x)
    proxy = run_proxy(module, x, PrecisionPolicy("fp16"))
    assert real.dtype == torch.float32  # graph I/O stays float32
    assert ((real - proxy).abs().max() / proxy.abs().max()).item() < 1e-2


def test_policy_folds_batchnorm_and_keeps_the_original_model():
    module, x, reference = stressed_attention(tokens_hw=(8, 8))
    deployable = apply_policy(module, PrecisionPolicy("fp16"))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in deployable.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in module.modules())  # untouched
    assert next(module.parameters()).dtype == torch.float32
    assert all(p.dtype == torch.float16 for p in deployable.parameters())


def _onnx_types(path):
    model = onnx.load(path)
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {
        v.name: v.type.tensor_type.elem_type
        for v in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)
    }
    types.update({t.name: t.data_type for t in model.graph.initializer})
    return model, types


@pytest.fixture(scope="module")
def fp16_export(tmp_path_factory):
    out = tmp_path_factory.mktemp("fp16") / "b0"
    result = run_export(ExportOptions(model=B0, weights=B0_WEIGHTS, resolution=(128, 256), precision="fp16", out=out))
    return result


def test_fp16_export_is_mixed_precision_with_an_fp32_island(fp16_export):
    out, manifest = fp16_export.directory, fp16_export.manifest.to_dict()
    assert fp16_export.passed
    precision = manifest["precision"]
    assert precision["onnx_files"] == {"fp32": "model_fp32.onnx", "fp16": "model.onnx"}
    assert set(manifest["artifacts"]) >= {"model.onnx", "model_fp32.onnx"}

    model, types = _onnx_types(out / "model.onnx")
    FLOAT, HALF = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    assert model.graph.input[0].type.tensor_type.elem_type == FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == FLOAT
    weights = [t for t in model.graph.initializer if t.dims and np.prod(t.dims) > 64]
    assert weights and all(t.data_type == HALF for t in weights)  # conv weights are fp16
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert all(types[n.output[0]] == HALF for n in convs)
    matmuls = [n for n in model.graph.node if n.op_type == "MatMul"]
    assert matmuls and all(types[n.output[0]] == FLOAT for n in matmuls)  # the island
    assert not any(n.op_type == "BatchNormalization" for n in model.graph.node)  # folded in fp32
    eps_adds = [n for n in model.graph.node if n.op_type == "Add" and types[n.output[0]] == FLOAT]
    assert len(eps_adds) == len(manifest["attention_plans"])  # eps kept, in fp32

    checks = {c["label"]: c for c in json.loads((out / "parity.json").read_text())["checks"]}
    assert set(checks) == {"ONNX Runtime fp16", "PyTorch fp16 proxy", "ONNX Runtime fp32"}
    assert all(c["passed"] for c in checks.values())


def test_fp32_graph_records_the_nodes_to_pin(fp16_export):
    out, manifest = fp16_export.directory, fp16_export.manifest.to_dict()
    fp32_nodes = manifest["precision"]["fp32_nodes"]
    model = onnx.load(out / "model_fp32.onnx")
    by_name = {n.name: n for n in model.graph.node}
    assert fp32_nodes and set(fp32_nodes) <= set(by_name)
    ops = Counter(by_name[n].op_type for n in fp32_nodes)
    blocks = len(manifest["attention_plans"])
    assert ops["MatMul"] == 2 * blocks and ops["ReduceSum"] == 2 * blocks
    assert ops["Div"] == blocks and ops["Add"] == blocks
    assert not {"Conv", "Relu", "Split"} & set(ops)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["msla_deploy.fp32_nodes"].split(",") == fp32_nodes
    assert meta["msla_deploy.precision"] == "fp32"


def test_io_dtype_and_attention_precision_fp16(tmp_path):
    result = run_export(
        ExportOptions(
            model=B0,
            weights=B0_WEIGHTS,
            resolution=(64, 128),
            precision="fp16",
            attention_precision="fp16",
            io_dtype="fp16",
            exporter="dynamo",
            out=tmp_path / "o",
        )
    )
    assert result.passed
    model, types = _onnx_types(result.directory / "model.onnx")
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    assert all(types[n.output[0]] == onnx.TensorProto.FLOAT16 for n in model.graph.node if n.op_type == "MatMul")


def test_bilinear_upsampling_is_measured_against_cubic(tmp_path):
    result = run_export(
        ExportOptions(model=B0, weights=B0_WEIGHTS, resolution=(128, 256), upsample="bilinear", out=tmp_path / "o")
    )
    model = onnx.load(result.directory / "model.onnx")
    modes = {a.s.decode() for n in model.graph.node if n.op_type == "Resize" for a in n.attribute if a.name == "mode"}
    assert modes == {"linear"}
    (check,) = result.parity.to_dict()["checks"]
    stats = check["outputs"][0]
    assert stats["relative_max_abs"] > 1e-4  # it is measurably not upstream's cubic ...
    assert check["budget"]["min_cosine"] == 0.999  # ... so it is judged by the approximate budget


def test_fp16_options_need_fp16(tmp_path):
    result = runner.invoke(
        app, ["export", "-m", B0, "--res", "64x64", "--attention-precision", "fp16", "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2 and "--precision fp16" in result.stderr


@pytest.mark.slow
def test_b1_fp16_at_1024x2048_with_stress_weights_needs_its_guards(tmp_path):
    """Done means: our fp16 export passes its own parity check on stress weights, naive fails."""
    ours = runner.invoke(
        app,
        ["export", "--precision", "fp16", "--stress-weights", "--res", "1024x2048", "--out", str(tmp_path / "ours")],
    )
    assert ours.exit_code == 0, ours.output
    naive = runner.invoke(
        app,
        [
            "export",
            "--precision",
            "fp16",
            "--stress-weights",
            "--res",
            "1024x2048",
            "--no-fp16-guards",
            "--out",
            str(tmp_path / "naive"),
        ],
    )
    assert naive.exit_code == 1, naive.output
    checks = {
        c["label"]: c["outputs"][0] for c in json.loads((tmp_path / "naive" / "parity.json").read_text())["checks"]
    }
    assert checks["ONNX Runtime fp16"]["nan_count"] + checks["ONNX Runtime fp16"]["inf_count"] > 0
    assert checks["PyTorch fp16 proxy"]["nan_count"] + checks["PyTorch fp16 proxy"]["inf_count"] > 0


def test_export_scans_its_graphs_for_fp16_hazards(fp16_export, tmp_path):
    """Ours: nothing to fear in either graph. Naive: the scan finds the lost eps by itself."""
    hazards = fp16_export.manifest.to_dict()["hazards"]
    assert set(hazards) == {"model.onnx", "model_fp32.onnx"}
    assert all(h["passed"] and not h["errors"] for h in hazards.values())
    naive = run_export(
        ExportOptions(
            model=B0,
            weights=B0_WEIGHTS,
            resolution=(64, 128),
            precision="fp16",
            fp16_guards=False,
            out=tmp_path / "naive",
        )
    )
    assert not naive.passed
    checks = {f["check"] for f in naive.manifest.to_dict()["hazards"]["model.onnx"]["errors"]}
    assert checks & {"eps-underflow", "missing-eps"}


def test_naive_fp16_report_is_strict_json(tmp_path):
    """NaN is what a failing fp16 export is about; its report must still parse everywhere."""
    result = runner.invoke(
        app,
        [
            "export",
            "-m",
            B0,
            "--res",
            "128x256",
            "--precision",
            "fp16",
            "--stress-weights",
            "--no-fp16-guards",
            "--json",
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert result.exit_code == 1

    def reject(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    report = json.loads(result.stdout, parse_constant=reject)
    json.loads((tmp_path / "o" / "parity.json").read_text(), parse_constant=reject)
    ort16 = report["parity"]["checks"][0]["outputs"][0]
    assert ort16["nan_count"] > 0 and ort16["max_abs"] is None


def test_fp16_attention_passes_parity_where_the_last_stage_is_quadratic(tmp_path):
    """b1 at 64x128: stage 4 has 2x4 = 8 tokens <= dim 16, the quadratic branch. With token-mean
    scaling that branch once came out 1/sqrt(8) too small and parity failed (cosine 0.9968)."""
    result = run_export(
        ExportOptions(
            model="efficientvit-seg-b1-cityscapes",
            resolution=(64, 128),
            precision="fp16",
            attention_precision="fp16",
            out=tmp_path / "o",
        )
    )
    branches = Counter(plan["branch"] for plan in result.manifest.attention_plans)
    assert branches["quadratic"] > 0 and branches["linear"] > 0  # both branches are exercised
    checks = {c["label"]: c for c in result.parity.to_dict()["checks"]}
    for label in ("ONNX Runtime fp16", "PyTorch fp16 proxy"):
        assert checks[label]["passed"], checks[label]
        # the budget is 0.999; the scale error in 4 of the 7 blocks landed at 0.9968
        assert checks[label]["outputs"][0]["cosine"] >= 0.9999, checks[label]["outputs"][0]
    assert result.passed
