"""The fp16 hazards of EfficientViT-SAM's image encoder, and `inspect` of a SAM artifact.

* The hand-written LayerNorm (LayerNorm2d: mean, centre, squares, mean, + eps, Sqrt, Div) is an
  fp16 hazard of its own: squares overflow above |x - mean| = 256 and eps 1e-6 is an fp16
  subnormal (efficientvit #113 / #142, TensorRT #3893). In l0's fp32 encoder built as upstream's
  recipes build it (fp16 flag, nothing pinned) the scan finds it and LiteMLA's eps 1e-15 (0 in
  fp16); the same graph with the export's fp32 nodes pinned passes.
* A SAM artifact is inspected graph by graph, one report with a section each (--json too); with
  --target-trt each section is the ONNX `build` parses for that version.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from msla_deploy.artifact.graphs import DECODER, ENCODER
from msla_deploy.artifact.manifest import read_manifest, write_manifest
from msla_deploy.cli import app
from msla_deploy.inspect import inspect_onnx, inspect_view, trt_support
from msla_deploy.inspect.model_view import view_of
from tests.fixtures import one_error_line
from tests.sam_artifacts import LAYER_NORM_NODES, real_graphs, tiny_encoder, write_sam_artifact

runner = CliRunner()
L0_LITEMLAS = 4  # l0's stage-4 LiteMLAs, each with its eps 1e-15 guard


def checks(report):
    return [f.check for f in report.errors]


@pytest.fixture(scope="module")
def l0_encoder():
    encoder, fp32_nodes, _ = real_graphs()
    return view_of(encoder), fp32_nodes


# --- the hazards in l0's encoder -----------------------------------------------------------------------


def test_unguarded_fp16_encoder_has_the_layernorm_and_eps_hazards(l0_encoder):
    view, _ = l0_encoder
    report = inspect_view(view, None, "fp16", False, pinned=())  # upstream's recipe: --fp16, nothing pinned
    assert report.info["precision"]["typing"] == "weak" and not report.passed
    norms = [f for f in report.errors if f.check == "layernorm-fp16"]
    assert len(norms) == 1  # the neck's final LayerNorm2d
    (norm,) = norms
    assert "overflows fp16" in norm.detail and "1e-06 is an fp16 subnormal" in norm.detail
    ops = {n.name: n.op_type for n in view.nodes}
    assert sorted(ops[n] for n in norm.nodes) == sorted(
        ["ReduceSum", "Mul", "Sub", "Mul", "ReduceSum", "Mul", "Add", "Sqrt", "Div"]
    )
    assert norm.module == "model.norm"
    eps = [f for f in report.errors if f.check == "eps-underflow"]
    assert len(eps) == L0_LITEMLAS and all("1e-15" in f.detail for f in eps)


def test_the_exports_pins_make_it_pass(l0_encoder):
    view, fp32_nodes = l0_encoder
    norm_nodes = {n.name for n in view.nodes if n.name.startswith("/model/norm/")}
    assert norm_nodes <= set(fp32_nodes)  # the LayerNorm2d is among the export's fp32 nodes
    report = inspect_view(view, trt_support.parse_target("10.3"), "fp16", False, pinned=fp32_nodes)
    assert report.passed, [(f.check, f.node) for f in report.errors]
    assert report.info["precision"]["pinned_fp32_nodes"] == sorted(fp32_nodes)
    # pinning the attention but not the norm: the LayerNorm alone is left
    partial = [n for n in fp32_nodes if n not in norm_nodes]
    assert checks(inspect_view(view, None, "fp16", False, pinned=partial)) == ["layernorm-fp16"]


def test_fp32_build_has_no_fp16_hazards(l0_encoder):
    view, _ = l0_encoder
    assert inspect_view(view, None, "fp32", False, pinned=()).passed


# --- the pattern, as upstream's export writes it -------------------------------------------------------


def test_upstreams_spelling_weak_strong_and_pinned():
    fp32, mixed = tiny_encoder(mixed=False), tiny_encoder(mixed=True)
    weak = inspect_onnx(fp32, precision="fp16")  # ReduceMean / Sub / Pow / ReduceMean / Add / Sqrt / Div
    assert checks(weak) == ["layernorm-fp16"] and weak.errors[0].nodes == LAYER_NORM_NODES[:7]
    assert inspect_view(view_of(fp32), None, "fp16", False, pinned=LAYER_NORM_NODES).passed
    assert inspect_onnx(mixed).passed  # strongly typed: the norm is an fp32 island
    assert checks(inspect_onnx(mixed, target="8.6")) == ["layernorm-fp16"]  # 8.6 has no strong typing


def test_a_sqrt_that_is_no_layernorm_is_left_alone():
    """RMS-like x / sqrt(mean(x^2) + eps) has no centring; Sqrt of an input is no norm at all."""
    f32 = TensorProto.FLOAT
    nodes = [
        helper.make_node("Pow", ["x", "two"], ["sq"], name="pow"),
        helper.make_node("ReduceMean", ["sq"], ["ms"], name="mean", axes=[1], keepdims=1),
        helper.make_node("Add", ["ms", "eps"], ["g"], name="add"),
        helper.make_node("Sqrt", ["g"], ["s"], name="sqrt"),
        helper.make_node("Div", ["x", "s"], ["y"], name="div"),
    ]
    inits = [
        numpy_helper.from_array(np.array(2.0, np.float32), "two"),
        numpy_helper.from_array(np.array(1e-3, np.float32), "eps"),
    ]
    graph = helper.make_graph(
        nodes,
        "rms",
        [helper.make_tensor_value_info("x", f32, [1, 8, 4, 4])],
        [helper.make_tensor_value_info("y", f32, [1, 8, 4, 4])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    assert "layernorm-fp16" not in [f.check for f in inspect_onnx(model, precision="fp16").findings]


# --- inspect ARTIFACT -----------------------------------------------------------------------------------


def inspect(*args):
    return runner.invoke(app, ["inspect", *map(str, args)])


@pytest.fixture(scope="module")
def tiny_fp16(tmp_path_factory):
    """An fp16 SAM artifact: the tiny encoder (mixed, and fp32 with the norm pinned) and l0's decoder."""
    _, _, decoder = real_graphs()
    return write_sam_artifact(
        tmp_path_factory.mktemp("inspect_sam") / "fp16",
        tiny_encoder(mixed=True),
        decoder,
        precision="fp16",
        fp32_encoder=tiny_encoder(mixed=False),
        fp32_nodes=LAYER_NORM_NODES,
    )


def sections(result):
    data = json.loads(result.stdout)
    return data, [(s["graph"], s["file"], s["info"]["precision"]["typing"]) for s in data["graphs"]]


def test_sections_without_a_target(tiny_fp16):
    result = inspect(tiny_fp16, "--json")
    assert result.exit_code == 0, result.output
    data, found = sections(result)
    assert data["passed"] and data["task"] == "sam"
    assert found == [
        (ENCODER, "encoder.onnx", "strong"),
        (ENCODER, "encoder_fp32.onnx", "weak"),  # the weakly typed build, the manifest's pins
        (DECODER, "decoder.onnx", "fp32"),
    ]
    assert data["graphs"][1]["info"]["precision"]["pinned_fp32_nodes"] == sorted(LAYER_NORM_NODES)
    # the decoder's dynamic prompts and points are what the manifest's profile covers: a note, no warning
    decoder = data["graphs"][2]
    assert not decoder["warnings"] and any("prompts 1..64 (opt 16)" in n for n in decoder["info"]["notes"])


@pytest.mark.parametrize(
    "version, expected",
    [
        ("8.6", ("encoder_fp32.onnx", "weak")),
        ("10.13", ("encoder.onnx", "strong")),
        ("11.4", ("encoder.onnx", "strong")),
    ],
)
def test_a_target_reads_what_build_parses(tiny_fp16, version, expected):
    result = inspect(tiny_fp16, "--target-trt", version, "--json")
    assert result.exit_code == 0, result.output
    _, found = sections(result)
    assert found == [(ENCODER, *expected), (DECODER, "decoder.onnx", "fp32")]


def test_an_unpinned_manifest_fails_on_the_layernorm(tiny_fp16, tmp_path):
    unguarded = tmp_path / "unguarded"
    shutil.copytree(tiny_fp16, unguarded)
    manifest = read_manifest(unguarded)
    manifest.graph(ENCODER).fp32_nodes = []
    write_manifest(unguarded, manifest)
    result = inspect(unguarded, "--target-trt", "8.6")
    assert result.exit_code == 1
    assert (
        "layernorm-fp16" in result.stdout and "FAIL" in result.stderr and "encoder (encoder_fp32.onnx)" in result.stderr
    )
    assert "encoder: encoder_fp32.onnx" in result.stdout and "decoder: decoder.onnx" in result.stdout


def test_a_missing_graph_file_is_one_line(tiny_fp16, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_fp16, broken)
    (broken / "decoder.onnx").unlink()
    result = inspect(broken)
    assert result.exit_code == 2 and "decoder.onnx is listed in the manifest but missing" in one_error_line(result)


def test_the_exported_artifact(sam_artifact):
    """The SAM export itself (fp32): both graphs pass; as an fp16 build with the manifest's pins too."""
    result = inspect(sam_artifact, "--json")
    assert result.exit_code == 0, result.output
    data, found = sections(result)
    assert found == [(ENCODER, "encoder.onnx", "fp32"), (DECODER, "decoder.onnx", "fp32")]
    weak = inspect(sam_artifact, "--precision", "fp16", "--target-trt", "10.3", "--json")
    assert weak.exit_code == 0, weak.output
    data, found = sections(weak)
    assert found[0] == (ENCODER, "encoder.onnx", "weak")
    pins = read_manifest(sam_artifact).graph(ENCODER).fp32_nodes
    assert pins and data["graphs"][0]["info"]["precision"]["pinned_fp32_nodes"] == sorted(pins)
    # onnx's own reader of the file agrees the norm is there to be pinned
    names = {n.name for n in onnx.load(str(sam_artifact / "encoder.onnx")).graph.node}
    assert {n for n in names if "/norm/" in n} & set(pins)
