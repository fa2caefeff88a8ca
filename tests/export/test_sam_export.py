"""Exporting EfficientViT-SAM: one artifact of two graphs, a reference bundle with prompts, parity
judged by the IoU of the binarised masks. The session's l0 export (tests/conftest.py sam_artifact,
seeded weights) is read here; tests/export/test_sam_upstream_parity.py holds it to upstream's numbers."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from msla_deploy.artifact.files import sha256_file
from msla_deploy.artifact.graphs import DECODER, ENCODER
from msla_deploy.artifact.manifest import read_manifest
from msla_deploy.artifact.names import (
    DECODER_ONNX_NAME,
    ENCODER_ONNX_NAME,
    META_GRAPH,
    META_HEAD,
    META_TASK,
    PARITY_NAME,
)
from msla_deploy.artifact.reference import read_reference
from msla_deploy.artifact.sam_io import BOX_LABELS, PAD_LABEL
from msla_deploy.cli import app
from msla_deploy.parity.budgets import default_budget
from tests.fixtures import one_error_line

runner = CliRunner()


def metadata(path):
    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def test_manifest_lists_both_graphs_with_their_io_and_profile(sam_artifact):
    manifest = read_manifest(sam_artifact)
    assert manifest.model.task == "sam" and manifest.options.head == "multimask"
    encoder, decoder = manifest.graph(ENCODER), manifest.graph(DECODER)
    assert (encoder.file, encoder.precision, encoder.fp32_file) == (ENCODER_ONNX_NAME, "fp32", None)
    assert [(t.name, t.shape) for t in encoder.inputs] == [("image", (1, 3, 512, 512))]
    assert [(t.name, t.shape) for t in encoder.outputs] == [("image_embeddings", (1, 256, 64, 64))]
    assert decoder.file == DECODER_ONNX_NAME and decoder.precision == "fp32"
    assert {d: p.to_list() for d, p in decoder.profile.items()} == {"prompts": [1, 16, 64], "points": [1, 3, 16]}
    assert decoder.shapes("max")["point_coords"] == (64, 16, 2)
    assert decoder.shapes("min")["mask_input"] == (1, 1, 256, 256)
    assert decoder.output("masks").shape == ("prompts", 4, 256, 256)  # SAM's four masks
    # the encoder's nodes a weakly typed fp16 build must pin: the attention islands and the LayerNorm2d
    ops = {n.name: n.op_type for n in onnx.load(str(sam_artifact / ENCODER_ONNX_NAME)).graph.node}
    pinned = [ops[n] for n in encoder.fp32_nodes]
    assert {"MatMul", "Div"} <= set(pinned)  # the LiteMLA cores' products and division
    assert pinned[-4:-2] == ["Sqrt", "Div"] and pinned[-1] == "Add"  # the neck's LayerNorm2d, to its affine
    for record in (encoder, decoder):
        entry = manifest.artifacts[record.file]
        assert entry["sha256"] == sha256_file(sam_artifact / record.file)
        meta = metadata(sam_artifact / record.file)
        assert meta[META_TASK] == "sam" and meta[META_GRAPH] == record.role
    assert metadata(sam_artifact / DECODER_ONNX_NAME)[META_HEAD] == "multimask"
    recorded = json.loads((sam_artifact / "manifest.json").read_text())["options"]
    assert (recorded["max_prompts"], recorded["max_points"]) == (64, 16)


def test_reference_bundle_holds_pictures_prompts_and_both_graphs_outputs(sam_artifact):
    bundle = read_reference(sam_artifact / "reference")
    shapes = {name: a.shape for name, a in {**bundle.inputs, **bundle.outputs}.items()}
    assert shapes == {
        "image": (2, 3, 512, 512),
        "point_coords": (2, 4, 3, 2),
        "point_labels": (2, 4, 3),
        "mask_input": (2, 4, 1, 256, 256),
        "has_mask_input": (2, 4),
        "image_embeddings": (2, 256, 64, 64),
        "masks": (2, 4, 4, 256, 256),
        "iou_predictions": (2, 4, 4),
    }
    labels = bundle.inputs["point_labels"]
    assert (labels[:, 0, :2] == BOX_LABELS).all() and (labels[:, 1] == [1, 0, PAD_LABEL]).all()
    # the refinement round: the prompt of the clicks again, with a mask from the first round
    has = bundle.inputs["has_mask_input"]
    assert (has[:, 3] == 1).all() and (has[:, :3] == 0).all()
    assert np.abs(bundle.inputs["mask_input"][:, 3]).max() > 1
    assert np.abs(bundle.outputs["masks"][:, 3] - bundle.outputs["masks"][:, 1]).max() > 0.1  # it counts
    # the pictures are padded below as SAM's transform pads a 4:3 picture
    assert not bundle.inputs["image"][:, :, 384:].any() and bundle.inputs["image"][:, :, :384].std() > 0.1
    masks = bundle.outputs["masks"] > 0
    assert 0.01 < masks.mean() < 0.99  # the seeded weights give masks with an inside and an outside


def test_parity_judges_embeddings_masks_and_the_pair(sam_artifact):
    parity = json.loads((sam_artifact / PARITY_NAME).read_text())
    assert parity["passed"] is True
    labels = [c["label"] for c in parity["checks"]]
    assert labels == [
        "pair: encoder fp32 -> decoder",
        "encoder fp32",
        "decoder (PyTorch's embeddings)",
        "decoder, 1 prompt of 1..64",
    ]
    pair = parity["checks"][0]
    outputs = {o["name"]: o for o in pair["outputs"]}
    assert outputs["masks"]["kind"] == "mask_logits" and outputs["masks"]["mask_iou"] >= 0.999
    assert outputs["masks"]["argmax_agreement"] is None  # four masks are not four classes
    assert outputs["iou_predictions"]["mask_iou"] is None
    assert pair["budget"]["min_mask_iou"] == default_budget("fp32", "sam").min_mask_iou == 0.999
    embeddings = parity["checks"][1]["outputs"][0]
    assert embeddings["name"] == "image_embeddings" and embeddings["relative_max_abs"] <= 1e-4


def test_mask_iou_fails_the_budget_where_masks_move():
    from msla_deploy.parity.metrics import compare_outputs

    rng = np.random.default_rng(0)
    ref = rng.normal(size=(2, 4, 64, 64)).astype(np.float32)
    moved = ref.copy()
    moved[:, :, :8] = -np.abs(moved[:, :, :8])  # an eighth of every mask cleared
    result = compare_outputs("masks", ref, moved, default_budget("fp16", "sam"), kind="mask_logits")
    assert 0.85 < result.mask_iou < 0.99 and result.mask_iou_min <= result.mask_iou
    assert any("mask IoU" in f for f in result.failures)
    same = compare_outputs("masks", ref, ref + 1e-7, default_budget("fp16", "sam"), kind="mask_logits")
    assert same.mask_iou == 1.0 and same.passed


@pytest.mark.parametrize(
    "args,expected",
    [
        (["--batch", "2"], "takes no --batch"),
        (["--res", "1024"], "encoder runs at 512x512"),
        (["--precision", "fp16", "--io-dtype", "fp16"], "--io-dtype"),
        (["--head", "probs"], "--head probs is not a sam head"),
        (["--max-points", "0"], "--max-points 0 is outside"),
        (["--upsample", "bilinear"], "resizes nothing"),
    ],
)
def test_bad_sam_options_are_one_line_before_any_model_is_built(tmp_path, args, expected):
    out = tmp_path / "out"
    result = runner.invoke(app, ["export", "--model", "efficientvit-sam-l0", "--out", str(out), *args])
    assert result.exit_code == 2, result.output
    assert expected in one_error_line(result)
    assert not out.exists()


def test_sam_options_are_refused_for_other_models(tmp_path):
    result = runner.invoke(app, ["export", "--model", "efficientvit-b0", "--max-prompts", "8", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "apply to SAM models" in one_error_line(result)
    factory = tmp_path / "m.py"
    factory.write_text("def build():\n    return None\n")
    result = runner.invoke(app, ["export", "--model", f"{factory}:build", "--task", "sam"])
    assert result.exit_code == 2 and "--task sam takes a zoo model" in one_error_line(result)


@pytest.mark.slow
def test_export_command_single_mask_decoder(tmp_path):
    """The command as a user runs it: a single-mask decoder with a smaller profile, the table of
    checks with the mask IoU, both graphs named."""
    out = tmp_path / "single"
    args = ["export", "-m", "efficientvit-sam-l0", "--head", "single", "--max-prompts", "4", "--max-points", "4"]
    result = runner.invoke(app, [*args, "--exporter", "torchscript", "--out", str(out), "--models-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "mask IoU" in result.output and "decoder.onnx (fp32, prompts 1..4, points 1..4)" in result.output
    decoder = read_manifest(out).graph(DECODER)
    assert decoder.output("masks").shape == ("prompts", 1, 256, 256)
    assert {d: p.to_list() for d, p in decoder.profile.items()} == {"prompts": [1, 4, 4], "points": [1, 3, 4]}
    labels = [c["label"] for c in json.loads((out / PARITY_NAME).read_text())["checks"]]
    assert "decoder, 1 prompt of 1..4" in labels
