"""int8 SAM encoder: the Q/DQ graph of encoder_fp32.onnx, calibrated on pictures as SAM's transform
sees them (longest side to S, padded), the LiteMLA cores and the neck's LayerNorm2d left in float,
its mask IoU reported in parity.json (validate --min-mask-iou gates). Policies and --sensitivity:
test_sam_int8_policies.py."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from PIL import Image

from msla_deploy.artifact.graphs import ENCODER
from msla_deploy.artifact.manifest import read_manifest
from msla_deploy.artifact.names import ENCODER_FP32_ONNX_NAME, ENCODER_ONNX_NAME, PARITY_NAME
from msla_deploy.export.calibration import PREPROCESSORS
from msla_deploy.export.sam_int8 import DEFAULT_POLICY
from msla_deploy.runtime import sam_transforms
from tests.fixtures import export_sam


def write_pictures(folder, count=3, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir()
    for i in range(count):
        height, width = (int(v) for v in rng.integers(200, 420, 2))
        coarse = Image.fromarray(rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)).resize((width, height))
        Image.fromarray(np.asarray(coarse)).save(folder / f"{i}.png")
    return folder


def test_calibration_pictures_are_seen_as_the_encoder_sees_them(tmp_path):
    picture = np.random.default_rng(1).integers(0, 256, (300, 450, 3), dtype=np.uint8)
    seen = PREPROCESSORS["sam"].run(picture, 512, 512)
    assert seen.shape == (3, 512, 512) and (seen == sam_transforms.encoder_input(picture, 512)[0]).all()
    assert not seen[:, 342:].any()  # 300 x 450 -> 341.3 x 512, padded below
    sixteen = PREPROCESSORS["sam"].run(picture.astype(np.float32) / 255.0, 512, 512)  # a 16-bit picture's floats
    assert np.abs(sixteen - seen).max() == 0


@pytest.mark.slow
def test_int8_encoder_quantizes_blocks_and_keeps_attention_and_layernorm_float(tmp_path):
    pictures = write_pictures(tmp_path / "calib")
    directory = export_sam(tmp_path, precision="int8", calib_images=pictures, calib_count=3)
    manifest = read_manifest(directory)
    encoder = manifest.graph(ENCODER)
    assert (encoder.precision, encoder.fp32_file) == ("int8", ENCODER_FP32_ONNX_NAME)
    int8 = manifest.precision.extra["int8"]
    assert int8["calibration"]["count"] == 3 and int8["qdq_check"]["passed"]
    kept = int8["policy"]["kept_float"]  # the policy's blocks, besides the LiteMLA cores
    assert any(m.endswith(".core") for m in int8["fp32_modules"])
    assert all(m.endswith(".core") or m in kept for m in int8["fp32_modules"])
    # the default policy (mbconv-float): recorded in the options, the int8 record and the graph's metadata
    assert manifest.options.int8_policy == DEFAULT_POLICY == "mbconv-float" and int8["policy"]["name"] == DEFAULT_POLICY
    families = int8["policy"]["families"]
    assert families["neck.middle.op_list.0"] == "fused-mbconv"
    assert int8["policy"]["kept_float"] and all(families[m] == "mbconv" for m in int8["policy"]["kept_float"])
    from msla_deploy.inspect import inspect_onnx

    report = inspect_onnx(str(directory / ENCODER_ONNX_NAME))
    assert report.info["int8"]["policy"] == {"name": DEFAULT_POLICY, "kept_float": int8["policy"]["kept_float"]}
    graph = onnx.load(str(directory / ENCODER_ONNX_NAME))
    producer = {o: n for n in graph.graph.node for o in n.output}
    nodes = {n.name: n for n in graph.graph.node}
    assert sum(n.op_type == "QuantizeLinear" for n in graph.graph.node) > 20
    # the LayerNorm2d (the graph's last nodes, pinned): no input of its arithmetic is dequantized
    norm = [nodes[name] for name in encoder.fp32_nodes if nodes[name].op_type in ("Sqrt", "Div")][-2:]
    assert len(norm) == 2
    for node in norm:
        assert all(producer[i].op_type != "DequantizeLinear" for i in node.input if i in producer)
    parity = json.loads((directory / PARITY_NAME).read_text())
    pair = {o["name"]: o for o in parity["checks"][0]["outputs"]}
    assert parity["checks"][0]["label"] == "pair: encoder int8 -> decoder"
    assert 0.5 < pair["masks"]["mask_iou"] <= 1.0 and pair["masks"]["nan_count"] == 0  # reported
    assert parity["passed"] and parity["checks"][0]["budget"]["min_mask_iou"] is None
