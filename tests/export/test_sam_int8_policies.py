"""SAM's int8 encoder policies (--int8-policy) and its --sensitivity sweep judged by the pair's masks.

The graph-level tests run on small hand-made graphs whose tensors carry the export's probe names
(the units are what an export's probes make of them); the decoder is the session's l0 export's."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from msla_deploy.artifact.names import (
    DECODER_ONNX_NAME,
    ENCODER_FP32_ONNX_NAME,
    ENCODER_ONNX_NAME,
    INT8_SENSITIVITY_NAME,
    INT8_SENSITIVITY_PLOT,
    META_INT8_POLICY,
    PROBE_PREFIX,
)
from msla_deploy.export import int8 as int8_q
from msla_deploy.export import sam_int8
from msla_deploy.export import sam_int8_sensitivity as sam_sweep
from tests.fixtures import one_error_line

STEM, FUSED, NECK_OUT = "backbone.stages.0.op_list.0", "backbone.stages.1.op_list.0", "neck.output_ops.0.op_list.0"
FAMILIES = {STEM: sam_int8.STEM, FUSED: sam_int8.FUSED_MBCONV, NECK_OUT: sam_int8.NECK_OUTPUT}


def tiny_encoder(side: int = 64, channels: int = 256) -> onnx.ModelProto:
    """image [1, 3, S, S] -> image_embeddings [1, C, S, S]: a stem conv, a residual block (conv + Add
    of the stem's output, whose Q/DQ pair the Add shares), the output projection."""
    rng = np.random.default_rng(0)

    def weight(name, *shape):
        return numpy_helper.from_array((rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))).astype("f4"), name)

    a, b, c = (PROBE_PREFIX + m for m in (STEM, FUSED, NECK_OUT))
    nodes = [
        helper.make_node("Conv", ["image", "w0"], [a], name="stem", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", [a], ["r0"], name="relu"),
        helper.make_node("Conv", ["r0", "w1"], ["c1"], name="block_conv"),
        helper.make_node("Add", ["c1", a], [b], name="block_add"),
        helper.make_node("Conv", [b, "w2"], [c], name="project"),
        helper.make_node("Identity", [c], ["image_embeddings"], name="out"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, side, side])],
        [helper.make_tensor_value_info("image_embeddings", TensorProto.FLOAT, [1, channels, side, side])],
        [weight("w0", 8, 3, 3, 3), weight("w1", 8, 8, 1, 1), weight("w2", channels, 8, 1, 1)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def pictures(folder, count=2):
    rng = np.random.default_rng(3)
    folder.mkdir()
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


@pytest.fixture()
def tiny(tmp_path):
    path = tmp_path / ENCODER_FP32_ONNX_NAME
    onnx.save(tiny_encoder(), str(path))
    feeds = [np.random.default_rng(i).standard_normal((1, 3, 64, 64)).astype("f4") for i in range(2)]
    return path, int8_q.calibrate(path, feeds, "max", tmp_path)


def test_policies_keep_the_blocks_they_name(sam_artifact):
    from msla_deploy.zoo.sam import build_sam

    units = int8_q.graph_units(onnx.load(str(sam_artifact / ENCODER_ONNX_NAME), load_external_data=False))
    families = sam_int8.block_families(build_sam("efficientvit-sam-l0").image_encoder)
    policies = ("all", "ends-float", "mbconv-float", "neck-float")
    kept = {p: sam_int8.plan(p, units, families).kept_float for p in policies}
    assert kept["all"] == [] and kept["ends-float"] == [STEM, NECK_OUT]
    # MBConvs: stage 3's five, stage 4's downsampling one and the four EfficientViT blocks' local ones
    assert kept["mbconv-float"] == [f"backbone.stages.3.op_list.{i}" for i in range(5)] + [
        f"backbone.stages.4.op_list.{i}" for i in range(5)
    ]
    assert len(kept["neck-float"]) == 8 and all(m.startswith("neck.") for m in kept["neck-float"])
    plan = sam_int8.plan("mbconv-float", units, families)
    assert plan.families["backbone.stages.4.op_list.1.context_module.main"] == sam_int8.ATTENTION_CONVS
    assert plan.families["backbone.stages.1.op_list.0"] == sam_int8.FUSED_MBCONV
    assert sam_int8.PolicyPlan.from_dict(plan.to_dict()) == plan  # the manifest's record round-trips


def test_a_sweep_variant_is_the_graph_quantize_writes_for_the_rest(tiny):
    path, calibration = tiny
    fp32 = onnx.load(str(path))
    units = int8_q.graph_units(fp32)
    assert [u.module for u in units] == [STEM, FUSED, NECK_OUT]
    full = int8_q.quantize(path, calibration, [u.module for u in units])
    feeds = calibration.batches
    for float_units in ([STEM], [FUSED, NECK_OUT], [NECK_OUT]):
        rest = [u.module for u in units if u.module not in float_units]
        expected = int8_q.quantize(path, calibration, rest).proto
        nodes = [n for u in units if u.module in float_units for n in u.quantizable]
        variant = int8_q.without_qdq(full.proto, fp32, full.quantized_nodes, nodes)
        assert sorted(n.op_type for n in variant.graph.node) == sorted(n.op_type for n in expected.graph.node)
        got, want = (int8_q.run_batches(g, feeds, "image_embeddings") for g in (variant, expected))
        assert np.array_equal(got, want), float_units
    # the stem float: its output's pair is gone (the Add read it), the block's conv input still quantized
    variant = int8_q.without_qdq(full.proto, fp32, full.quantized_nodes, ["stem"])
    readers = {n.name: list(n.input) for n in variant.graph.node}
    assert readers["stem"][1] == "w0" and readers["block_add"][1] == PROBE_PREFIX + STEM


@pytest.mark.slow  # about 20 s: the l0 decoder on every variant's embeddings
def test_sam_sensitivity_ranks_units_by_the_pair_masks_and_writes_its_record(tiny, tmp_path, sam_artifact):
    from msla_deploy.artifact.options import ExportOptions
    from msla_deploy.export.int8_stage import EncoderPolicy, load_int8_calibration, quantize_export
    from msla_deploy.progress import Steps

    path, _ = tiny
    staging = path.parent
    (staging / DECODER_ONNX_NAME).write_bytes((sam_artifact / DECODER_ONNX_NAME).read_bytes())
    options = ExportOptions(
        model="efficientvit-sam-l0",
        task="sam",
        resolution=(64, 64),
        precision="int8",
        calib_images=pictures(tmp_path / "calib", 1),
        calib_count=1,
        calib_method="max",
        sensitivity=True,
        int8_policy="ends-float",
    )
    steps = Steps()
    calib = load_int8_calibration(options, steps)
    policy = EncoderPolicy("ends-float", FAMILIES, staging / DECODER_ONNX_NAME)
    result = quantize_export(options, calib, staging, steps, fp32_name=ENCODER_FP32_ONNX_NAME, policy=policy)
    assert result.files == [INT8_SENSITIVITY_NAME, INT8_SENSITIVITY_PLOT]
    assert (staging / INT8_SENSITIVITY_PLOT).stat().st_size > 0
    table = sam_sweep.SamSensitivityTable.read(staging / INT8_SENSITIVITY_NAME)
    assert sorted(r.module for r in table.ranking) == [STEM, FUSED, NECK_OUT]
    assert [r.alone_mask_iou for r in table.ranking] == sorted(r.alone_mask_iou for r in table.ranking)
    assert all(0.0 <= r.alone_mask_iou <= 1.0 and r.cost == 1.0 - r.alone_mask_iou for r in table.ranking)
    assert table.policy_float == [STEM, NECK_OUT] and table.prompts_per_picture == 8
    # the policy's graph is the fused block alone in int8: the same masks as that row's
    fused = next(r for r in table.ranking if r.module == FUSED)
    assert table.policy_mask_iou == fused.alone_mask_iou and fused.family == sam_int8.FUSED_MBCONV
    record = result.record
    assert record["policy"]["name"] == "ends-float" and record["policy"]["kept_float"] == [STEM, NECK_OUT]
    assert record["quantized_modules"] == [FUSED] and record["sensitivity"]["file"] == INT8_SENSITIVITY_NAME
    meta = {p.key: p.value for p in result.graph.proto.metadata_props}
    assert json.loads(meta[META_INT8_POLICY]) == {"name": "ends-float", "kept_float": [STEM, NECK_OUT]}
    from msla_deploy.console import out
    from msla_deploy.export.command import _print_sensitivity

    with out.capture() as printed:  # the table export prints after a SAM --sensitivity
        _print_sensitivity(staging / INT8_SENSITIVITY_NAME)
    assert "int8 mask cost per encoder module" in printed.get() and "policy ends-float" in printed.get()
    rows = sam_sweep.table_rows(table)
    assert [r[-1] for r in rows if r[1] == FUSED] == [""] and {r[-1] for r in rows if r[1] != FUSED} == {"float"}


def test_picture_prompts_lie_on_the_content(tmp_path):
    image = np.zeros((3, 64, 64), dtype=np.float32)
    image[:, :32, :48] = 1.0  # a 4:3 picture padded below and right
    prompts = sam_sweep.picture_prompts(image)
    coords = prompts["point_coords"]
    assert coords.shape == (8, 2, 2)
    real = coords[prompts["point_labels"] != -1]
    assert real[:, 0].max() < 48 * 16 and real[:, 1].max() < 32 * 16 and real.min() > 0


def _export_args(tmp_path, *more):
    return ["export", "-m", "efficientvit-sam-l0", "--out", str(tmp_path / "out"), *more]


@pytest.mark.parametrize(
    "args, says",
    [
        (["-p", "int8", "--min-argmax-agreement", "0.9"], "--min-argmax-agreement counts labels"),
        (["--int8-policy", "neck-float"], "--int8-policy applies to int8 exports"),
    ],
)
def test_bad_policy_combinations_are_one_line(tmp_path, args, says):
    from typer.testing import CliRunner

    from msla_deploy.cli import app

    calib = ["--calib-images", str(pictures(tmp_path / "calib", 1))] if "int8" in args else []
    result = CliRunner().invoke(app, _export_args(tmp_path, *args, *calib))
    assert result.exit_code == 2 and says in one_error_line(result)
    assert not (tmp_path / "out").exists()


def test_a_policy_for_a_segmentation_export_is_one_line(tmp_path):
    from typer.testing import CliRunner

    from msla_deploy.cli import app

    calib = str(pictures(tmp_path / "calib", 1))
    args = ["export", "-m", "efficientvit-seg-b0-cityscapes", "--res", "64x128", "-p", "int8", "--calib-images", calib]
    result = CliRunner().invoke(app, [*args, "--int8-policy", "all", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "--int8-policy applies to SAM" in one_error_line(result)
    assert not (tmp_path / "out").exists()


def test_the_export_summary_names_the_policy_and_what_it_keeps_float():
    from msla_deploy.artifact.manifest import PrecisionRecord
    from msla_deploy.export.command import _precision_text

    int8 = {
        "calibration": {"count": 4, "method": "max"},
        "quantized_modules": [FUSED],
        "fp32_modules": [STEM, NECK_OUT, "backbone.stages.4.op_list.1.context_module.main.core"],
        "policy": {"name": "ends-float", "kept_float": [STEM, NECK_OUT]},
    }
    record = PrecisionRecord(precision="int8", onnx_files={"fp32": ENCODER_FP32_ONNX_NAME}, extra={"int8": int8})
    text = _precision_text(record)
    assert f"policy ends-float (2 block(s) float, {STEM}, {NECK_OUT}; 1 LiteMLA core(s))" in text
