"""`msla-deploy export` end to end: golden parity through ONNX, the artifact directory, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from typer.testing import CliRunner

from msla_deploy.artifact.files import sha256_file
from msla_deploy.artifact.options import ExportOptions, parse_resolution
from msla_deploy.artifact.reference import read_reference
from msla_deploy.cli import app
from msla_deploy.errors import BadInput
from msla_deploy.export import pipeline
from msla_deploy.export.graph import FORBIDDEN_OPS
from msla_deploy.export.pipeline import run_export
from msla_deploy.parity.budgets import Budget
from tests.fixtures import FIXTURES, REPO, b0_golden

B0 = "efficientvit-seg-b0-cityscapes"
B0_DIR = FIXTURES / B0
B0_WEIGHTS = B0_DIR / "weights.pt"
runner = CliRunner()


def cli(*args: str):
    return runner.invoke(app, list(args))


def ort_run(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
@pytest.mark.parametrize("res", ["256x512", "64x64"])
def test_golden_b0_through_onnx(tmp_path, exporter, res):
    """The exported ONNX reproduces upstream's logits (64x64 takes the quadratic branch)."""
    h, w = parse_resolution(res)
    options = ExportOptions(model=B0, weights=B0_WEIGHTS, resolution=(h, w), exporter=exporter, out=tmp_path / "b0")
    result = run_export(options)
    assert result.passed
    assert result.manifest.to_dict()["exporter"]["used"] == exporter
    x = b0_golden(f"input_{res}")
    golden = b0_golden(f"output_{res}")
    actual = ort_run(result.directory / "model.onnx", x)
    assert actual.shape == golden.shape == (1, 19, h // 8, w // 8)
    assert np.abs(actual - golden).max() <= 1e-4 * np.abs(golden).max()
    assert np.array_equal(actual.argmax(1), golden.argmax(1))
    branches = {p["branch"] for p in result.manifest.to_dict()["attention_plans"]}
    assert branches == ({"linear"} if res == "256x512" else {"quadratic"})  # 16 and 4 tokens <= dim 16


def test_artifact_directory_contract(tmp_path):
    out = tmp_path / "art"
    result = cli("export", "-m", B0, "--res", "64x128", "--weights", str(B0_WEIGHTS), "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["passed"] is True
    manifest = json.loads((out / "manifest.json").read_text())

    # every artifact is listed with its hash
    assert set(manifest["artifacts"]) == {
        "model.onnx",
        "parity.json",
        "reference/inputs.npz",
        "reference/outputs.npz",
        "reference/reference.json",
    }
    for rel, entry in manifest["artifacts"].items():
        assert sha256_file(out / rel) == entry["sha256"], rel
    assert manifest["weights"]["source"] == "checkpoint"
    assert manifest["weights"]["sha256"] == sha256_file(B0_WEIGHTS)
    assert set(manifest["timings_s"]) == {"build", "reference", "export", "check", "parity"}
    assert (
        manifest["environment"]["packages"]["torch"] == torch.__version__.split("+")[0]
        or manifest["environment"]["packages"]["torch"]
    )
    assert manifest["options"]["resolution"] == [64, 128] and manifest["options"]["opset"] == 17

    # the ONNX: one static float32 input and output, no run-time shape ops, checker-clean, metadata
    model = onnx.load(out / "model.onnx")
    onnx.checker.check_model(model, full_check=True)
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [17]
    ops = Counter(n.op_type for n in model.graph.node)
    assert not set(ops) & set(FORBIDDEN_OPS)
    assert "Constant" not in ops
    (inp,), (outp,) = model.graph.input, model.graph.output
    dims = lambda v: [d.dim_value for d in v.type.tensor_type.shape.dim]  # noqa: E731
    assert (inp.name, dims(inp), inp.type.tensor_type.elem_type) == ("input", [1, 3, 64, 128], onnx.TensorProto.FLOAT)
    assert (outp.name, dims(outp), outp.type.tensor_type.elem_type) == (
        "logits",
        [1, 19, 8, 16],
        onnx.TensorProto.FLOAT,
    )
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["msla_deploy.model"] == B0
    assert meta["msla_deploy.resolution"] == "64x128"
    assert meta["msla_deploy.recipe_sha256"] == manifest["recipe_sha256"]
    assert "0.485" in meta["msla_deploy.normalization"]

    # the reference bundle reproduces: ONNX on its inputs gives its outputs
    bundle = read_reference(out / "reference")
    assert bundle.inputs["input"].shape == (1, 3, 64, 128) and bundle.inputs["input"].dtype == np.float32
    actual = ort_run(out / "model.onnx", bundle.inputs["input"])
    assert np.abs(actual - bundle.outputs["logits"]).max() <= 1e-4 * np.abs(bundle.outputs["logits"]).max()
    parity = json.loads((out / "parity.json").read_text())
    assert parity["passed"] and parity["runtime"]["providers"][0] == "CPUExecutionProvider"
    stats = parity["outputs"][0]
    assert stats["argmax_agreement"] == 1.0 and stats["nan_count"] == 0 and stats["cosine"] > 0.99999


def test_same_inputs_give_a_byte_identical_onnx(tmp_path):
    digests = []
    for run in ("a", "b"):
        options = ExportOptions(model=B0, weights=B0_WEIGHTS, resolution=(64, 64), out=tmp_path / run)
        digests.append(run_export(options).manifest.to_dict()["artifacts"]["model.onnx"]["sha256"])
    assert digests[0] == digests[1]


def test_checkpoint_found_in_models_dir_else_random(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("export", "-m", B0, "--res", "64x64")
    assert result.exit_code == 0, result.output
    assert "RANDOM" in result.stdout
    default_dir = tmp_path / "artifacts" / f"{B0}-64x64-fp32"
    assert json.loads((default_dir / "manifest.json").read_text())["weights"]["source"] == "random"

    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "efficientvit_seg_b0_cityscapes.pt").write_bytes(B0_WEIGHTS.read_bytes())
    result = cli("export", "-m", B0, "--res", "64x64", "--overwrite")  # replaces our own earlier artifact
    assert result.exit_code == 0, result.output
    assert "RANDOM" not in result.stdout
    weights = json.loads((default_dir / "manifest.json").read_text())["weights"]
    assert weights["source"] == "checkpoint" and weights["path"].endswith("efficientvit_seg_b0_cityscapes.pt")


def _no_artifacts_left(root: Path) -> bool:
    return not any(p for p in root.rglob("*") if p.name not in ("bad.pt", "notes.txt", "weights.txt", "occupied"))


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--res", "1000x2048"], "multiple of 32"),
        (["--res", "banana"], "HxW"),
        (["--batch", "0"], "--batch"),
        (["--opset", "99"], "--opset"),
        (["--exporter", "magic"], "--exporter"),
        (["--model", "efficientvit-seg-b9-cityscapes"], "efficientvit-seg"),
        (["--weights", "missing.pt"], "missing.pt"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, monkeypatch, args, needle):
    monkeypatch.chdir(tmp_path)
    result = cli("export", "--res", "64x64", *args) if "--res" not in args else cli("export", *args)
    assert result.exit_code == 2, result.output
    assert needle in result.stderr
    assert "Traceback" not in result.output
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [result.stderr.strip()]
    assert not (tmp_path / "artifacts").exists()


def test_unsafe_checkpoint_is_refused(tmp_path):
    bad = tmp_path / "bad.pt"
    torch.save({"state_dict": {}, "config": BadInput("x")}, bad)  # needs arbitrary unpickling
    result = cli("export", "-m", B0, "--res", "64x64", "--weights", str(bad), "--out", str(tmp_path / "deep" / "out"))
    assert result.exit_code == 2, result.output
    assert "unsafe" in result.stderr.lower() or "weights_only" in result.stderr
    assert not (tmp_path / "deep").exists()  # not even the parent folder it had to create
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_out_dir_that_is_not_ours_is_not_replaced(tmp_path):
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("keep me")
    result = cli("export", "-m", B0, "--res", "64x64", "--out", str(occupied))
    assert result.exit_code == 2
    assert (occupied / "notes.txt").read_text() == "keep me"


def test_parity_failure_exits_1_and_keeps_the_evidence(tmp_path, monkeypatch):
    impossible = Budget(max_abs_rel=0.0, max_abs_floor=0.0, min_cosine=1.1, min_argmax_agreement=1.0)
    monkeypatch.setattr(pipeline, "default_budget", lambda precision, task=None: impossible)
    out = tmp_path / "out"
    result = cli("export", "-m", B0, "--res", "64x64", "--out", str(out))
    assert result.exit_code == 1
    assert "export checks failed" in result.stderr and "cosine" in result.stderr
    parity = json.loads((out / "parity.json").read_text())
    assert parity["passed"] is False and parity["outputs"][0]["failures"]
    assert json.loads((out / "manifest.json").read_text())["parity"]["passed"] is False


def test_console_script_bad_input_has_no_traceback(tmp_path):
    """The installed entry point, in a fresh process: exit code and stderr as a shell sees them."""
    proc = subprocess.run(
        [sys.executable, "-m", "msla_deploy", "export", "--res", "1000x2048"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert "1000" in proc.stderr and "multiple of 32" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_default_export_b1_at_1024x2048(tmp_path, monkeypatch):
    """The README's main command, as a user runs it (about 20 s on 2 cores)."""
    monkeypatch.chdir(tmp_path)
    result = cli("export", "--res", "1024x2048")
    assert result.exit_code == 0, result.output
    out = tmp_path / "artifacts" / "efficientvit-seg-b1-cityscapes-1024x2048-fp32"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["onnx"]["outputs"][0]["shape"] == [1, 19, 128, 256]
    assert [p["tokens"] for p in manifest["attention_plans"]] == [8192] * 3 + [2048] * 4
    assert json.loads((out / "parity.json").read_text())["passed"]


def test_user_factory_model_is_swapped_and_exported(tmp_path, monkeypatch):
    """Plug-and-play from the command line: a pasted upstream LiteMLA, no code changes."""
    example = REPO / "examples" / "plug_and_play" / "my_segmenter.py"
    monkeypatch.chdir(tmp_path)
    result = cli("export", "--model", f"{example}:build", "--res", "64x64", "--exporter", "torchscript")
    assert result.exit_code == 0, result.output
    out = tmp_path / "artifacts" / "my_segmenter-build-64x64-fp32"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"]["source"] == "factory"
    (record,) = manifest["swapped_modules"]
    assert record["swapped"] and record["source"].endswith("LiteMLA") and record["eps"] == 1e-15
    assert json.loads((out / "parity.json").read_text())["passed"]


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_probe_tensors_carry_the_module_outputs(tmp_path, exporter):
    """Each probe named in the manifest is the ONNX tensor holding that module's PyTorch output."""
    from msla_deploy import zoo
    from msla_deploy.export.probes import capture

    out = tmp_path / "b0"
    result = run_export(ExportOptions(model=B0, weights=B0_WEIGHTS, resolution=(64, 128), exporter=exporter, out=out))
    probes = result.manifest.to_dict()["probes"]
    assert "backbone.stages.3.op_list.1.context_module.main" in probes  # a LiteMLA
    assert "backbone.stages.2.op_list.0" in probes  # a block

    model = onnx.load(out / "model.onnx")
    assert [o.name for o in model.graph.output] == ["logits"]
    model.graph.output.extend(onnx.helper.make_empty_tensor_value_info(t) for t in probes.values())
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = read_reference(out / "reference").inputs["input"]
    onnx_values = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"input": x})))

    torch_model = zoo.build(B0).eval()
    zoo.load_checkpoint(torch_model, B0_WEIGHTS)
    with torch.no_grad(), capture(torch_model, list(probes)) as captured:
        torch_model(torch.from_numpy(x))
    assert {name for name, _ in captured} == set(probes)
    for name, value in captured:
        expected = value.numpy()
        assert np.abs(onnx_values[probes[name]] - expected).max() <= 1e-4 * np.abs(expected).max(), name


def test_unwritable_output_path_is_bad_input_not_an_internal_error(tmp_path):
    blocker = tmp_path / "weights.txt"
    blocker.write_text("a file where a folder should be")
    result = cli("export", "-m", B0, "--res", "64x64", "--out", str(blocker / "sub" / "out"))
    assert result.exit_code == 2, result.output
    assert "cannot use" in result.stderr and "internal error" not in result.stderr


SHARED_BLOCK_NET = """
import torch
from msla_deploy.nn import LiteMLA

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 32, 3, stride=8, padding=1)
        self.attn = LiteMLA(32, 32, dim=8)  # one instance, called twice: shared weights
        self.head = torch.nn.Conv2d(32, 5, 1)

    def forward(self, x):
        x = self.stem(x)
        return self.head(self.attn(self.attn(x)))

def build():
    return Net()
"""


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_a_module_called_twice_exports(tmp_path, exporter):
    (tmp_path / "shared_net.py").write_text(SHARED_BLOCK_NET)
    options = ExportOptions(
        model=f"{tmp_path / 'shared_net.py'}:build", resolution=(64, 64), exporter=exporter, out=tmp_path / "o"
    )
    result = run_export(options)
    assert result.passed
    assert sorted(result.manifest.to_dict()["probes"]) == ["attn", "attn.core"]  # one tensor each: the first call
    nodes = {n.name for n in onnx.load(result.directory / "model.onnx").graph.node}
    assert set(result.manifest.to_dict()["precision"]["fp32_nodes"]) <= nodes  # recorded names exist


def test_export_refuses_a_checkpoint_that_runs_code_on_load(tmp_path):
    """Through the CLI: exit 2 for the stated reason, and the payload's code never ran."""
    from tests.zoo.test_zoo import _WritesOnLoad

    sentinel = tmp_path / "sentinel.txt"
    weights = tmp_path / "ckpt" / "weights.pt"
    weights.parent.mkdir()
    torch.save({"state_dict": _WritesOnLoad(sentinel)}, weights)
    result = cli("export", "-m", B0, "--res", "64x64", "--weights", str(weights), "--out", str(tmp_path / "out"))
    assert not sentinel.exists(), "loading the checkpoint ran code from it"
    assert result.exit_code == 2, result.output
    assert "unsafe unpickling" in result.stderr.replace(str(weights), "<path>")
    assert not (tmp_path / "out").exists()


class _StepFailed(RuntimeError):
    pass


def _failing_steps(key: str):
    """Progress steps that raise on entering `key`: an export that dies halfway, after the
    earlier steps have written their files."""
    from msla_deploy.progress import Steps

    class FailAt(Steps):
        def step(self, name, title):
            if name == key:
                raise _StepFailed(f"made to fail at {name}")
            return super().step(name, title)

    return FailAt()


def _tree(root: Path):
    """Every path under root (hidden ones included) with the bytes of each file."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def test_export_failing_halfway_leaves_no_trace(tmp_path):
    """Fail after the ONNX files are written (on entering the parity step): a new target leaves
    nothing behind, not a hidden staging folder, not a parent folder it created."""
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    with pytest.raises(_StepFailed):
        run_export(
            ExportOptions(model=B0, weights=B0_WEIGHTS, resolution=(64, 64), out=fresh / "deep" / "b0"),
            steps=_failing_steps("parity"),
        )
    assert _tree(fresh) == {}, sorted(_tree(fresh))


def test_export_failing_halfway_keeps_the_old_artifact(tmp_path):
    """The same failure over an existing artifact directory leaves it byte for byte as it was,
    with nothing hidden beside it."""
    kept = tmp_path / "kept"
    first = run_export(ExportOptions(model=B0, weights=B0_WEIGHTS, resolution=(64, 64), out=kept / "b0"))
    assert first.passed
    before = _tree(kept)
    assert "b0/model.onnx" in before and "b0/manifest.json" in before
    with pytest.raises(_StepFailed):
        run_export(
            ExportOptions(model=B0, weights=B0_WEIGHTS, resolution=(64, 64), seed=1, out=kept / "b0", overwrite=True),
            steps=_failing_steps("parity"),
        )
    after = _tree(kept)
    assert sorted(after) == sorted(before)  # no hidden .partial/.old folders beside it
    assert after == before  # and not one byte of the old artifact changed


def test_every_precision_has_one_recipe():
    """run_export looks the precision's recipe up: a precision added to the choices needs one, and
    every recipe writes model.onnx and its fp32 graph and scans both for fp16 hazards."""
    from msla_deploy.artifact.names import FP32_ONNX_NAME, ONNX_NAME
    from msla_deploy.choices import PRECISIONS

    assert set(pipeline.RECIPES) == set(PRECISIONS)
    for precision, recipe in pipeline.RECIPES.items():
        assert recipe.precision == precision
        assert {file for file, _ in recipe.hazard_scans} == {ONNX_NAME, recipe.fp32_file}
        assert recipe.fp32_file == (ONNX_NAME if precision == "fp32" else FP32_ONNX_NAME)
