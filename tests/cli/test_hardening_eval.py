"""Issue 25 for validate and evaluate: every output guarded, a NaN model cannot pass, random
weights are said, and a run with nothing usable names the bad files.

Each test failed before the change it came with. One b0 export at 64x128 (random weights) is
shared by the module and copied by the tests that change it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from typer.testing import CliRunner

from msla_deploy.artifact.names import OUTPUT_NAME, RANDOM_WEIGHTS_WARNING
from msla_deploy.cli import app
from msla_deploy.evaluate.synthetic import write_dataset
from tests.fixtures import export_random_b0, one_error_line

runner = CliRunner()
RES = (64, 128)


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def b0(tmp_path_factory) -> Path:
    return export_random_b0(tmp_path_factory.mktemp("hardening-eval"))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("eval-data") / "d"
    write_dataset(root, "folder", 2, RES, 19, seed=21)
    return root


def copy_of(artifact: Path, where: Path) -> Path:
    shutil.copytree(artifact, where)
    return where


def tree_digest(root: Path) -> dict:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# --- §1: nothing is written onto what is read, nor through a link out of the artifact -----------


def test_validate_through_a_validation_link_out_of_the_artifact_is_refused(b0, tmp_path):
    a = copy_of(b0, tmp_path / "a")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (a / "validation").symlink_to(elsewhere, target_is_directory=True)
    before = tree_digest(a)
    result = cli("validate", a)
    assert result.exit_code == 2, result.output
    line = one_error_line(result)
    assert "validation" in line and "a link out of the artifact" in line
    assert list(elsewhere.iterdir()) == [] and tree_digest(a) == before


def test_validate_reports_onto_its_own_reference_folder_are_refused(b0, tmp_path):
    a = copy_of(b0, tmp_path / "a")
    reference = shutil.copytree(a / "reference", tmp_path / "ref")
    before = tree_digest(reference)
    for flag, target in (("--junit", reference / "inputs.npz"), ("--report-dir", reference / "out")):
        result = cli("validate", a, "--reference", reference, flag, target)
        assert result.exit_code == 2, result.output
        assert "which this command reads" in one_error_line(result)
    assert tree_digest(reference) == before


@pytest.mark.parametrize(
    "flag, where, needle",
    [
        ("--junit", "ART/manifest.json", "part of the artifact"),
        ("--junit", "ART/model.onnx", "part of the artifact"),
        ("--report-dir", "ART/reference", "part of the artifact"),
        ("--report-dir", "ART", "part of the artifact"),
        ("--report-dir", "DATA", "which this command reads"),
        ("--junit", "DATA/images/junit.xml", "which this command reads"),
        ("--save-predictions", "DATA/predictions", "which this command reads"),
        ("--save-predictions", "ART/reference/predictions", "part of the artifact"),
    ],
)
def test_evaluate_outputs_onto_the_artifact_or_the_dataset_are_refused(b0, data, tmp_path, flag, where, needle):
    a, d = copy_of(b0, tmp_path / "a"), copy_of(data, tmp_path / "d")
    target = Path(where.replace("ART", str(a)).replace("DATA", str(d)))
    before_a, before_d = tree_digest(a), tree_digest(d)
    args = ["--report-dir", tmp_path / "r"] if flag != "--report-dir" else []
    result = cli("evaluate", a, "--data", d, "--backend", "ort-cpu", flag, target, *args)
    assert result.exit_code == 2, result.output
    assert needle in one_error_line(result)
    assert tree_digest(a) == before_a and tree_digest(d) == before_d
    assert not (tmp_path / "r").exists()


def test_evaluate_through_an_evaluation_link_out_of_the_artifact_is_refused(b0, data, tmp_path):
    a = copy_of(b0, tmp_path / "a")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (a / "evaluation").symlink_to(elsewhere, target_is_directory=True)
    result = cli("evaluate", a, "--data", data, "--backend", "ort-cpu")
    assert result.exit_code == 2, result.output
    assert "a link out of the artifact" in one_error_line(result)
    assert list(elsewhere.iterdir()) == []


def test_evaluate_reports_beside_the_artifact_still_work(b0, data, tmp_path):
    a = copy_of(b0, tmp_path / "a")
    result = cli(
        "evaluate",
        a,
        "--data",
        data,
        "--backend",
        "ort-cpu",
        "--junit",
        a / "evaluation" / "extra.xml",
        "--save-predictions",
        tmp_path / "pred",
    )
    assert result.exit_code == 0, result.output
    assert (a / "evaluation" / "report.json").is_file() and (a / "evaluation" / "extra.xml").is_file()
    assert len(list((tmp_path / "pred" / "ort-cpu").glob("*.png"))) == 2


# --- §3: a model whose logits are not finite fails, whatever the mIoU gate ------------------------


def _poisoned(artifact: Path, where: Path, nan_at=None) -> Path:
    """A copy whose model.onnx multiplies its logits by a constant: NaN at the output positions
    `nan_at` ((row, column) pairs), or everywhere when None; 1 elsewhere."""
    a = copy_of(artifact, where)
    model = onnx.load(a / "model.onnx")
    out = next(o for o in model.graph.output if o.name == OUTPUT_NAME)
    h, w = (d.dim_value for d in out.type.tensor_type.shape.dim[2:])
    poison = np.full((1, 1, h, w), np.nan if nan_at is None else 1.0, np.float32)
    for r, c in nan_at or ():
        poison[0, 0, r, c] = np.nan
    for node in model.graph.node:
        node.output[:] = ["raw_logits" if name == OUTPUT_NAME else name for name in node.output]
    model.graph.initializer.append(numpy_helper.from_array(poison, "poison"))
    model.graph.node.append(helper.make_node("Mul", ["raw_logits", "poison"], [OUTPUT_NAME]))
    onnx.checker.check_model(model)
    onnx.save(model, a / "model.onnx")
    return a


@pytest.mark.parametrize("gate", [[], ["--max-miou-drop", "100"]], ids=["no-gate", "gate-100-points"])
def test_nan_logits_fail_evaluate_and_are_counted(b0, data, tmp_path, gate):
    a = _poisoned(b0, tmp_path / "a", nan_at=[(1, 2), (3, 4)])
    result = cli("evaluate", a, "--data", data, "--backend", "ort-cpu", "--report-dir", tmp_path / "r", *gate)
    assert result.exit_code == 1, result.output
    line = one_error_line(result)
    assert "ort-cpu gave NaN/Inf logits at 4 output pixel(s) in 2 of 2 picture(s)" in line
    assert "NaN/Inf px" in result.stdout  # the terminal table has the column
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    backend = report["backends"][0]
    assert (backend["nonfinite_pixels"], backend["nonfinite_pictures"], backend["passed"]) == (4, 2, False)
    assert report["passed"] is False
    md = (tmp_path / "r" / "report.md").read_text()
    assert md.startswith("## msla-deploy evaluate: FAIL") and "**4 (2)**" in md
    suite = ET.parse(tmp_path / "r" / "junit.xml").getroot()
    assert suite.get("failures") == "1" and "4 output pixel(s)" in ET.tostring(suite, encoding="unicode")


def test_an_all_nan_candidate_fails_against_a_random_weight_reference(b0, data, tmp_path):
    """The issue's case: NaN argmaxes to class 0 and a random-weight torch reference scores ~0,
    so the mIoU drop alone is within a generous gate."""
    a = _poisoned(b0, tmp_path / "a")
    result = cli(
        "evaluate",
        a,
        "--data",
        data,
        "--backend",
        "torch",
        "--backend",
        "ort-cpu",
        "--max-miou-drop",
        "100",
        "--report-dir",
        tmp_path / "r",
        "--json",
    )
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    torch_side, ort_side = report["backends"]
    assert torch_side["nonfinite_pixels"] == 0 and torch_side["passed"] is None
    assert ort_side["nonfinite_pictures"] == 2 and ort_side["passed"] is False
    assert ort_side["miou_drop_points"] is not None and ort_side["miou_drop_points"] <= 100  # the drop alone would pass
    assert "ort-cpu gave NaN/Inf logits" in one_error_line(result)


def test_finite_logits_count_zero_and_pass(b0, data, tmp_path):
    result = cli("evaluate", b0, "--data", data, "--backend", "ort-cpu", "--report-dir", tmp_path / "r", "--json")
    assert result.exit_code == 0, result.output
    backend = json.loads(result.stdout)["backends"][0]
    assert (backend["nonfinite_pixels"], backend["nonfinite_pictures"], backend["passed"]) == (0, 0, None)


# --- §3: random weights are said after export ---------------------------------------------------


def test_evaluate_says_random_weights_in_header_report_and_json(b0, data, tmp_path):
    result = cli("evaluate", b0, "--data", data, "--backend", "ort-cpu", "--report-dir", tmp_path / "r")
    assert result.exit_code == 0, result.output
    assert "RANDOM WEIGHTS" in result.stdout
    md = (tmp_path / "r" / "report.md").read_text()
    assert md.startswith("## msla-deploy evaluate: PASS (RANDOM WEIGHTS)") and RANDOM_WEIGHTS_WARNING in md
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert (
        report["artifact"]["weights_source"] == "random"
        and report["artifact"]["weights_warning"] == RANDOM_WEIGHTS_WARNING
    )
    as_json = json.loads(
        cli("evaluate", b0, "--data", data, "--backend", "ort-cpu", "--report-dir", tmp_path / "r2", "--json").stdout
    )
    assert as_json["artifact"]["weights_warning"] == RANDOM_WEIGHTS_WARNING


def test_validate_says_random_weights_in_header_report_and_json(b0, tmp_path):
    result = cli("validate", b0, "--report-dir", tmp_path / "r")
    assert result.exit_code == 0, result.output
    assert "RANDOM WEIGHTS" in result.stdout
    md = (tmp_path / "r" / "report.md").read_text()
    assert md.startswith("## msla-deploy validate: PASS (RANDOM WEIGHTS)") and RANDOM_WEIGHTS_WARNING in md
    as_json = json.loads(cli("validate", b0, "--report-dir", tmp_path / "r2", "--json").stdout)
    assert (
        as_json["artifact"]["weights_source"] == "random"
        and as_json["artifact"]["weights_warning"] == RANDOM_WEIGHTS_WARNING
    )


def _with_weights_source(artifact: Path, where: Path, source: str) -> Path:
    a = copy_of(artifact, where)
    manifest = json.loads((a / "manifest.json").read_text())
    manifest["weights"] = {"source": source, "path": "models/b0.pt"}
    (a / "manifest.json").write_text(json.dumps(manifest))
    return a


def test_checkpoint_weights_are_named_without_the_warning(b0, data, tmp_path):
    a = _with_weights_source(b0, tmp_path / "a", "checkpoint")
    result = cli("validate", a, "--report-dir", tmp_path / "v", "--json")
    assert result.exit_code == 0, result.output
    art = json.loads(result.stdout)["artifact"]
    assert art["weights_source"] == "checkpoint" and art["weights_warning"] is None
    assert "RANDOM" not in (tmp_path / "v" / "report.md").read_text()
    result = cli("evaluate", a, "--data", data, "--backend", "ort-cpu", "--report-dir", tmp_path / "e")
    assert result.exit_code == 0, result.output
    assert "checkpoint" in result.stdout and "RANDOM" not in result.stdout
    assert "- **weights**: checkpoint" in (tmp_path / "e" / "report.md").read_text()


# --- §5: --skip-bad with nothing usable names the bad files itself ------------------------------


def test_skip_bad_with_nothing_usable_names_the_bad_files(b0, tmp_path):
    d = tmp_path / "d"
    write_dataset(d, "folder", 4, RES, 19, seed=22)
    labels = sorted((d / "labels").glob("*.png"))
    for label in labels:
        label.unlink()
    result = cli("evaluate", b0, "--data", d, "--backend", "ort-cpu", "--skip-bad", "--report-dir", tmp_path / "r")
    assert result.exit_code == 2, result.output
    line = one_error_line(result)
    assert "all 4 were bad" in line and "and 1 more" in line
    assert all(label.stem in line for label in labels[:3]) and "label missing" in line
    assert "report" not in line  # no report was written, so none is pointed at
    assert not (tmp_path / "r").exists()
