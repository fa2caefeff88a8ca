"""`msla-deploy evaluate`: datasets in their layouts, upstream's metric, backends against each
other, the gate, bad datasets, and a run without torch.

One small export (b0 at 128x256, random weights) is shared by the module. Random weights predict
little of the procedural scenes, so the mIoU checks that need a sensitive figure use a dataset
whose labels are the PyTorch model's own predictions, upsampled with nearest neighbours (close to
the bicubic protocol, never equal to it): a figure between 0 and 100% that moves with any pixel.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from PIL import Image
from typer.testing import CliRunner

from msla_deploy.artifact.options import ExportOptions
from msla_deploy.artifact.reference import IMAGENET_MEAN, IMAGENET_STD
from msla_deploy.artifact.resolve import resolve
from msla_deploy.classes import IGNORE_INDEX
from msla_deploy.cli import app
from msla_deploy.evaluate.datasets import find_dataset, read_pair
from msla_deploy.evaluate.synthetic import write_dataset
from msla_deploy.export.pipeline import run_export
from msla_deploy.iou import Confusion
from tests.fixtures import NO_TORCH, one_error_line

B0 = "efficientvit-seg-b0-cityscapes"
RES = (128, 256)
runner = CliRunner()


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def evaluate_json(*args):
    result = cli("evaluate", *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _varied_weights(path: Path) -> Path:
    """Random b0 weights whose classifier ignores the features' spatial mean: a random head
    predicts one class everywhere (its bias and the mean feature win); without them the label
    follows the picture's content, so the metric sees boundaries."""
    import torch

    from msla_deploy.zoo.model import build

    torch.manual_seed(0)
    model = build(B0).eval()
    classifier = model.head.output_ops[0].op_list[1].conv
    seen = {}
    hook = classifier.register_forward_hook(lambda module, args, output: seen.setdefault("features", args[0]))
    pixels = write_dataset(path.parent / "probe", "folder", 1, RES, 19, seed=100)
    picture = np.asarray(Image.open(path.parent / "probe" / "images" / f"{pixels[0][0]}.png").convert("RGB"))
    x = (picture.astype(np.float32) / 255 - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(
        IMAGENET_STD, np.float32
    )
    with torch.inference_mode():
        model(torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)[None])))
    hook.remove()
    mean = seen["features"][0].flatten(1).mean(1)
    state = model.state_dict()
    weight = state["head.output_ops.0.op_list.1.conv.weight"]
    w = weight[:, :, 0, 0]
    weight[:, :, 0, 0] = w - torch.outer(w @ mean, mean) / mean.dot(mean)
    state["head.output_ops.0.op_list.1.conv.bias"].zero_()
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("evaluate")
    out = root / "b0"
    weights = _varied_weights(root / "varied.pt")
    run_export(ExportOptions(model=B0, weights=weights, resolution=RES, out=out, models_dir=root / "no-models"))
    return out


def _torch_logits(artifact: Path, pixels: np.ndarray):
    """The exported PyTorch model's logits for one picture at the artifact's resolution."""
    import torch

    from msla_deploy.runtime.torch_backend import rebuild

    model = rebuild(resolve(artifact).manifest, "test")
    x = (pixels.astype(np.float32) / np.float32(255) - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(
        IMAGENET_STD, np.float32
    )
    with torch.inference_mode():
        return model(torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)[None])))


@pytest.fixture(scope="module")
def own_labels(exported, tmp_path_factory) -> Path:
    """A folder dataset at the artifact's resolution labelled with the model's nearest-upsampled predictions."""
    import torch

    root = tmp_path_factory.mktemp("own")
    write_dataset(root, "folder", 4, RES, 19, seed=3)
    for label_file in sorted((root / "labels").glob("*.png")):
        pixels = np.asarray(Image.open(root / "images" / label_file.name).convert("RGB"))
        logits = _torch_logits(exported, pixels)
        labels = torch.nn.functional.interpolate(logits, size=RES, mode="nearest").argmax(1)[0].numpy().astype(np.uint8)
        original = np.asarray(Image.open(label_file))
        labels[original == IGNORE_INDEX] = IGNORE_INDEX  # keep the generator's ignore pixels
        Image.fromarray(labels).save(label_file)
    return root


def _independent_miou(artifact: Path, data: Path) -> float:
    """Upstream's metric from the PyTorch model's outputs, F.interpolate(bicubic) and argmax."""
    import torch

    inter = np.zeros(19)
    union = np.zeros(19)
    for label_file in sorted((data / "labels").glob("*.png")):
        pixels = np.asarray(Image.open(data / "images" / label_file.name).convert("RGB"))
        label = np.asarray(Image.open(label_file)).astype(np.int64)
        logits = _torch_logits(artifact, pixels)
        pred = (
            torch.nn.functional.interpolate(logits, size=label.shape, mode="bicubic", align_corners=False)
            .argmax(1)[0]
            .numpy()
        )
        valid = label != IGNORE_INDEX
        for c in range(19):
            t, p = (label == c) & valid, (pred == c) & valid
            inter[c] += (t & p).sum()
            union[c] += (t | p).sum()
    present = union > 0
    return float((inter[present] / union[present]).mean())


# --- datasets and the metric ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "layout,data_under",
    [
        ("cityscapes", ""),
        ("cityscapes", "leftImg8bit/val"),
        ("ade20k", ""),
        ("ade20k", "ADEChallengeData2016/images/validation"),
        ("folder", ""),
    ],
)
def test_each_layout_reads_back_the_known_labels_and_labels_as_predictions_give_100(tmp_path, layout, data_under):
    written = dict(write_dataset(tmp_path, layout, 5, (48, 80), 19, seed=1))
    dataset = find_dataset(tmp_path / data_under if data_under else tmp_path, "auto", 19)
    assert dataset.kind == layout and sorted(s.name for s in dataset.samples) == sorted(written)
    confusion = Confusion(19)
    rng = np.random.default_rng(0)
    seen = set()
    for sample in dataset.samples:
        pixels, label = read_pair(dataset, sample)
        # label ids / shifted annotations mapped back to train ids
        np.testing.assert_array_equal(label, written[sample.name])
        assert pixels.shape == (48, 80, 3) and (label == IGNORE_INDEX).any()
        seen |= set(np.unique(label[label != IGNORE_INDEX]).tolist())
        prediction = np.where(label == IGNORE_INDEX, rng.integers(0, 19, label.shape), label)  # ignore pixels: anything
        confusion.add(label, prediction)
    assert confusion.miou() == 1.0 and confusion.pixel_accuracy() == 1.0
    assert 3 <= len(seen) < 19  # some classes absent: left out of the mean, not counted as 0


def test_a_known_confusion_gives_the_hand_computed_miou():
    truth = np.array([0, 0, 1, 1, 2, IGNORE_INDEX, 1], np.uint8)
    pred = np.array([0, 1, 1, 1, 0, 2, 3], np.uint8)
    confusion = Confusion(4)
    confusion.add(truth, pred)
    # class 0: I 1, U 2+2-1 = 3; class 1: I 2, U 3+3-2 = 4; class 2: I 0, U 1 (its prediction on an ignore
    # pixel does not count); class 3: I 0, U 1 (predicted once); so mIoU = (1/3 + 2/4 + 0 + 0) / 4
    assert confusion.iou() == pytest.approx([1 / 3, 2 / 4, 0.0, 0.0])
    assert confusion.miou() == pytest.approx((1 / 3 + 1 / 2) / 4)
    assert confusion.pixel_accuracy() == pytest.approx(3 / 6)
    empty = Confusion(3)
    empty.add(np.array([0, 0], np.uint8), np.array([0, 1], np.uint8))
    assert empty.iou() == [0.5, 0.0, None]  # class 2 nowhere: no IoU, out of the mean


# --- backends ------------------------------------------------------------------------------------


def test_torch_miou_equals_an_independent_computation_and_ort_matches_it(exported, own_labels, tmp_path):
    report = evaluate_json(
        exported, "--data", own_labels, "--backend", "torch", "--backend", "ort-cpu", "--report-dir", tmp_path / "r"
    )
    torch_score, ort_score = report["backends"]
    assert torch_score["backend"] == "torch" and report["against"] == "torch"
    expected = _independent_miou(exported, own_labels)
    assert 0.2 < expected < 1.0  # a sensitive figure, not 0 or 100%
    assert abs(torch_score["miou"] - expected) <= 1e-6
    assert abs(ort_score["miou_drop_points"]) <= 0.01 and abs(100 * (ort_score["miou"] - torch_score["miou"])) <= 0.01
    pair = report["pairs"][0]
    assert (pair["reference"], pair["candidate"]) == ("torch", "ort-cpu") and pair["agreement"] > 0.999
    names = {row["name"] for row in torch_score["class_iou"]}
    assert "road" in names  # Cityscapes class names from the zoo name
    md = (tmp_path / "r" / "report.md").read_text()
    assert "| `torch` |" in md and "Per-class IoU" in md
    suite = ET.parse(tmp_path / "r" / "junit.xml").getroot()
    assert suite.get("tests") == "1" and suite.get("failures") == "0"


def test_the_gate_fails_a_backend_that_loses_miou_and_draws_where(exported, own_labels, tmp_path):
    art = tmp_path / "b0"
    shutil.copytree(exported, art)
    model = onnx.load(art / "model.onnx")
    for init in model.graph.initializer:  # the ONNX runs on ort-cpu; torch rebuilds from the export's weights
        if "head" in init.name and init.name.endswith("weight") and numpy_helper.to_array(init).ndim == 4:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * np.float32(-1), init.name))
            break
    onnx.save(model, art / "model.onnx")
    result = cli(
        "evaluate",
        art,
        "--data",
        own_labels,
        "--backend",
        "ort-cpu",
        "--against",
        "torch",
        "--max-miou-drop",
        "0.3",
        "--report-dir",
        tmp_path / "r",
        "--junit",
        tmp_path / "extra.xml",
    )
    assert result.exit_code == 1, result.output
    assert "ort-cpu loses" in one_error_line(result)
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert [b["backend"] for b in report["backends"]] == ["torch", "ort-cpu"]  # --against joined the pass, first
    assert report["backends"][1]["miou_drop_points"] > 0.3 and report["backends"][1]["passed"] is False
    worst = report["pairs"][0]["worst_images"]
    pictures = [w["picture"] for w in worst if w["picture"]]
    assert 1 <= len(pictures) <= 3 and all(Path(p).is_file() for p in pictures)
    with Image.open(pictures[0]) as picture:
        # four panels at the label's resolution (picture, disagreement, each backend's labels) with a legend
        assert picture.width >= 2 * RES[1] and picture.height >= 2 * RES[0] and picture.mode == "RGB"
    assert worst == sorted(worst, key=lambda w: -w["disagreement"])
    failures = ET.parse(tmp_path / "extra.xml").getroot().iter("failure")
    assert len(list(failures)) == 1


def test_resized_pictures_limit_and_saved_predictions(exported, tmp_path):
    data = tmp_path / "cs"
    written = dict(write_dataset(data, "cityscapes", 3, (96, 200), 19, seed=5))
    report = evaluate_json(
        exported,
        "--data",
        data,
        "--backend",
        "ort-cpu",
        "--limit",
        "2",
        "--save-predictions",
        tmp_path / "pred",
        "--report-dir",
        tmp_path / "r",
    )
    assert report["images"] == 2 and report["dataset"]["kind"] == "cityscapes"
    assert any("1024x2048" in note for note in report["notes"])
    saved = sorted((tmp_path / "pred" / "ort-cpu").glob("*.png"))
    assert len(saved) == 2
    confusion = Confusion(19)
    for file in saved:
        name = file.stem.replace("__", "/")
        prediction = np.asarray(Image.open(file))
        assert prediction.shape == (96, 200)  # at the label's size, not the model's
        confusion.add(written[name], prediction)
    assert confusion.miou() == pytest.approx(report["backends"][0]["miou"], abs=1e-12)


def test_ade20k_report_says_a_static_engine_runs_at_its_own_resolution(exported, tmp_path):
    write_dataset(tmp_path / "ade", "ade20k", 2, (64, 96), 19, seed=6)
    report = evaluate_json(exported, "--data", tmp_path / "ade", "--backend", "ort-cpu", "--report-dir", tmp_path / "r")
    assert report["dataset"]["kind"] == "ade20k"
    assert any("its own resolution" in note for note in report["notes"])
    assert "its own resolution" in (tmp_path / "r" / "report.md").read_text()


# --- bad datasets --------------------------------------------------------------------------------


def _break(data: Path, how: str) -> Path:
    labels = sorted((data / "labels").glob("*.png"))
    if how == "missing label":
        labels[1].unlink()
        return labels[1]
    if how == "wrong size":
        Image.fromarray(np.zeros((10, 10), np.uint8)).save(labels[1])
        return labels[1]
    if how == "class out of range":
        Image.fromarray(np.full((48, 80), 40, np.uint8)).save(labels[1])
        return labels[1]
    image = data / "images" / labels[1].name
    image.write_bytes(b"not a png at all")
    return image


@pytest.mark.parametrize(
    "how,needle",
    [
        ("missing label", "label missing"),
        ("wrong size", "label is 10x10"),
        ("class out of range", "class id 40 out of range"),
        ("unreadable image", "not a readable picture"),
    ],
)
def test_bad_datasets_exit_2_naming_the_file_or_are_skipped(exported, tmp_path, how, needle):
    data = tmp_path / "data"
    write_dataset(data, "folder", 3, (48, 80), 19, seed=7)
    bad = _break(data, how)
    result = cli("evaluate", exported, "--data", data, "--backend", "ort-cpu", "--report-dir", tmp_path / "r")
    assert result.exit_code == 2, result.output
    line = one_error_line(result)
    assert needle in line and str(bad) in line
    assert not (tmp_path / "r" / "report.json").exists()  # nothing half-written
    report = evaluate_json(
        exported, "--data", data, "--backend", "ort-cpu", "--skip-bad", "--report-dir", tmp_path / "r2"
    )
    assert report["images"] == 2 and len(report["skipped"]) == 1 and needle in report["skipped"][0]["problem"]
    assert "Skipped (bad input)" in (tmp_path / "r2" / "report.md").read_text()


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--dataset", "coco"], "'--dataset': 'coco' is not one of"),  # Typer's refusal of a wrong choice
        (["--limit", "0"], "--limit 0"),
        (["--max-miou-drop", "-1"], "--max-miou-drop -1"),
        (["--backend", "ort-cpu", "--backend", "ort-cpu"], "--backend given twice"),
        (["--backend", "nope"], "'--backend': 'nope' is unknown"),
    ],
)
def test_bad_flags_are_one_line_exit_2(exported, tmp_path, args, needle):
    write_dataset(tmp_path / "d", "folder", 1, (48, 80), 19, seed=8)
    result = cli("evaluate", exported, "--data", tmp_path / "d", *args, "--report-dir", tmp_path / "r")
    assert result.exit_code == 2, result.output
    assert needle in one_error_line(result)


def test_not_a_dataset_is_bad_input(exported, tmp_path):
    (tmp_path / "empty").mkdir()
    result = cli("evaluate", exported, "--data", tmp_path / "empty")
    assert result.exit_code == 2 and "not a dataset layout" in one_error_line(result)


# --- torch-free ----------------------------------------------------------------------------------


def test_onnx_backends_evaluate_without_torch(exported, own_labels, tmp_path):
    args = [
        "evaluate",
        exported,
        "--data",
        own_labels,
        "--backend",
        "ort-cpu",
        "--report-dir",
        tmp_path / "r",
        "--json",
    ]
    proc = subprocess.run(
        [sys.executable, "-c", NO_TORCH, *map(str, args)], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert (
        report["against"] == "ort-cpu"
        and abs(100 * report["backends"][0]["miou"] - 100 * _independent_miou(exported, own_labels)) <= 0.01
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            NO_TORCH,
            *map(str, args[:4]),
            "--backend",
            "torch",
            "--report-dir",
            str(tmp_path / "r3"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 3 and "PyTorch" in proc.stderr  # torch asked for and missing: exit 3, before any work
