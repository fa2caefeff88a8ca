"""int8: Q/DQ graphs from the fp32 export, calibrated on pictures, with the LiteMLA core in fp32."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from msla_deploy.artifact.manifest import read_manifest
from msla_deploy.artifact.names import FP32_ONNX_NAME, META_FP32_NODES, META_INT8_MODULES, META_PRECISION, ONNX_NAME
from msla_deploy.artifact.options import DEFAULT_CALIB_METHOD, ExportOptions
from msla_deploy.cli import app
from msla_deploy.errors import BadInput
from msla_deploy.export import int8
from msla_deploy.export.calibration import find_pictures, load_calibration, spread
from msla_deploy.export.int8_sensitivity import agreement, render, sweep
from msla_deploy.export.pipeline import run_export

B0 = "efficientvit-seg-b0-cityscapes"
H, W = 128, 256


def scene(seed: int, height: int = 96, width: int = 200) -> np.ndarray:
    """A procedural street-like picture: sky gradient, a road band, coloured boxes, texture noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / np.array([height, width], np.float32)[:, None, None]
    img = np.stack([0.4 + 0.3 * y, 0.5 + 0.2 * y, 0.9 - 0.3 * y], -1)
    img[y > 0.6] = (0.35, 0.33, 0.35)
    for _ in range(4):
        r0, c0 = rng.uniform(0.2, 0.7), rng.uniform(0, 0.9)
        box = (y > r0) & (y < r0 + 0.3) & (x > c0) & (x < c0 + 0.15)
        img[box] = rng.uniform(0, 1, 3)
    img += 0.05 * np.sin(40 * x * rng.uniform(0.5, 2))[..., None] + rng.normal(0, 0.02, img.shape)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def write_pictures(folder, count: int, start: int = 0):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + count):
        if i % 2:
            np.save(folder / f"scene_{i:03d}.npy", scene(i))
        else:
            Image.fromarray(scene(i)).save(folder / f"scene_{i:03d}.png")
    return folder


def fp32_export(root, stress: bool):
    options = ExportOptions(
        model=B0, resolution=(H, W), out=root / ("stress" if stress else "seeded"), stress_weights=stress
    )
    return run_export(options).directory / "model.onnx"


runner = CliRunner()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """`export --precision int8` through the CLI, seeded weights, 8 procedural pictures."""
    root = tmp_path_factory.mktemp("int8")
    pictures = write_pictures(root / "pictures", 8)
    result = runner.invoke(
        app,
        [
            "export",
            "-m",
            B0,
            "--res",
            f"{H}x{W}",
            "--precision",
            "int8",
            "--calib-images",
            str(pictures),
            "--calib-count",
            "8",
            "--out",
            str(root / "export"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    return root, pictures, json.loads(result.stdout)


@pytest.fixture(scope="module")
def seeded(exported):
    root, pictures, _ = exported
    calib = load_calibration(pictures, H, W, count=8, method="max")
    fp32 = root / "export" / FP32_ONNX_NAME
    calibration = int8.calibrate(fp32, calib.batches(1), "max", root)
    return fp32, calibration, calib


def test_int8_export_directory(exported):
    root, pictures, data = exported
    directory = root / "export"
    assert data["passed"]
    manifest = read_manifest(directory)
    record = manifest.precision
    assert record.precision == "int8" and record.onnx_files == {"fp32": FP32_ONNX_NAME, "int8": ONNX_NAME}
    info = record.extra["int8"]
    assert info["qdq_check"] == {"passed": True, "problems": []}
    # the CLI's default
    assert info["calibration"]["count"] == 8 and info["calibration"]["method"] == DEFAULT_CALIB_METHOD == "percentile"
    proto = onnx.load(str(directory / ONNX_NAME))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta[META_PRECISION] == "int8" and json.loads(meta[META_INT8_MODULES]) == info["modules"]
    assert all(state == "fp32" for module, state in info["modules"].items() if module.endswith(".core"))
    fp32_meta = {p.key: p.value for p in onnx.load(str(directory / FP32_ONNX_NAME)).metadata_props}
    assert fp32_meta[META_PRECISION] == "fp32"
    assert sum(n.op_type == "QuantizeLinear" for n in proto.graph.node) > 20
    labels = [c["label"] for c in data["parity"]["checks"]]
    assert labels[0] == "ONNX Runtime int8" and "ONNX Runtime fp32" in labels
    int8_check = data["parity"]["checks"][0]
    assert int8_check["budget"]["min_argmax_agreement"] == 0.98 and int8_check["outputs"][0]["miou"] is not None
    assert set(manifest.artifacts) >= {ONNX_NAME, FP32_ONNX_NAME}


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--precision", "int8"], "needs calibration pictures"),
        (["--precision", "int8", "--calib-images", "EMPTY"], "no .png, .jpg or .npy pictures"),
        (["--sensitivity"], "--sensitivity applies to int8 exports"),
        (
            ["--precision", "int8", "--calib-images", "EMPTY", "--calib-method", "kl"],
            "'--calib-method': 'kl' is not one of",
        ),
        (["--precision", "int8", "--calib-images", "EMPTY", "--min-argmax-agreement", "99"], "not a fraction"),
    ],
)
def test_bad_int8_options_exit_2_with_one_line(tmp_path, args, needle):
    (tmp_path / "empty").mkdir()
    args = [str(tmp_path / "empty") if a == "EMPTY" else a for a in args]
    result = runner.invoke(app, ["export", "-m", B0, "--res", f"{H}x{W}", "--out", str(tmp_path / "out"), *args])
    assert result.exit_code == 2, result.output
    assert needle in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "out").exists()


def test_int8_options_round_trip_through_the_manifest(tmp_path):
    options = ExportOptions(
        model=B0,
        precision="int8",
        calib_images=tmp_path,
        calib_count=12,
        calib_method="entropy",
        sensitivity=True,
        min_argmax_agreement=0.99,
    )
    again = ExportOptions.from_dict(json.loads(json.dumps(options.to_dict())))
    assert again == dataclasses.replace(options, out=options.output_dir())


# --- calibration pictures -----------------------------------------------------------------------
def test_dataset_roots_walk_pictures_not_labels(tmp_path):
    city = tmp_path / "cityscapes"
    write_pictures(city / "leftImg8bit" / "val" / "frankfurt", 3)
    labels = city / "gtFine" / "val" / "frankfurt"
    labels.mkdir(parents=True)
    np.save(labels / "x_gtFine_labelIds.npy", np.zeros((8, 8), np.uint8))
    found = find_pictures(city)
    assert len(found) == 3 and all("leftImg8bit" in str(p) for p in found)
    ade = tmp_path / "ade"
    write_pictures(ade / "images" / "validation", 2)
    (ade / "annotations" / "validation").mkdir(parents=True)
    assert [p.parent.name for p in find_pictures(ade)] == ["validation"] * 2
    assert spread(list(range(10)), 3) == [0, 4, 9]  # first, middle, last: every folder represented


def test_calibration_preprocessed_like_the_reference_inputs(tmp_path):
    from msla_deploy.runtime.picture_files import load_rgb, preprocess

    folder = write_pictures(tmp_path / "p", 3)
    calib = load_calibration(folder, H, W, count=3, method="max")
    assert calib.inputs.shape == (3, 3, H, W) and calib.inputs.dtype == np.float32
    np.testing.assert_array_equal(calib.inputs[1], preprocess(load_rgb(calib.files[1]), H, W))
    assert (
        len(calib.warnings) == 1 and "only 3 calibration picture(s)" in calib.warnings[0] and "16" in calib.warnings[0]
    )
    assert [b.shape[0] for b in calib.batches(2)] == [2]  # whole batches of a static-batch model


@pytest.mark.parametrize("case", ["missing", "empty", "unreadable", "label_map", "wrong_shape"])
def test_bad_calibration_input_is_one_line(tmp_path, case):
    folder = tmp_path / "calib"
    if case != "missing":
        folder.mkdir()
    if case == "unreadable":
        (folder / "broken.png").write_bytes(b"not a png at all")
    elif case == "label_map":  # label maps are left out by their folder (a grey photo elsewhere is calibrated on)
        from PIL import Image

        (folder / "gtFine").mkdir()
        Image.fromarray(np.zeros((16, 16), np.uint8), mode="L").save(folder / "gtFine" / "labels.png")
    elif case == "wrong_shape":
        np.save(folder / "x.npy", np.zeros((4, 4, 7), np.uint8))
    with pytest.raises(BadInput) as info:
        load_calibration(folder, H, W, count=4)
    message = str(info.value)
    assert "\n" not in message and (str(folder) in message or "calib" in message)


# --- the Q/DQ graph ---------------------------------------------------------------------------------
def test_qdq_graph_is_what_tensorrt_consumes(seeded):
    fp32_path, calibration, calib = seeded
    fp32 = onnx.load(str(fp32_path))
    graph = int8.quantize(fp32_path, calibration)
    proto = graph.proto
    onnx.checker.check_model(proto)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta[META_PRECISION] == "int8"
    island = meta[META_FP32_NODES].split(",")
    fp32_meta = {p.key: p.value for p in fp32.metadata_props}
    assert island == fp32_meta[META_FP32_NODES].split(",")  # exactly the export's fp32 island
    modules = json.loads(meta[META_INT8_MODULES])
    cores = [m for m in modules if m.endswith(".core")]
    assert len(cores) == 4 and all(modules[m] == "fp32" for m in cores)
    assert sum(p == "int8" for p in modules.values()) >= 20 and "head.middle.op_list.0" in modules

    # every Q/DQ symmetric int8, weights per output channel, activations per tensor (checked
    # here directly, independently of int8.check_qdq, which must agree)
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in proto.graph.initializer}
    qdq = [n for n in proto.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert len(qdq) > 50
    weights = 0
    for node in qdq:
        zero = inits[node.input[2]]
        assert zero.dtype == np.int8 and not zero.any(), node.name
        if node.input[0] in inits:  # a weight
            weights += 1
            axis = {a.name: a.i for a in node.attribute}.get("axis", 1)
            assert axis == 0 and inits[node.input[1]].shape == (inits[node.input[0]].shape[0],), node.name
        else:
            assert inits[node.input[1]].size == 1, node.name
    convs = [n for n in proto.graph.node if n.op_type == "Conv"]
    assert weights == len(convs)  # every conv's weight quantized
    assert int8.check_qdq(proto, island) == []

    # no Q/DQ inside or around the attention core: the island's nodes read no DQ, feed no Q
    producer = {o: n for n in proto.graph.node for o in n.output}
    consumers = {}
    for n in proto.graph.node:
        for t in n.input:
            consumers.setdefault(t, []).append(n)
    by_name = {n.name: n for n in proto.graph.node}
    for name in island:
        node = by_name[name]
        assert all(producer[t].op_type != "DequantizeLinear" for t in node.input if t in producer), name
        assert all(
            c.op_type != "QuantizeLinear" for t in node.output for c in consumers.get(t, []) if c.name in island
        ), name
    # residual adds: conv branch unquantized, the skip input through a DQ (TensorRT's conv+add fusion)
    residual = [r for r in int8.residual_adds(proto) if r["other_side"] != "Resize"]
    assert len(residual) >= 10 and all(r["other_side"] == "DequantizeLinear" for r in residual)


def test_check_qdq_catches_asymmetric_and_per_tensor_weights(seeded):
    fp32_path, calibration, _ = seeded
    proto = int8.quantize(fp32_path, calibration).proto
    inits = {i.name: i for i in proto.graph.initializer}
    act = next(n for n in proto.graph.node if n.op_type == "QuantizeLinear")
    zp = inits[act.input[2]]
    zp.CopyFrom(onnx.numpy_helper.from_array(np.array(3, np.int8), zp.name))
    problems = int8.check_qdq(proto)
    assert any("not int8 0" in p for p in problems)


def test_int8_runs_in_onnxruntime_within_its_budget(seeded):
    from msla_deploy.parity import compare_outputs, default_budget

    fp32_path, calibration, calib = seeded
    graph = int8.quantize(fp32_path, calibration)
    fp32 = onnx.load(str(fp32_path))
    held_out = load_calibration(
        write_pictures(fp32_path.parent.parent / "held_out", 4, start=100), H, W, count=4
    ).batches(1)
    ref = int8.run_batches(fp32, held_out)
    out = int8.run_batches(graph.proto, held_out)
    budget = default_budget("int8")
    result = compare_outputs("logits", ref, out, budget)
    assert result.passed, result.failures
    assert result.nan_count == 0 and result.argmax_agreement >= budget.min_argmax_agreement
    assert not np.array_equal(ref, out)  # really quantized: not the fp32 numbers


def test_sensitivity_ranks_by_labels_changed_not_by_cosine(monkeypatch, tmp_path):
    """Fast, with hand-made logits in place of ONNX Runtime: unit "flips" changes the label of half
    the pixels with a small nudge (cosine stays high); unit "moves" shifts the logits far
    (cosine drops) without changing one label. Ranked by labels changed, "flips" is the costlier
    and the only one kept in fp32 for a 90% target; ranked by cosine it would be "moves"."""
    from types import SimpleNamespace

    from msla_deploy.export import int8_sensitivity as sens
    from msla_deploy.parity.metrics import cosine_similarity

    reference = np.zeros((1, 2, 4, 4), np.float32)
    reference[:, 0], reference[:, 1] = 1.0, 0.9  # class 0 everywhere, by a margin of 0.1
    half = np.zeros((4, 4), bool)
    half[:2] = True  # the 8 pixels "flips" nudges; "moves" acts on the other 8

    def logits(quantized) -> np.ndarray:
        out = reference.copy()
        if "flips" in quantized:
            out[:, 1][:, half] += 0.2  # class 1 wins there now
        if "moves" in quantized:
            out[:, 0][:, ~half] += 5.0  # class 0 wins by more: no label changes
        return out

    units = [SimpleNamespace(module=m, kind="block", quantizable=["conv"]) for m in ("moves", "flips", "still")]
    monkeypatch.setattr(sens, "onnx", SimpleNamespace(load=lambda path: "fp32"))
    monkeypatch.setattr(sens, "graph_units", lambda model: units)
    monkeypatch.setattr(sens, "quantize", lambda path, calibration, quantized: SimpleNamespace(proto=tuple(quantized)))
    monkeypatch.setattr(sens, "run_batches", lambda model, batches: reference if model == "fp32" else logits(model))
    calibration = int8.Calibration("max", 1, tmp_path / "cache", [np.zeros((1, 3, 4, 4), np.float32)])

    result = sweep(tmp_path / "model.onnx", calibration, min_agreement=0.9)
    rows = {r.module: r for r in result.rows}
    assert (rows["flips"].alone, rows["moves"].alone, rows["still"].alone) == (0.5, 1.0, 1.0)
    assert rows["moves"].alone_cosine < rows["flips"].alone_cosine < 1.0  # cosine alone would rank "moves" first
    assert rows["flips"].alone_cosine == pytest.approx(cosine_similarity(reference, logits(["flips"])))
    assert [r.module for r in result.rows] == ["flips", "moves", "still"]  # labels first; ties by cosine
    assert rows["flips"].cost == 0.5 and rows["flips"].all_but == 1.0 and rows["moves"].all_but == 0.5
    assert result.all_int8 == 0.5 and result.keep_fp32 == ["flips"] and result.achieved == 1.0 and result.met


@pytest.mark.slow
def test_sensitivity_ranks_a_quantized_attention_core_first(tmp_path):
    """On stress weights, with the LiteMLA cores allowed into int8, a core is the costliest unit,
    and a 99.9% budget is met by keeping cores, not convs, in fp32."""
    pictures = write_pictures(tmp_path / "pictures", 4)
    calib = load_calibration(pictures, H, W, count=4, method="max")
    fp32_path = fp32_export(tmp_path, stress=True)
    calibration = int8.calibrate(fp32_path, calib.batches(1), "max", tmp_path)
    result = sweep(fp32_path, calibration, include_attention=True, min_agreement=0.999)
    first = result.rows[0]
    assert first.kind == "attention" and first.module.endswith(".core"), [
        dataclasses.asdict(r) for r in result.rows[:3]
    ]
    blocks = [r for r in result.rows if r.kind == "block"]
    assert first.cost > max(r.cost for r in blocks)
    assert result.met and result.keep_fp32 and all(m.endswith(".core") for m in result.keep_fp32)
    # agreement() is the fraction of equal labels, checked on a hand-made case
    ref = np.zeros((1, 2, 2, 2))
    ref[0, 1, 0, 0] = 1
    assert agreement(ref, np.zeros((1, 2, 2, 2))) == 0.75
    picture = render(result)
    assert picture.ndim == 3 and picture.shape[0] > 20 * len(result.rows)


@pytest.mark.parametrize(
    "version, typing, flags",
    [
        (
            "8.6",
            "weak",
            ["--int8", "--fp16", "--precisionConstraints=obey"],
        ),  # JetPack 6.0: explicit quantization, weak
        ("10.3", "strong", ["--stronglyTyped"]),  # JetPack 6.1: strongly typed Q/DQ
        ("11.4", "strong", []),  # every network strongly typed; no precision flag exists
    ],
)
def test_build_plans_an_int8_export_per_tensorrt_version(exported, version, typing, flags):
    from msla_deploy.trt.inputs import load_model_input
    from msla_deploy.trt.options import BuildOptions
    from msla_deploy.trt.plan import make_plan
    from msla_deploy.trt.trtexec import trtexec_argv
    from msla_deploy.trt.versions import parse_version

    directory = exported[0] / "export"
    model = load_model_input(directory)
    assert model.export_precision == "int8"
    plan = make_plan(BuildOptions(source=directory), model, parse_version(version))  # precision from the export
    assert (plan.precision, plan.onnx_role, plan.typing) == ("int8", "int8", typing)
    assert plan.onnx.name == ONNX_NAME  # the Q/DQ graph, never model_fp32.onnx
    assert plan.int8_flag == (typing == "weak") and plan.fp16_flag == (typing == "weak")
    argv = trtexec_argv(plan)
    for flag in flags:
        assert any(a.split("=")[0] == flag.split("=")[0] for a in argv), (flag, argv)
    for absent in {"--int8", "--fp16", "--stronglyTyped"} - {f.split("=")[0] for f in flags}:
        assert absent not in argv
    if typing == "weak":  # the attention island pinned to fp32 beside the FP16 flag
        island = set(model.fp32_nodes)
        assert island and {name for name, _ in plan.layer_precisions} == island
    # an explicit fp32 build of its fp32 graph stays possible
    fp32 = make_plan(BuildOptions(source=directory, precision="fp32"), model, parse_version(version))
    assert fp32.onnx_role == "fp32" and not fp32.int8_flag


def test_int8_build_of_a_float_export_is_refused(tmp_path):
    from msla_deploy.trt.inputs import load_model_input
    from msla_deploy.trt.options import BuildOptions
    from msla_deploy.trt.plan import make_plan
    from msla_deploy.trt.versions import parse_version

    directory = fp32_export(tmp_path, stress=False).parent
    with pytest.raises(BadInput) as info:
        make_plan(BuildOptions(source=directory, precision="int8"), load_model_input(directory), parse_version("10.13"))
    assert "needs an int8 Q/DQ ONNX" in str(info.value) and "--calib-images" in info.value.fix


@pytest.mark.parametrize("fake_trt", ["8.6.1", "10.13.3.9", "11.4.0.106"], indirect=True)
def test_api_int8_build_sets_what_trtexec_would(exported, fake_trt):
    """Built through the project's builder on the fake TensorRT of each version: the Q/DQ graph is
    parsed, and the builder flags are the ones the printed trtexec command implies."""
    from msla_deploy.trt import engine as engine_mod
    from msla_deploy.trt.inputs import load_model_input
    from msla_deploy.trt.options import BuildOptions
    from msla_deploy.trt.plan import make_plan
    from msla_deploy.trt.trtexec import trtexec_argv
    from msla_deploy.trt.versions import parse_version

    directory = exported[0] / "export"
    model = load_model_input(directory)
    version = ".".join(fake_trt.__version__.split(".")[:2])
    plan = make_plan(
        BuildOptions(source=directory, out=directory.parent / f"int8_{version}.engine"), model, parse_version(version)
    )
    engine_mod.build_engine(fake_trt, plan, onnx_node_names=model.graphs["int8"].node_names)
    flags = fake_trt.fake.builder_flags()
    argv = trtexec_argv(plan)
    expected = {"TF32"} if "--noTF32" not in argv else set()
    expected |= {"INT8"} if "--int8" in argv else set()
    expected |= {"FP16"} if "--fp16" in argv else set()
    expected |= {"OBEY_PRECISION_CONSTRAINTS"} if "--precisionConstraints=obey" in argv else set()
    assert flags == expected
    assert ("INT8" in flags) is (version == "8.6")
