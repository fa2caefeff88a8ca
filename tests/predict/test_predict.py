"""`msla_deploy.Segmenter` and `msla-deploy predict` on ONNX Runtime: odd pictures, the PyTorch
pipeline computed independently, the labels head, files written, errors, and a torch-free run.

Two small exports (b0 at 64x128, random weights of the same seed): a logits artifact (batch 1)
and a labels-head artifact with a static batch of 2 (to exercise padding).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from typer.testing import CliRunner

from msla_deploy.artifact.options import ExportOptions
from msla_deploy.artifact.reference import IMAGENET_MEAN, IMAGENET_STD
from msla_deploy.classes import CITYSCAPES_CLASSES, CITYSCAPES_COLORS, CITYSCAPES_LABEL_IDS
from msla_deploy.cli import app
from msla_deploy.export.pipeline import run_export
from msla_deploy.loading import load_model
from msla_deploy.runtime import processing
from msla_deploy.runtime.segmenter import Segmenter, nearest_resize, to_rgb
from tests.export.test_labels_head import calibrated_b0_checkpoint
from tests.fixtures import BLOCK_TORCH

B0 = "efficientvit-seg-b0-cityscapes"
RES = (64, 128)
runner = CliRunner()


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("predict")


@pytest.fixture(scope="module")
def weights(root) -> Path:
    # calibrated random weights: varied labels (fresh random weights predict one class everywhere)
    return calibrated_b0_checkpoint(root / "b0.pt")


@pytest.fixture(scope="module")
def logits_artifact(root, weights) -> Path:
    out = root / "logits"
    assert run_export(
        ExportOptions(model=B0, weights=weights, resolution=RES, out=out, models_dir=root / "none")
    ).passed
    return out


@pytest.fixture(scope="module")
def labels_artifact(root, weights) -> Path:
    out = root / "labels"
    assert run_export(
        ExportOptions(
            model=B0, weights=weights, resolution=RES, batch=2, out=out, models_dir=root / "none", head="labels"
        )
    ).passed
    return out


@pytest.fixture(scope="module")
def torch_model(root, weights):
    """The exported model itself (the same checkpoint), for the PyTorch pipeline."""
    return load_model(ExportOptions(model=B0, weights=weights, resolution=RES, models_dir=root / "none")).module


def smooth_picture(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A picture with structure (gradients and blobs), so the labels are not noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    channels = [127 + 120 * np.sin(x / (7 + 5 * c) + y / (11 + 3 * c) + rng.uniform(0, 6)) for c in range(3)]
    return np.clip(np.stack(channels, axis=2), 0, 255).astype(np.uint8)


def torch_upsampled(model, pixels: np.ndarray) -> np.ndarray:
    """Upstream's evaluation in PyTorch up to the argmax: the model on the preprocessed picture,
    logits bicubically upsampled to the picture's size ([C, H, W])."""
    x = processing.preprocess(pixels, RES) if pixels.shape[:2] != RES else _normalise(pixels)
    with torch.no_grad():
        logits = model(torch.from_numpy(x))
        up = F.interpolate(logits, size=pixels.shape[:2], mode="bicubic", align_corners=False)
    return up[0].numpy()


def assert_same_labels_but_exact_ties(labels: np.ndarray, upsampled: np.ndarray) -> None:
    """The labels are PyTorch's, except where PyTorch's two best classes are closer than the fp32
    parity budget lets the exported logits differ (1e-4 x peak + 1e-6): there either label is the
    model's answer, and which one a runtime picks depends on its last bits (seen: one pixel in
    1.2 million at 300x4000 with onnxruntime 1.32, top two 81.03473 vs 81.03466). Such ties must
    stay rare."""
    expected = upsampled.argmax(axis=0)
    differ = labels != expected
    if not differ.any():
        return
    top2 = np.sort(upsampled[:, differ], axis=0)[-2:]
    tolerance = 1e-4 * float(np.abs(upsampled).max()) + 1e-6
    assert np.all(top2[1] - top2[0] <= tolerance), (
        f"labels differ where PyTorch is not tied: {int(differ.sum())} pixels"
    )
    assert differ.sum() <= max(1, differ.size // 100_000), f"{int(differ.sum())} near-tied pixels of {differ.size}"


def _normalise(pixels: np.ndarray) -> np.ndarray:
    # at the artifact's resolution preprocessing is only the normalisation: computed here by hand
    x = pixels.astype(np.float32).transpose(2, 0, 1)[None] / 255.0
    return (x - np.asarray(IMAGENET_MEAN, np.float32).reshape(1, 3, 1, 1)) / np.asarray(
        IMAGENET_STD, np.float32
    ).reshape(1, 3, 1, 1)


# --- pictures in --------------------------------------------------------------------------------------
def test_to_rgb_handles_grey_rgba_and_16_bit(tmp_path):
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    Image.fromarray(grey, "L").save(tmp_path / "grey.png")
    np.testing.assert_array_equal(to_rgb(tmp_path / "grey.png"), np.repeat(grey[:, :, None], 3, axis=2))
    rgba = np.dstack([smooth_picture(5, 6), np.full((5, 6), 7, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(to_rgb(tmp_path / "rgba.png"), rgba[:, :, :3])
    deep = (np.arange(20, dtype=np.uint16).reshape(4, 5) * 3000 + 255).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")  # a 16-bit grey PNG
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    np.testing.assert_array_equal(to_rgb(tmp_path / "deep.png")[:, :, 0], (deep >> 8).astype(np.uint8))
    np.testing.assert_array_equal(to_rgb(Image.fromarray(rgba, "RGBA")), rgba[:, :, :3])


def onnx_nearest(labels: np.ndarray, size) -> np.ndarray:
    """ONNX Runtime's Resize nearest (half_pixel, round_prefer_ceil): the definition nearest_resize follows."""
    import onnxruntime
    from onnx import TensorProto, helper, numpy_helper

    node = helper.make_node(
        "Resize",
        ["x", "", "", "sizes"],
        ["y"],
        mode="nearest",
        coordinate_transformation_mode="half_pixel",
        nearest_mode="round_prefer_ceil",
    )
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, *labels.shape])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, *size])],
        [numpy_helper.from_array(np.array([1, 1, *size], np.int64), "sizes")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": labels.astype(np.float32)[None, None]})[0][0, 0].astype(labels.dtype)


def test_nearest_resize_is_onnx_resize_nearest():
    labels = np.random.default_rng(1).integers(0, 19, size=(8, 16)).astype(np.uint8)
    for size in ((64, 128), (5, 300), (1, 1), (37, 11), (8, 16)):
        np.testing.assert_array_equal(nearest_resize(labels, size), onnx_nearest(labels, size))


# --- the Segmenter against the PyTorch pipeline ----------------------------------------------------------
ODD = {"artifact size": (64, 128), "1x1": (1, 1), "300x4000": (300, 4000), "tall": (200, 33)}


@pytest.mark.parametrize("name", list(ODD))
def test_segmenter_labels_equal_the_pytorch_pipeline(logits_artifact, torch_model, name):
    h, w = ODD[name]
    pixels = smooth_picture(h, w, seed=h + w)
    seg = Segmenter(logits_artifact, backend="ort-cpu")
    result = seg(pixels)
    assert result.labels.shape == (h, w) and result.labels.dtype == np.uint8 and result.exact
    upsampled = torch_upsampled(torch_model, pixels)
    expected = upsampled.argmax(axis=0)
    assert_same_labels_but_exact_ties(result.labels, upsampled)
    if h * w > 1000:  # labels that say something: more than one class
        assert np.bincount(expected.ravel()).max() < 0.95 * expected.size, np.bincount(expected.ravel())
    assert result.colorize().shape == (h, w, 3) and result.overlay(0.3).shape == (h, w, 3)


def test_colours_overlay_areas_and_label_ids(logits_artifact):
    seg = Segmenter(logits_artifact)
    assert seg.dataset == "cityscapes" and seg.class_names == CITYSCAPES_CLASSES and seg.output == "logits"
    pixels = smooth_picture(40, 50)
    result = seg(Image.fromarray(pixels))
    colours = result.colorize()
    np.testing.assert_array_equal(colours, np.array(CITYSCAPES_COLORS, np.uint8)[result.labels])
    np.testing.assert_array_equal(result.overlay(0.0), pixels)
    np.testing.assert_array_equal(result.overlay(1.0), colours)
    areas = result.areas()
    assert abs(sum(areas.values()) - 1.0) < 1e-9 and set(areas) <= set(CITYSCAPES_CLASSES)
    np.testing.assert_array_equal(result.label_ids(), np.array(CITYSCAPES_LABEL_IDS)[result.labels])


def test_batch_fills_and_pads_the_static_batch(labels_artifact):
    seg = Segmenter(labels_artifact)
    assert seg.batch_size == 2 and seg.output == "labels"
    pictures = [smooth_picture(64, 128, seed=s) for s in range(3)]  # two groups, the second padded
    together = seg.batch(pictures)
    alone = [seg(p) for p in pictures]
    assert len(together) == 3
    for a, b in zip(together, alone):
        np.testing.assert_array_equal(a.labels, b.labels)


def test_labels_head_is_exact_at_the_artifact_size_and_nearest_elsewhere(logits_artifact, labels_artifact):
    logits_seg, labels_seg = Segmenter(logits_artifact), Segmenter(labels_artifact)
    at_size = smooth_picture(*RES, seed=5)
    a, b = logits_seg(at_size), labels_seg(at_size)
    assert b.exact and float((a.labels == b.labels).mean()) >= 0.999
    other = smooth_picture(100, 150, seed=6)
    approx = labels_seg(other)
    assert not approx.exact and approx.labels.shape == (100, 150)
    # nearest neighbour from the artifact-size labels of the same (resized) picture
    graph_labels = labels_seg.session.run({"input": np.repeat(processing.preprocess(other, RES), 2, axis=0)})["labels"][
        0
    ]
    np.testing.assert_array_equal(approx.labels, nearest_resize(graph_labels, (100, 150)))


def test_segmenter_errors(tmp_path, logits_artifact):
    with pytest.raises(Exception) as info:
        Segmenter(tmp_path / "missing")
    assert "export directory" in str(info.value)
    seg = Segmenter(logits_artifact)
    with pytest.raises(Exception, match="not uint8"):
        seg(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(Exception, match="alpha"):
        seg(np.zeros((4, 4, 3), np.uint8)).overlay(2.0)


# --- msla-deploy predict -----------------------------------------------------------------------------
@pytest.fixture()
def folder(tmp_path) -> Path:
    pics = tmp_path / "pics"
    (pics / "sub").mkdir(parents=True)
    Image.fromarray(smooth_picture(64, 128)).save(pics / "street.png")
    Image.fromarray(smooth_picture(30, 400, seed=2)).convert("L").save(pics / "sub" / "grey.png")
    Image.fromarray(smooth_picture(3, 3, seed=3)).convert("RGBA").save(pics / "sub" / "tiny.png")
    (pics / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return pics


def test_predict_writes_three_pngs_per_picture_and_skips_unreadable(logits_artifact, folder, tmp_path):
    out = tmp_path / "out"
    result = cli("predict", logits_artifact, folder, "--out", out, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [Path(p["input"]).name for p in report["pictures"]] == ["street.png", "grey.png", "tiny.png"]
    assert [Path(s["input"]).name for s in report["skipped"]] == ["broken.png"] and "broken.png" in result.stderr
    seg = Segmenter(logits_artifact)
    for p in report["pictures"]:
        labels = np.asarray(Image.open(p["files"]["labels"]))
        np.testing.assert_array_equal(labels, seg(p["input"]).labels)
        assert list(labels.shape) == p["size"]
        assert np.asarray(Image.open(p["files"]["color"]).convert("RGB")).shape == (*p["size"], 3)
        assert np.asarray(Image.open(p["files"]["overlay"]).convert("RGB")).shape == (*p["size"], 3)
        assert abs(sum(p["areas"].values()) - 1) < 1e-9
    assert (out / "sub" / "grey_labels.png").is_file()  # folders keep their layout below the given one
    assert not list(out.rglob("*.tmp*"))
    from msla_deploy.predict.run import PredictReport

    typed = PredictReport.from_dict(report)  # --json is the typed record, and it round-trips
    assert report["format"] == "msla-deploy/predict/1" and typed.to_dict() == report
    assert [p.size for p in typed.pictures] == [p["size"] for p in report["pictures"]]


def test_predict_refuses_to_overwrite_and_label_ids(logits_artifact, folder, tmp_path):
    out = tmp_path / "out"
    pic = folder / "street.png"
    assert cli("predict", logits_artifact, pic, "--out", out).exit_code == 0
    before = (out / "street_labels.png").read_bytes()
    again = cli("predict", logits_artifact, pic, "--out", out, "--label-ids")
    assert again.exit_code == 2 and "street_labels.png exists" in again.stderr and "--overwrite" in again.stderr
    assert (out / "street_labels.png").read_bytes() == before
    forced = cli("predict", logits_artifact, pic, "--out", out, "--label-ids", "--overwrite")
    assert forced.exit_code == 0, forced.output
    ids = np.asarray(Image.open(out / "street_labels.png"))
    train = Segmenter(logits_artifact)(pic).labels
    np.testing.assert_array_equal(ids, np.array(CITYSCAPES_LABEL_IDS, np.uint8)[train])


def test_predict_strict_and_bad_input(logits_artifact, folder, tmp_path):
    strict = cli("predict", logits_artifact, folder, "--out", tmp_path / "s", "--strict")
    assert strict.exit_code == 2 and "broken.png" in strict.stderr and "Traceback" not in strict.output
    missing = cli("predict", logits_artifact, tmp_path / "nothing.png", "--out", tmp_path / "m")
    assert missing.exit_code == 2 and "no such file" in missing.stderr and not (tmp_path / "m").exists()
    alpha = cli("predict", logits_artifact, folder / "street.png", "--out", tmp_path / "a", "--alpha", "1.5")
    assert alpha.exit_code == 2 and "--alpha" in alpha.stderr


# --- without torch -------------------------------------------------------------------------------------


# the Segmenter on sys.argv[1:3], then the CLI on the rest; nothing may import torch
NO_TORCH = BLOCK_TORCH + textwrap.dedent(
    """
    import msla_deploy
    assert "msla_deploy.runtime.segmenter" not in sys.modules  # import msla_deploy stays light
    labels = msla_deploy.Segmenter(sys.argv[1])(sys.argv[2]).labels
    print(labels.shape, int(labels.max()))
    from msla_deploy.cli import app
    try:
        app(sys.argv[3:])
    finally:
        assert not [m for m in sys.modules if m == "torch" or m.startswith("torch.")], "torch got imported"
    """
)


def test_segmenter_and_predict_run_without_torch(logits_artifact, folder, tmp_path):
    pic = folder / "street.png"
    args = [logits_artifact, pic, "predict", logits_artifact, pic, "--out", tmp_path / "nt", "--json"]
    proc = subprocess.run(
        [sys.executable, "-c", NO_TORCH, *map(str, args)], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("(64, 128)")
    assert (tmp_path / "nt" / "street_overlay.png").is_file()


def test_reference_pictures_for_a_labels_head_then_validate(labels_artifact, tmp_path):
    """`reference --inputs` rebuilds the model with its head: the bundle gets int32 labels, and the
    artifact validates against them."""
    import shutil

    from msla_deploy.artifact.reference import read_reference

    art = tmp_path / "art"
    shutil.copytree(labels_artifact, art, ignore=shutil.ignore_patterns("validation*"))
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    for seed in (1, 2):
        np.save(pictures / f"p{seed}.npy", smooth_picture(64, 128, seed=seed))
    result = cli("reference", art, "--inputs", pictures, "--json")
    assert result.exit_code == 0, result.output
    bundle = read_reference(art / "reference")
    assert bundle.outputs["labels"].shape == (4, 64, 128) and bundle.outputs["labels"].dtype == np.int32
    seg = Segmenter(art)
    for i, seed in enumerate((1, 2)):  # the pictures' reference labels are what the Segmenter gives
        assert (
            float((bundle.outputs["labels"][2 + i] == seg(smooth_picture(64, 128, seed=seed)).labels).mean()) >= 0.999
        )
    validated = cli("validate", art, "--report-dir", tmp_path / "v", "--json")
    assert validated.exit_code == 0, validated.output
