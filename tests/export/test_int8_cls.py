"""int8 for a classifier: calibration pictures preprocessed as a classifier sees them (upstream's
centre crop, not segmentation's stretch), the LiteMLA cores kept in fp32, the head's int8 weights
not taken for attention."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from msla_deploy.artifact.manifest import read_manifest
from msla_deploy.artifact.names import META_INT8_MODULES, ONNX_NAME
from msla_deploy.cli import app
from msla_deploy.export.calibration import PREPROCESSORS, load_calibration
from msla_deploy.runtime import classify_preprocess, processing
from msla_deploy.runtime.picture_files import load_rgb
from msla_deploy.tasks import CLASSIFICATION, SEGMENTATION

RES = 64
RED, GREEN = (220, 30, 30), (30, 200, 60)
runner = CliRunner()


def framed(height: int = 100, width: int = 400) -> np.ndarray:
    """A wide picture: a green middle (columns 130..270 of 400) between red sides."""
    pixels = np.empty((height, width, 3), np.uint8)
    pixels[:] = RED
    pixels[:, 130:270] = GREEN
    return pixels


def normalised(rgb) -> np.ndarray:
    return (np.asarray(rgb, np.float32) / 255 - np.array([0.485, 0.456, 0.406], np.float32)) / np.array(
        [0.229, 0.224, 0.225], np.float32
    )


def write_pictures(folder, count: int):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    for i in range(count):
        h, w = (int(v) for v in rng.integers(70, 160, 2))
        y, x = np.mgrid[0:h, 0:w] / np.array([h, w], np.float32)[:, None, None]
        picture = np.stack([0.5 + 0.4 * np.sin(6 * x + i), 0.3 + 0.5 * y, 0.6 - 0.4 * x * y], -1)
        picture += rng.normal(0, 0.05, picture.shape)
        Image.fromarray((np.clip(picture, 0, 1) * 255).astype(np.uint8)).save(folder / f"p{i}.png")
    return folder


def classifier_input(pixels: np.ndarray, height: int = RES, width: int = RES) -> np.ndarray:
    return classify_preprocess.preprocess(pixels, (height, width))[0]


def test_classifier_input_is_the_centre_crop():
    """The same wide picture: a classifier sees only its green middle, a segmenter all of it."""
    pixels = framed()
    cls_input = classifier_input(pixels)
    assert cls_input.shape == (3, RES, RES) and cls_input.dtype == np.float32
    np.testing.assert_allclose(
        cls_input.transpose(1, 2, 0), np.broadcast_to(normalised(GREEN), (RES, RES, 3)), atol=0.02
    )
    seg_input = processing.preprocess(pixels, (RES, RES))[0]
    assert np.isclose(seg_input.transpose(1, 2, 0), normalised(RED), atol=0.05).all(axis=2).any()


def test_float_pictures_are_cropped_like_uint8_ones():
    """A float RGB picture (a .npy calibration picture) keeps its colours: each plane is resized."""
    pixels = framed(90, 150)
    pixels[:, :, 2] = np.linspace(0, 255, 150).astype(np.uint8)  # something to resize
    from_uint8 = classifier_input(pixels)
    from_float = classifier_input(pixels.astype(np.float32) / 255)
    # Pillow rounds the uint8 resize to grey levels, the float one not: within a grey level
    assert np.abs(from_uint8 - from_float).max() < 1.5 / 255 / 0.224


def test_calibration_preprocessing_follows_the_task(tmp_path):
    from PIL import Image

    folder = tmp_path / "pictures"
    folder.mkdir()
    Image.fromarray(framed()).save(folder / "framed.png")
    np.save(folder / "framed16.npy", framed().astype(np.float32) / 255)
    cls = load_calibration(folder, RES, RES, count=2, method="max", task=CLASSIFICATION)
    seg = load_calibration(folder, RES, RES, count=2, method="max")  # no task: segmentation, as before
    for i, path in enumerate(cls.files):
        np.testing.assert_array_equal(cls.inputs[i], classifier_input(load_rgb(path)))
        np.testing.assert_array_equal(seg.inputs[i], processing.preprocess(load_rgb(path), (RES, RES), floats=True)[0])
    assert cls.to_dict()["preprocessing"] == classify_preprocess.PREPROCESSING
    assert seg.to_dict()["preprocessing"] == processing.PREPROCESSING
    assert set(PREPROCESSORS) == {SEGMENTATION, CLASSIFICATION, "sam"}  # SAM: tests/export/test_sam_int8.py


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """`export --model efficientvit-b0 --precision int8` through the CLI on six pictures."""
    root = tmp_path_factory.mktemp("int8cls")
    pictures = write_pictures(root / "pictures", 6)
    result = runner.invoke(
        app,
        [
            "export",
            "--model",
            "efficientvit-b0",
            "--res",
            str(RES),
            "--precision",
            "int8",
            "--calib-images",
            str(pictures),
            "--calib-count",
            "6",
            "--calib-method",
            "max",
            "--out",
            str(root / "export"),
            "--json",
        ],
    )
    # random weights: every reference picture may get the same near-tie class, whose top-1 int8
    # can flip (parity calls that agreement vacuous); the export is written either way
    assert result.exit_code in (0, 1), result.output
    return root, result


def test_int8_classifier_export(exported):
    root, result = exported
    data = json.loads(result.stdout)
    checks = data["parity"]["checks"]
    assert [c["label"] for c in checks][0] == "ONNX Runtime int8" and checks[0]["budget"][
        "min_argmax_agreement"
    ] == 0.98
    for check in checks:
        (logits,) = check["outputs"]
        assert logits["topk_overlap"] is not None and logits["cosine"] >= 0.99  # classification metrics, close
        assert all("top-1 agreement" in failure for failure in logits["failures"]), logits["failures"]
    manifest = read_manifest(root / "export")
    assert manifest.to_dict()["model"]["task"] == CLASSIFICATION
    info = manifest.precision.extra["int8"]
    assert info["qdq_check"] == {"passed": True, "problems": []}
    assert info["calibration"]["preprocessing"] == classify_preprocess.PREPROCESSING
    cores = {m: s for m, s in info["modules"].items() if m.endswith(".core")}
    assert len(cores) == 4 and set(cores.values()) == {"fp32"}  # b0: two LiteMLA blocks in stages 3 and 4
    assert info["modules"]["head.op_list.0"] == "int8"
    proto = onnx.load(str(root / "export" / ONNX_NAME))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta[META_INT8_MODULES]) == info["modules"]
    out = proto.graph.output
    assert [o.name for o in out] == ["logits"] and [d.dim_value for d in out[0].type.tensor_type.shape.dim] == [1, 1000]


def test_int8_classifier_head_is_not_taken_for_attention(exported):
    """The classifier's last Linear (a Gemm reading its int8 weight through a DequantizeLinear)
    is a weighted layer, not a product of two int8 activations."""
    root, result = exported
    assert "int8-attention" not in result.output
    inspected = runner.invoke(app, ["inspect", str(root / "export" / ONNX_NAME), "--json"])
    assert "int8-attention" not in inspected.stdout, inspected.stdout
