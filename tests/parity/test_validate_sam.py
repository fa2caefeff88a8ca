"""`msla-deploy validate` of a SAM artifact: both graphs, one report (encoder, decoder, decoder at
one prompt, the pair), each comparison under its own budget; a tampered reference fails naming
its check; options of other tasks are refused on one line.

The session's SAM export (tests/conftest.py `sam_artifact`: l0 at 512, seeded weights) is read
only; tests that change it work on copies. Each ONNX Runtime run of both graphs takes ~30 s on
two cores, hence `slow`.
"""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from typer.testing import CliRunner

from msla_deploy.artifact.resolve import Artifact
from msla_deploy.cli import app
from msla_deploy.errors import BadInput
from msla_deploy.parity.config import parse_setting, resolve_budget
from msla_deploy.parity.records import ValidateReport
from msla_deploy.parity.validate_sam import graph_engine
from tests.fixtures import one_error_line

runner = CliRunner()
COMPARISONS = ["encoder", "decoder", "decoder, 1 prompt", "pair"]


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def validate_json(artifact: Path, report_dir: Path, *args):
    result = cli("validate", artifact, "--report-dir", report_dir, "--json", *args)
    report = json.loads(result.stdout) if result.stdout.strip().startswith("{") else None
    return result, report


def rows(report, comparison: str):
    return {o["name"].split(": ", 1)[1]: o for o in report["outputs"] if o["comparison"] == comparison}


@pytest.mark.slow
def test_both_graphs_pass_in_one_report(sam_artifact, tmp_path):
    result, report = validate_json(sam_artifact, tmp_path / "r", "--min-mask-iou", "99.5%")
    assert result.exit_code == 0, result.output
    assert report["passed"] is True
    assert [c["label"] for c in report["comparisons"]] == COMPARISONS
    assert [c["graphs"] for c in report["comparisons"]] == [
        ["encoder"],
        ["decoder"],
        ["decoder"],
        ["encoder", "decoder"],
    ]
    assert [g["role"] for g in report["graphs"]] == ["encoder", "decoder"]
    assert all(g["ran_on"]["ran_on"] == "CPUExecutionProvider" for g in report["graphs"])
    assert report["reference"]["samples"] == 2
    # the flag reached every comparison's budget, and the report says where it came from
    for comparison in report["comparisons"]:
        assert comparison["budget"]["values"]["min_mask_iou"] == 0.995
        assert comparison["budget"]["sources"]["min_mask_iou"] == "flag --min-mask-iou"
    (embeddings,) = rows(report, "encoder").values()
    assert embeddings["kind"] == "embeddings" and embeddings["mask_iou"] is None
    assert [c["name"] for c in embeddings["checks"]] == ["finite", "max_abs", "cosine"]
    parity = json.loads((sam_artifact / "parity.json").read_text())
    exported = {c["label"].split(":")[0]: {o["name"]: o for o in c["outputs"]} for c in parity["checks"]}
    for comparison in ("decoder", "decoder, 1 prompt", "pair"):
        masks, iou = rows(report, comparison)["masks"], rows(report, comparison)["iou_predictions"]
        assert masks["kind"] == "mask_logits" and iou["kind"] == "mask_scores"
        assert masks["mask_iou"] >= 0.999 and masks["mask_iou_min"] <= masks["mask_iou"]
        assert [c for c in masks["checks"] if c["name"] == "mask_iou"][0]["limit"] == ">= 0.995"
    # the pair is what export's parity check measured (the same ONNX Runtime on the same inputs)
    assert rows(report, "pair")["masks"]["mask_iou"] == pytest.approx(exported["pair"]["masks"]["mask_iou"], abs=1e-6)
    markdown = (tmp_path / "r" / "report.md").read_text()
    assert "## msla-deploy validate: PASS" in markdown
    assert "### pair: encoder -> decoder (fp32 budget): pass" in markdown and "mask IoU (worst mask)" in markdown
    cases = {c.get("name") for c in ET.parse(tmp_path / "r" / "junit.xml").getroot().iter("testcase")}
    assert {"pair: masks: mask IoU", "encoder: image_embeddings: cosine similarity"} <= cases
    back = ValidateReport.read(tmp_path / "r" / "report.json")
    assert [c.label for c in back.comparisons] == COMPARISONS and back.graphs[1].role == "decoder"


@pytest.mark.slow
def test_tampered_reference_masks_fail_naming_the_check(sam_artifact, tmp_path):
    art = tmp_path / "sam"
    shutil.copytree(sam_artifact, art, ignore=shutil.ignore_patterns("validation*"))
    outputs = dict(np.load(art / "reference" / "outputs.npz"))
    outputs["masks"][:, :2] = -outputs["masks"][:, :2]  # the first two prompts' masks inverted
    np.savez(art / "reference" / "outputs.npz", **outputs)
    result = cli("validate", art, "--report-dir", tmp_path / "strict")  # strict: the bundle changed
    assert result.exit_code == 1 and "reference/outputs.npz" in one_error_line(result)
    result, report = validate_json(art, tmp_path / "r", "--allow-modified")
    assert result.exit_code == 1, result.output
    line = one_error_line(result)
    assert "decoder: masks: mask IoU" in line and "pair: masks: mask IoU" in line
    verdicts = {c["label"]: c["passed"] for c in report["comparisons"]}
    assert verdicts == {"encoder": True, "decoder": False, "decoder, 1 prompt": False, "pair": False}
    masks = rows(report, "decoder")["masks"]
    assert masks["mask_iou"] < 0.75 and masks["mask_iou_min"] < 0.1  # half the masks inverted
    assert "### decoder (fp32 budget): **FAIL**" in (tmp_path / "r" / "report.md").read_text()


# --- refused on one line, before anything runs -------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, needle",
    [
        (["--max-miou-drop", "1%"], "--max-miou-drop does not apply to SAM"),
        (["--min-argmax-agreement", "0.99"], "--min-argmax-agreement does not apply to SAM"),
        (["--localize"], "--localize does not support SAM"),
        (["--backend", "trt"], "no TensorRT engine of the encoder"),
        (["--min-mask-iou", "99.9"], "99.9%"),
    ],
)
def test_options_that_do_not_apply_are_one_line(sam_artifact, tmp_path, args, needle):
    result = cli("validate", sam_artifact, "--report-dir", tmp_path / "r", *args)
    assert result.exit_code == 2, result.output
    assert needle in one_error_line(result)
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_one_graph_alone_is_refused(sam_artifact, tmp_path):
    result = cli("validate", sam_artifact / "decoder.onnx", "--report-dir", tmp_path / "r")
    assert result.exit_code == 2 and "pass the artifact directory" in one_error_line(result)


@pytest.mark.slow
def test_a_bundle_of_another_shape_is_bad_input(sam_artifact, tmp_path):
    wrong = tmp_path / "reference"
    shutil.copytree(sam_artifact / "reference", wrong)
    inputs = dict(np.load(wrong / "inputs.npz"))
    inputs["point_coords"] = np.zeros((2, 4, 40, 2), np.float32)  # 40 points: the profile takes 16
    np.savez(wrong / "inputs.npz", **inputs)
    result = cli("validate", sam_artifact, "--reference", wrong, "--report-dir", tmp_path / "r")
    line = one_error_line(result)
    assert result.exit_code == 2 and "'point_coords'" in line and "points <= 16" in line


def tiny_segmentation(folder: Path) -> Path:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["logits"])],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3, 4, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(folder / "tiny.onnx"))
    return folder / "tiny.onnx"


def test_sam_flags_are_refused_for_other_tasks(tmp_path):
    result = cli("validate", tiny_segmentation(tmp_path), "--min-mask-iou", "0.99")
    assert result.exit_code == 2
    assert "--min-mask-iou applies to SAM artifacts" in one_error_line(result)


def test_sam_budget_settings_parse():
    assert parse_setting("min-mask-iou", "99.5%", "--min-mask-iou") == pytest.approx(0.995)
    assert parse_setting("max-score-error", "0.02", "--max-score-error") == 0.02
    with pytest.raises(BadInput, match="negative"):
        parse_setting("max-score-error", "-1", "--max-score-error")
    choice = resolve_budget("fp16", {"max-score-error": "0.05"}, Path("/"), "sam")
    assert choice.values.max_score_error == 0.05 and choice.values.min_mask_iou == 0.99  # the rest: SAM's fp16
    assert choice.sources["max_score_error"] == "flag --max-score-error"


def test_each_graph_finds_its_engine(tmp_path):
    names = ["encoder_fp16_trt10.3.engine", "decoder_fp32_trt10.3.engine", "model_fp32_trt10.3.engine"]
    engines = [tmp_path / n for n in names]
    artifact = Artifact(tmp_path, "directory", None, None, None, engines)
    assert graph_engine(artifact, "encoder") == engines[0]
    assert graph_engine(artifact, "decoder") == engines[1]
    artifact.engines.append(tmp_path / "encoder_fp16_trt10.7.engine")
    with pytest.raises(BadInput, match="2 engines of the encoder"):
        graph_engine(artifact, "encoder")
    assert graph_engine(Artifact(tmp_path, "directory", None, None, None, []), "decoder") is None
