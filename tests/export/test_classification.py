"""Exporting a classifier: the task recorded, the heads' outputs computed in the graph, the
parity judged per picture (top-1 agreement, top-5 overlap) against the classification budgets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from typer.testing import CliRunner

from msla_deploy.artifact.names import META_TASK
from msla_deploy.artifact.resolve import resolve
from msla_deploy.cli import app
from msla_deploy.parity.budgets import default_budget
from msla_deploy.tasks import CLASSIFICATION, TOPK
from tests.fixtures import DATA, export_random_classifier, manifest_json, one_error_line

runner = CliRunner()

# a user classifier: its answer depends on the picture's colours, so the reference pictures get
# several classes (the zoo's random-weight classifiers answer one class for every picture)
COLOUR_CLASSIFIER = """
import torch
from torch import nn


def build():
    torch.manual_seed(3)
    layers = [nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)]
    return nn.Sequential(*layers)
"""


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    root = tmp_path_factory.mktemp("cls")
    return {head: export_random_classifier(root, head, head=head) for head in ("logits", "probs", "topk")}


def _run(directory: Path, images: np.ndarray):
    session = ort.InferenceSession(str(directory / "model.onnx"), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    runs = [session.run(None, {"input": images[i : i + 1]}) for i in range(len(images))]
    return {name: np.concatenate([r[k] for r in runs]) for k, name in enumerate(names)}


def test_the_task_is_recorded_in_the_manifest_and_the_graph(exports):
    directory = exports["logits"]
    assert manifest_json(directory)["model"]["task"] == CLASSIFICATION
    metadata = {p.key: p.value for p in onnx.load(str(directory / "model.onnx")).metadata_props}
    assert metadata[META_TASK] == CLASSIFICATION
    assert metadata["msla_deploy.num_classes"] == "1000"
    artifact = resolve(directory)
    assert artifact.task.name == CLASSIFICATION and artifact.num_classes == 1000


def test_an_export_from_before_tasks_reads_as_segmentation():
    artifact = resolve(DATA / "legacy-export-0.1.0")
    assert artifact.task.name == "segmentation"


def test_heads_give_their_outputs_with_names_shapes_and_dtypes(exports):
    expected = {
        "logits": {"logits": ([1, 1000], np.float32)},
        "probs": {"probs": ([1, 1000], np.float32)},
        "topk": {"topk_indices": ([1, TOPK], np.int32), "topk_scores": ([1, TOPK], np.float32)},
    }
    for head, outputs in expected.items():
        graph = onnx.load(str(exports[head] / "model.onnx")).graph
        found = {o.name: [d.dim_value for d in o.type.tensor_type.shape.dim] for o in graph.output}
        assert found == {name: shape for name, (shape, _) in outputs.items()}, head


def test_probs_and_topk_are_the_softmax_and_best_classes_of_the_logits(exports):
    reference = np.load(exports["logits"] / "reference" / "inputs.npz")["input"]
    logits = _run(exports["logits"], reference)["logits"].astype(np.float64)
    softmax = np.exp(logits - logits.max(axis=1, keepdims=True))
    softmax /= softmax.sum(axis=1, keepdims=True)
    probs = _run(exports["probs"], reference)["probs"]
    assert np.allclose(probs, softmax, atol=1e-6)
    topk = _run(exports["topk"], reference)
    best = np.argsort(-softmax, axis=1, kind="stable")[:, :TOPK]
    assert (topk["topk_indices"] == best).all()
    assert np.allclose(topk["topk_scores"], np.take_along_axis(softmax, best, axis=1), atol=1e-6)


def test_the_reference_has_the_tasks_sixteen_varied_pictures_and_parity_judges_per_picture(exports):
    inputs = np.load(exports["logits"] / "reference" / "inputs.npz")["input"]
    assert inputs.shape == (16, 3, 64, 64)
    # varied: no two pictures alike (a noise texture N times would make top-1 agreement meaningless)
    means = inputs.mean(axis=(2, 3))
    assert len({tuple(np.round(m, 3)) for m in means}) == 16
    parity = json.loads((exports["logits"] / "parity.json").read_text())
    row = parity["outputs"][0]
    assert row["argmax_agreement"] == 1.0 and row["topk_overlap"] == 1.0
    assert parity["budget"]["min_argmax_agreement"] == default_budget("fp32", CLASSIFICATION).min_argmax_agreement == 1
    topk_row = json.loads((exports["topk"] / "parity.json").read_text())["outputs"]
    assert [r["name"] for r in topk_row] == ["topk_indices", "topk_scores"]
    assert topk_row[0]["labels"] and topk_row[0]["topk_overlap"] == 1.0 and topk_row[1]["cosine"] > 0.99999


def test_a_user_classifier_with_task_classification_gets_classes_per_picture(tmp_path):
    model_file = tmp_path / "colours.py"
    model_file.write_text(COLOUR_CLASSIFIER)
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        ["export", "--model", f"{model_file}:build", "--task", "classification", "--res", "64", "--head", "topk"]
        + ["--exporter", "torchscript", "--out", str(out), "--json"],
    )
    assert result.exit_code == 0, result.output
    assert manifest_json(out)["model"]["task"] == CLASSIFICATION
    assert manifest_json(out)["options"]["task"] == CLASSIFICATION
    parity = json.loads((out / "parity.json").read_text())
    assert parity["outputs"][0]["dominant_class_share"] < 0.99  # several classes: the agreement means something
    assert parity["outputs"][0]["vacuous_note"] is None


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--model", "efficientvit-b0", "--head", "labels"], "--head labels is not a classification head"),
        (["--model", "efficientvit-seg-b0-cityscapes", "--head", "topk"], "--head topk is not a segmentation head"),
        (["--model", "efficientvit-b0", "--task", "segmentation"], "a classification model"),
        (["--model", "efficientvit-b0", "--upsample", "bilinear"], "resizes nothing"),
    ],
)
def test_a_head_or_flag_of_the_other_task_is_one_line_and_exit_2(tmp_path, args, expected):
    result = runner.invoke(app, ["export", *args, "--res", "64", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2
    assert expected in one_error_line(result)
    assert not (tmp_path / "x").exists()


def test_the_resolution_defaults_to_the_names(tmp_path, monkeypatch):
    from msla_deploy.artifact.options import ExportOptions
    from msla_deploy.zoo import with_model_defaults

    assert with_model_defaults(ExportOptions(model="efficientvit-l2-r384")).resolution == (384, 384)
    assert with_model_defaults(ExportOptions(model="efficientvit-b1-r256")).resolution == (256, 256)
    assert with_model_defaults(ExportOptions()).resolution == (1024, 2048)
    assert with_model_defaults(ExportOptions(model="efficientvit-seg-b1-ade20k")).resolution == (512, 512)
    assert with_model_defaults(ExportOptions(model="efficientvit-b0", resolution=(96, 128))).resolution == (96, 128)
    # timm's models are classifiers; a .rNNN tag names the resolution (timm itself is not needed for this)
    timm = with_model_defaults(ExportOptions(model="timm:efficientvit_b1.r288_in1k"))
    assert (timm.task, timm.resolution) == (CLASSIFICATION, (288, 288))
    assert with_model_defaults(ExportOptions(model="timm:efficientvit_b1")).resolution == (224, 224)


@pytest.mark.slow
def test_fp16_and_a_dynamic_batch_of_a_classifier(tmp_path):
    out = export_random_classifier(tmp_path, "fp16", precision="fp16", batch=4, dynamic_batch=True)
    manifest = manifest_json(out)
    graph = onnx.load(str(out / "model_fp32.onnx")).graph
    norms = [n.name for n in graph.node if n.op_type == "LayerNormalization"]
    # the classifier head's LayerNorm stays fp32 in a weakly typed --fp16 build: no norm-fp16 hazard
    assert norms and set(norms) <= set(manifest["precision"]["fp32_nodes"])
    assert not [w for h in manifest["hazards"].values() for w in h["warnings"] if w["code"] == "norm-fp16"]
    parity = json.loads((out / "parity.json").read_text())
    assert parity["passed"] and parity["budget"]["min_argmax_agreement"] == 0.995
    assert [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim] == ["batch", 3, 64, 64]


def test_validate_inspect_build_and_bench_take_a_classifier(exports, tmp_path):
    """The stages keep their promises for a classifier: validate judges it by the classification
    budgets (top-1 agreement, fp32: 100%), inspect and build plan it, bench times it."""
    topk = str(exports["topk"])
    result = runner.invoke(app, ["validate", topk, "--report-dir", str(tmp_path / "v"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["budget"]["values"]["min_argmax_agreement"] == 1.0
    rows = {o["name"]: o for o in report["outputs"]}
    assert rows["topk_indices"]["topk_overlap"] == 1.0 and rows["topk_scores"]["cosine"] > 0.99999
    shown = runner.invoke(app, ["validate", topk, "--report-dir", str(tmp_path / "w")])
    assert "top-1 agreement" in shown.stdout and "argmax agreement" not in shown.stdout
    inspect = runner.invoke(app, ["inspect", str(exports["logits"]), "--target-trt", "10.3", "--json"])
    assert inspect.exit_code == 0, inspect.output
    build = runner.invoke(app, ["build", str(exports["logits"]), "--print-trtexec", "--trt-version", "10.3"])
    assert build.exit_code == 0 and "trtexec --onnx=model.onnx" in build.stdout, build.output
    bench = runner.invoke(app, ["bench", topk, "--iterations", "3", "--warmup", "1", "--json"])
    assert bench.exit_code == 0, bench.output
    # TensorRT 8.5 has no LayerNormalization: the preflight and the trtexec line say so, with the fix
    old = runner.invoke(app, ["inspect", str(exports["logits"]), "--target-trt", "8.5"])
    assert old.exit_code == 1 and "--opset 16" in old.stdout
    line = runner.invoke(app, ["build", str(exports["logits"]), "--print-trtexec", "--trt-version", "8.5"])
    assert line.exit_code == 0 and "no LayerNormalization" in line.stderr and "--opset 16" in line.stderr
    # segmentation's mIoU budget is refused; the top-1 one has a name of its own
    miou = runner.invoke(app, ["validate", topk, "--max-miou-drop", "1%"])
    assert miou.exit_code == 2 and "is a classification model" in one_error_line(miou)
    strict = runner.invoke(app, ["validate", topk, "--min-top1-agreement", "99%", "--report-dir", str(tmp_path / "s")])
    assert strict.exit_code == 0 and ">= 99%" in strict.stdout
