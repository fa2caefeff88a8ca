"""`evaluate` on a real classifier export (efficientvit-b0 at 64x64, random weights): ONNX Runtime
and the PyTorch rebuild in one pass, against upstream's protocol written out here, with the logits
and the topk heads. Slow: each export takes seconds to a minute on 2 cores."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from msla_deploy.artifact.reference import IMAGENET_MEAN, IMAGENET_STD
from msla_deploy.cli import app
from msla_deploy.evaluate.synthetic import write_class_folders
from tests.fixtures import export_random_classifier

ort = pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.slow

MODEL = "efficientvit-b0"
RES = 64
runner = CliRunner()


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    root = tmp_path_factory.mktemp("cls-export")
    # MODEL at RES x RES with seeded random weights (shared with the other modules that ask for it)
    return {head: export_random_classifier(root, head, head=head) for head in ("logits", "topk")}


def _logits(model: Path, picture: Path) -> np.ndarray:
    """Upstream's transform written out (Pillow bicubic short side to ceil(64 / 0.95) = 68, centre
    crop, mean/std) and the exported graph run by ONNX Runtime."""
    image = Image.open(picture).convert("RGB")
    w, h = image.size
    short = math.ceil(RES / 0.95)
    size = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
    image = image.resize(size, Image.BICUBIC)
    left, top = int(round((size[0] - RES) / 2.0)), int(round((size[1] - RES) / 2.0))
    pixels = np.asarray(image.crop((left, top, left + RES, top + RES))).astype(np.float32) / np.float32(255)
    x = ((pixels - np.float32(IMAGENET_MEAN)) / np.float32(IMAGENET_STD)).transpose(2, 0, 1)[None]
    session = ort.InferenceSession(str(model / "model.onnx"), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": np.ascontiguousarray(x)})[0][0]


@pytest.fixture(scope="module")
def own_labels(exports, tmp_path_factory) -> Path:
    """Class pictures listed with the exported model's own predictions under the protocol written
    here: its top-1 class for half of them, its fifth for the others (top-1 50%, top-5 100%)."""
    root = tmp_path_factory.mktemp("cls-data")
    samples = write_class_folders(root / "val", 4, 3, sizes=(50, 140), seed=2)
    lines = []
    for i, (relative, _) in enumerate(samples):
        order = np.argsort(-_logits(exports["logits"], root / "val" / relative))
        lines.append(f"val/{relative} {order[0] if i % 2 == 0 else order[4]}")
    listing = root / "val.txt"
    listing.write_text("\n".join(lines) + "\n")
    return listing


def _evaluate(*args) -> dict:
    result = runner.invoke(app, ["evaluate", *map(str, args), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_onnx_runtime_and_pytorch_score_upstreams_protocol(exports, own_labels, tmp_path):
    report = _evaluate(
        exports["logits"], "--data", own_labels, "--backend", "ort-cpu", "--backend", "torch",
        "--max-top1-drop", "0", "--report-dir", tmp_path,
    )  # fmt: skip
    assert report["against"] == "torch" and report["passed"] is True
    assert report["artifact"]["num_classes"] == 1000 and report["artifact"]["model"] == MODEL
    assert report["artifact"]["weights_warning"]  # random weights say so
    for b in report["backends"]:
        assert (b["top1"], b["top5"]) == (0.5, 1.0), b["backend"]
    (pair,) = report["pairs"]
    assert pair["top1_agreement"] == 1.0 and pair["top5_overlap"] == 1.0


def test_the_topk_head_scores_as_the_logits_do(exports, own_labels, tmp_path):
    report = _evaluate(
        exports["topk"], "--data", own_labels, "--backend", "ort-cpu", "--backend", "torch", "--report-dir", tmp_path
    )
    for b in report["backends"]:
        assert b["output"] == "topk_indices" and (b["top1"], b["top5"]) == (0.5, 1.0), b["backend"]


def test_a_classifier_refuses_the_segmentation_gate(exports, own_labels):
    result = runner.invoke(app, ["evaluate", str(exports["logits"]), "--data", str(own_labels), "--max-miou-drop", "1"])
    assert result.exit_code == 2 and "--max-miou-drop is a segmentation option" in result.output
