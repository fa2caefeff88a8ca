"""`export --head labels|both`: the in-graph resize + argmax, its parity, validate and the preflight.

One small export (b0 at 64x128, random weights, both heads) is shared by the module.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper
from typer.testing import CliRunner

from msla_deploy import runtime
from msla_deploy.artifact.names import LABELS_NAME, OUTPUT_NAME
from msla_deploy.artifact.options import ExportOptions
from msla_deploy.artifact.reference import read_reference
from msla_deploy.cli import app
from msla_deploy.export.pipeline import run_export
from msla_deploy.inspect import inspect_onnx
from msla_deploy.nn.heads import GraphHead, with_head
from msla_deploy.parity.budgets import FP32
from msla_deploy.parity.metrics import compare_outputs

B0 = "efficientvit-seg-b0-cityscapes"
RES = (64, 128)
runner = CliRunner()


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def calibrated_b0_checkpoint(path: Path) -> Path:
    """Seeded random b0 weights whose BatchNorm statistics are measured on noise pictures.

    Fresh random weights predict one class on every pixel (the reference's dominant class share
    is 100%), which makes label agreement vacuous; calibrated statistics give varied labels with
    logits of ordinary size, so equal labels mean something."""
    from msla_deploy import zoo

    torch.manual_seed(0)
    model = zoo.build(B0)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # a plain average over the calibration batches
            module.reset_running_stats()
    model.train()
    with torch.no_grad():
        for _ in range(4):
            model(torch.randn(2, 3, *RES))
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def both(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("labels")
    out = root / "both"
    weights = calibrated_b0_checkpoint(root / "b0.pt")
    result = run_export(
        ExportOptions(model=B0, weights=weights, resolution=RES, out=out, models_dir=root / "no-models", head="both")
    )
    assert result.passed, result.parity
    return out


def run_onnx(path: Path, feeds):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))


def producers(model: onnx.ModelProto):
    return {o: n for n in model.graph.node for o in n.output}


def attrs(node: onnx.NodeProto):
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def test_graph_ends_in_resize_argmax_and_an_int32_cast(both):
    model = onnx.load(both / "model.onnx")
    outputs = {
        o.name: (o.type.tensor_type.elem_type, [d.dim_value for d in o.type.tensor_type.shape.dim])
        for o in model.graph.output
    }
    assert outputs == {OUTPUT_NAME: (TensorProto.FLOAT, [1, 19, 8, 16]), LABELS_NAME: (TensorProto.INT32, [1, *RES])}
    made = producers(model)
    cast = made[LABELS_NAME]
    assert cast.op_type == "Cast" and attrs(cast)["to"] == TensorProto.INT32
    argmax = made[cast.input[0]]
    assert argmax.op_type == "ArgMax" and attrs(argmax)["axis"] == 1 and attrs(argmax)["keepdims"] == 0
    resize = made[argmax.input[0]]
    a = attrs(resize)
    assert resize.op_type == "Resize" and a["mode"] == b"cubic" and a["cubic_coeff_a"] == -0.75
    assert (
        a["coordinate_transformation_mode"] in (b"half_pixel", b"pytorch_half_pixel")
        and a.get("exclude_outside", 0) == 0
    )
    # the labels are resized from the logits output itself: one model, two views of it
    assert resize.input[0] == OUTPUT_NAME
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["msla_deploy.output_names"] == "logits,labels" and meta["msla_deploy.head"] == "both"


def test_labels_head_equals_torch_upsample_and_argmax_on_the_reference_inputs(both):
    bundle = read_reference(both / "reference")
    assert set(bundle.outputs) == {OUTPUT_NAME, LABELS_NAME} and bundle.outputs[LABELS_NAME].dtype == np.int32
    # the reference labels are upstream's post-processing of the reference logits, computed here again
    logits = torch.from_numpy(bundle.outputs[OUTPUT_NAME])
    expected = F.interpolate(logits, size=RES, mode="bicubic", align_corners=False).argmax(dim=1).numpy()
    np.testing.assert_array_equal(bundle.outputs[LABELS_NAME], expected)
    assert np.bincount(expected.ravel()).max() < 0.9 * expected.size  # not one class everywhere
    outputs = run_onnx(both / "model.onnx", bundle.inputs)
    agreement = float((outputs[LABELS_NAME] == expected).mean())
    assert agreement >= 0.999, agreement
    # and the graph's labels are its own logits' labels (ONNX Runtime's cubic = torch's bicubic)
    own = (
        F.interpolate(torch.from_numpy(outputs[OUTPUT_NAME]), size=RES, mode="bicubic", align_corners=False)
        .argmax(dim=1)
        .numpy()
    )
    assert float((outputs[LABELS_NAME] == own).mean()) >= 0.999
    parity = json.loads((both / "parity.json").read_text())
    by_name = {o["name"]: o for o in parity["outputs"]}
    assert by_name[LABELS_NAME]["argmax_agreement"] == pytest.approx(agreement)
    assert by_name[LABELS_NAME]["max_abs"] is None and by_name[LABELS_NAME]["cosine"] is None


def test_logits_head_is_the_module_itself():
    module = torch.nn.Conv2d(3, 4, 1)
    assert with_head(module, "logits", RES, "cubic", None) is module
    assert with_head(module, "logits", RES, "cubic", "classification") is module
    wrapped = with_head(module, "both", (4, 6), "cubic", None)
    logits, labels = wrapped(torch.randn(2, 3, 2, 3))
    assert isinstance(wrapped, GraphHead) and labels.dtype == torch.int32 and labels.shape == (2, 4, 6)


def test_compare_label_maps_agreement_and_miou():
    ref = np.array([[[0, 0, 1, 1], [2, 2, 2, 2]]], np.int32)
    cand = np.array([[[0, 1, 1, 1], [2, 2, 2, 9]]], np.int32)  # one pixel moved, one out of range
    p = compare_outputs(LABELS_NAME, ref, cand, FP32)
    assert p.labels and p.argmax_agreement == pytest.approx(6 / 8)
    # class 0: 1/2; class 1: 2/3; class 2: 3/4 (the 9 counts as wrong, not as a new class)
    assert p.miou == pytest.approx(np.mean([1 / 2, 2 / 3, 3 / 4]))
    assert [c.name for c in FP32.checks(p)] == ["finite", "argmax_agreement"] and not p.passed
    same = compare_outputs(LABELS_NAME, ref, ref.copy(), FP32)
    assert same.passed and same.miou == 1.0 and same.to_dict()["relative_max_abs"] is None


def test_validate_judges_labels_by_agreement_and_fails_on_changed_labels(both, tmp_path):
    result = cli("validate", both, "--report-dir", tmp_path / "ok", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    labels = next(o for o in report["outputs"] if o["name"] == LABELS_NAME)
    assert [c["name"] for c in labels["checks"]] == ["finite", "argmax_agreement"]
    # the PyTorch rebuild (runtime's torch backend) runs the export's head: the reference exactly
    bundle = read_reference(both / "reference")
    with runtime.open(both, "torch") as session:
        rebuilt = session.run(bundle.inputs)
    assert rebuilt[LABELS_NAME].dtype == np.int32
    np.testing.assert_array_equal(rebuilt[LABELS_NAME], bundle.outputs[LABELS_NAME])
    # a reference whose labels moved in 10% of the pixels: validate must fail on agreement
    broken = tmp_path / "broken"
    shutil.copytree(both, broken, ignore=shutil.ignore_patterns("validation*"))
    with np.load(broken / "reference" / "outputs.npz") as f:
        outputs = {k: f[k] for k in f.files}
    flat = outputs[LABELS_NAME].reshape(-1)
    flat[: flat.size // 10] = (flat[: flat.size // 10] + 1) % 19
    np.savez(broken / "reference" / "outputs.npz", **outputs)
    result = cli("validate", broken, "--report-dir", tmp_path / "bad", "--json", "--allow-modified")
    assert result.exit_code == 1
    labels = next(o for o in json.loads(result.stdout)["outputs"] if o["name"] == LABELS_NAME)
    assert labels["argmax_agreement"] <= 0.91 and any("argmax agreement" in f for f in labels["failures"])


def test_bench_runs_a_labels_artifact(both):
    result = cli("bench", both, "--json")
    assert result.exit_code == 0, result.output


def test_bad_head_is_bad_input(tmp_path):
    result = cli("export", "-m", B0, "-r", "64x128", "--head", "mask", "-o", tmp_path / "x")
    assert result.exit_code == 2 and "'--head': 'mask' is not one of" in result.stderr
    assert not (tmp_path / "x").exists()


# --- preflight ------------------------------------------------------------------------------------
def _argmax_model(in_type=TensorProto.FLOAT, cast_to=None):
    x = helper.make_tensor_value_info("x", in_type, [1, 19, 8, 8])
    nodes = [helper.make_node("ArgMax", ["x"], ["idx"], axis=1, keepdims=0, name="argmax")]
    out_type, out_name = TensorProto.INT64, "idx"
    if cast_to is not None:
        nodes.append(helper.make_node("Cast", ["idx"], ["labels"], to=cast_to, name="cast"))
        out_type, out_name = cast_to, "labels"
    y = helper.make_tensor_value_info(out_name, out_type, [1, 8, 8])
    graph = helper.make_graph(nodes, "g", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_preflight_knows_argmax_per_version():
    cast = _argmax_model(cast_to=TensorProto.INT32)
    for target, indices in (("8.5", "INT32"), ("8.6", "INT32"), ("10.3", "INT64"), ("11", "INT64")):
        report = inspect_onnx(cast, target=target)
        assert report.passed and not report.findings, (target, report.findings)
        assert any(f"TopK (k=1) with {indices} indices" in n for n in report.info["notes"])
    # an uncast INT64 ArgMax output: a binding consumers do not expect (10.x), narrowed on 8.x
    assert [f.check for f in inspect_onnx(_argmax_model(), target="10.3").warnings] == ["int64"]
    assert [f.check for f in inspect_onnx(_argmax_model(), target="8.6").warnings] == ["int64"]
    # integer inputs: 8.5 takes FP32/FP16 only, 8.6 adds INT32
    ints = _argmax_model(in_type=TensorProto.INT32, cast_to=TensorProto.INT32)
    assert [f.check for f in inspect_onnx(ints, target="8.5").errors] == ["dtype"]
    assert inspect_onnx(ints, target="8.6").passed
    # a uint8 label map: 8.5 casts to UINT8 only from floats
    u8 = _argmax_model(cast_to=TensorProto.UINT8)
    assert [f.check for f in inspect_onnx(u8, target="8.5").errors] == ["dtype"]
    assert inspect_onnx(u8, target="8.6").passed


def test_preflight_of_the_exported_labels_graph(both):
    old = inspect_onnx(str(both / "model.onnx"), target="8.5")
    assert old.passed and {f.check for f in old.warnings} == {"op-attribute"}  # cubic Resize on 8.5, as for logits
    assert inspect_onnx(str(both / "model.onnx"), target="10.3").passed


@pytest.mark.slow
def test_fp16_export_keeps_the_resize_in_the_logits_dtype(tmp_path):
    out = tmp_path / "fp16"
    result = run_export(
        ExportOptions(
            model=B0,
            resolution=RES,
            out=out,
            models_dir=tmp_path / "none",
            head="labels",
            precision="fp16",
            io_dtype="fp16",
        )
    )
    assert result.passed, result.parity
    for name, dtype in (("model.onnx", TensorProto.FLOAT16), ("model_fp32.onnx", TensorProto.FLOAT)):
        model = onnx.shape_inference.infer_shapes(onnx.load(out / name))
        types = {v.name: v.type.tensor_type.elem_type for v in list(model.graph.value_info) + list(model.graph.output)}
        made = producers(model)
        resize = made[made[made[LABELS_NAME].input[0]].input[0]]
        assert resize.op_type == "Resize" and types[resize.input[0]] == dtype == types[resize.output[0]], name
        assert [o.name for o in model.graph.output] == [LABELS_NAME] and types[LABELS_NAME] == TensorProto.INT32
    labels = [o for c in result.parity.to_dict()["checks"] for o in c["outputs"]]
    assert {o["name"] for o in labels} == {LABELS_NAME} and all(o["argmax_agreement"] >= 0.995 for o in labels)


def test_a_labels_only_export_is_refused_by_evaluate_with_the_fix(tmp_path):
    """Upstream's protocol upsamples logits to each label's size: a labels-only graph cannot be
    scored that way, so evaluate says so (exit 2) instead of failing inside (reviewer's finding)."""
    from msla_deploy.evaluate.synthetic import write_dataset

    out = tmp_path / "labels-only"
    result = cli(
        "export", "--model", B0, "--res", "64x128", "--head", "labels", "--out", out, "--models-dir", tmp_path / "none"
    )
    assert result.exit_code == 0, result.output
    write_dataset(tmp_path / "ds", "folder", 2, (64, 128), 19)
    result = cli("evaluate", out, "--data", tmp_path / "ds", "--dataset", "folder", "--backend", "ort-cpu")
    assert result.exit_code == 2, result.output
    assert "--head logits or --head both" in result.stderr and "Traceback" not in result.output


def test_the_default_folder_of_a_labels_export_is_not_the_logits_one():
    from msla_deploy.artifact.options import ExportOptions

    plain = ExportOptions(model=B0, resolution=(64, 128)).output_dir()
    assert ExportOptions(model=B0, resolution=(64, 128), head="labels").output_dir() == plain.with_name(
        plain.name + "-labels"
    )
