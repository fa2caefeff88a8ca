"""`msla-deploy predict` on a classification artifact: the top-k table, --json (a ClassifyReport),
--out charts, exit 1 for NaN scores, the one-line errors (exit 2), and a torch-free run.

Two small exports of b0 at 64x64 with calibrated random weights (tests/runtime/test_classifier.py):
logits and topk.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from msla_deploy import Classifier
from msla_deploy.cli import app
from msla_deploy.predict.classify import ClassifyReport
from tests.fixtures import BLOCK_TORCH, one_error_line
from tests.runtime.test_classifier import (
    PICTURES,
    bare_segmentation_onnx,
    calibrated_cls_checkpoint,
    export_classifier,
)

runner = CliRunner()


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("predict-cls")


@pytest.fixture(scope="module")
def weights(root) -> Path:
    return calibrated_cls_checkpoint(root / "b0-cls.pt")


@pytest.fixture(scope="module")
def logits_artifact(root, weights) -> Path:
    return export_classifier(root, weights, "logits")


@pytest.fixture(scope="module")
def topk_artifact(root, weights) -> Path:
    return export_classifier(root, weights, "topk")


@pytest.fixture(scope="module")
def folder(root) -> Path:
    """Two pictures (one in a sub-folder) and a file that is not a picture."""
    pics = root / "pics"
    (pics / "sub").mkdir(parents=True)
    Image.fromarray(PICTURES[0]).save(pics / "wide.png")
    Image.fromarray(PICTURES[1]).save(pics / "sub" / "tall.jpg", quality=95)
    (pics / "broken.png").write_bytes(b"not a picture")
    return pics


def expected(artifact: Path, picture: Path, k: int):
    with Classifier(artifact, "ort-cpu") as clf:
        return clf(picture, top_k=k).top


def test_table_per_picture_with_names_and_nothing_written(logits_artifact, folder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("predict", logits_artifact, folder / "wide.png", folder / "sub" / "tall.jpg", "--top-k", 3)
    assert result.exit_code == 0, result.output
    text = result.stdout
    wide, tall = text.index(str(folder / "wide.png")), text.index(str(folder / "sub" / "tall.jpg"))
    assert wide < tall
    for picture, table in ((folder / "wide.png", text[wide:tall]), (folder / "sub" / "tall.jpg", text[tall:])):
        rows = [line.split("│") for line in table.splitlines() if line.count("│") == 3]
        top = expected(logits_artifact, picture, 3)
        assert [[cell.strip() for cell in row] for row in rows] == [
            [str(rank), str(c.index), c.name, f"{100 * c.probability:.2f}%"] for rank, c in enumerate(top, 1)
        ]
    assert "imagenet-1k" in result.stdout and "checkpoint" in result.stdout
    assert list(tmp_path.iterdir()) == []  # no --out: a classifier's answers are printed, not written


def test_json_is_a_classify_report_and_skips_unreadable(logits_artifact, folder):
    result = cli("predict", logits_artifact, folder, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["format"] == "msla-deploy/predict-classification/1"
    report = ClassifyReport.from_dict(data)
    assert report.head == "logits" and report.top_k == 5 and report.class_names == "imagenet-1k"
    assert report.out is None and report.weights_source == "checkpoint" and report.runtime["runtime"] == "onnxruntime"
    assert [Path(p.input).name for p in report.pictures] == ["tall.jpg", "wide.png"]  # sorted paths: sub/ first
    for p in report.pictures:
        top = expected(logits_artifact, Path(p.input), 5)
        assert [(c.rank, c.index, c.name) for c in p.top] == [(r, c.index, c.name) for r, c in enumerate(top, 1)]
        assert [c.probability for c in p.top] == pytest.approx([c.probability for c in top], abs=1e-12)
        assert p.nonfinite == 0 and p.file is None
    assert report.pictures[1].size == [120, 200]
    assert [Path(s["input"]).name for s in report.skipped] == ["broken.png"]
    skipped_line = next(line for line in result.stderr.splitlines() if "skipped" in line)
    assert skipped_line.count("broken.png:") == 1, skipped_line  # the path leads the line once, not twice


def test_out_writes_a_chart_per_picture_and_never_overwrites(topk_artifact, folder, tmp_path):
    out = tmp_path / "charts"
    result = cli("predict", topk_artifact, folder, "--out", out, "--json", "-k", 2)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["head"] == "topk" and report["top_k"] == 2
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == ["sub/tall_classes.png", "wide_classes.png"]
    assert [p["file"] for p in report["pictures"]] == [
        str(out / "sub" / "tall_classes.png"),
        str(out / "wide_classes.png"),
    ]
    chart = Image.open(out / "wide_classes.png")
    assert chart.mode == "RGB" and chart.width > 224 and chart.height >= 224
    before = (out / "wide_classes.png").read_bytes()
    again = cli("predict", topk_artifact, folder / "wide.png", "--out", out)
    assert again.exit_code == 2 and "exists" in one_error_line(again)
    assert (out / "wide_classes.png").read_bytes() == before


def nan_classifier(path: Path) -> Path:
    """A bare ONNX that says it is a 3-class classifier (no zoo name) and answers NaN."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("Sub", ["flat", "hundred"], ["below"]),
        helper.make_node("Sqrt", ["below"], ["logits"]),  # the square root of a negative: NaN
    ]
    graph = helper.make_graph(
        nodes,
        "nan",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor("hundred", TensorProto.FLOAT, [], [100.0])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.helper.set_model_props(
        model, {"msla_deploy.task": "classification", "msla_deploy.num_classes": "3", "msla_deploy.model": "mine"}
    )
    onnx.save(model, path)
    return path


def test_nan_scores_fail_with_exit_1_and_the_answers_reported(folder, tmp_path):
    model = nan_classifier(tmp_path / "nan.onnx")
    result = cli("predict", model, folder / "wide.png", "--json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["class_names"] == "class indices" and report["pictures"][0]["nonfinite"] == 3
    assert [c["name"] for c in report["pictures"][0]["top"]] == ["class 0", "class 1", "class 2"]
    assert "NaN/Inf scores" in one_error_line(result) and "wide.png" in one_error_line(result)


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--top-k", "0"], "--top-k 0 must be a whole number of at least 1"),
        (["--top-k", "6"], "--top-k 6: this artifact's topk head gives its 5 best classes only"),
        (["--label-ids"], "--label-ids is for Cityscapes segmentation models"),
        (["--alpha", "0.3"], "--alpha weighs overlays; a classifier's chart has none"),
        (["--labels", "missing.txt"], "--labels missing.txt: no such file"),
        (["--strict"], "broken.png"),
    ],
)
def test_bad_input_is_one_line_exit_2(topk_artifact, folder, tmp_path, args, expected):
    result = cli("predict", topk_artifact, folder, "--out", tmp_path / "o", *args)
    assert result.exit_code == 2, result.output
    assert expected in one_error_line(result)
    assert not (tmp_path / "o").exists() or args == ["--strict"]


def test_segmentation_keeps_its_rules(folder, tmp_path):
    seg = bare_segmentation_onnx(tmp_path / "seg.onnx")
    picture = tmp_path / "p.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(picture)
    no_out = cli("predict", seg, picture)
    assert no_out.exit_code == 2 and "pass --out DIR" in one_error_line(no_out)
    top_k = cli("predict", seg, picture, "--out", tmp_path / "o", "--top-k", 3)
    assert top_k.exit_code == 2 and "--top-k is for classification models" in one_error_line(top_k)
    assert not (tmp_path / "o").exists()
    written = cli("predict", seg, picture, "--out", tmp_path / "o", "--json")
    assert written.exit_code == 0 and json.loads(written.stdout)["format"] == "msla-deploy/predict/1"


# the Classifier on sys.argv[1:3], then the CLI on the rest; nothing may import torch
NO_TORCH = BLOCK_TORCH + textwrap.dedent(
    """
    import msla_deploy
    assert "msla_deploy.runtime.classifier" not in sys.modules  # import msla_deploy stays light
    print(msla_deploy.Classifier(sys.argv[1])(sys.argv[2]).best.name)
    from msla_deploy.cli import app
    try:
        app(sys.argv[3:])
    finally:
        assert not [m for m in sys.modules if m == "torch" or m.startswith("torch.")], "torch got imported"
    """
)


def test_classifier_and_predict_run_without_torch(logits_artifact, folder, tmp_path):
    pic = folder / "wide.png"
    args = [logits_artifact, pic, "predict", logits_artifact, pic, "--out", tmp_path / "nt", "--json"]
    proc = subprocess.run(
        [sys.executable, "-c", NO_TORCH, *map(str, args)], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    best = expected(logits_artifact, pic, 1)[0].name
    assert proc.stdout.startswith(best + "\n")
    assert (tmp_path / "nt" / "wide_classes.png").is_file()
