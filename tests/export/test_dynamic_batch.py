"""`export --batch dynamic --max-batch N`: the batch is the graph's one dynamic dimension.

What is proven here: the graph (both exporters) has a symbolic batch on every input and output,
every other size static and no shape arithmetic; it computes per picture what the PyTorch model
computes at any batch 1..N; the export's parity ran at batch N and 1; TensorRT's plan carries the
optimisation profile for every version (API on the real-API fake, trtexec flags), DLA refuses it;
the TensorRT session runs it at several batch sizes; the Segmenter groups pictures by the largest
batch and gives the labels a static export gives. Triton (max_batch_size N, dynamic batcher) is in
tests/serve/test_serve.py, which needs the serve extra.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from msla_deploy.artifact.names import BATCH_DIM, DYNAMIC_BATCH, META_BATCH, META_MAX_BATCH
from msla_deploy.cli import app
from msla_deploy.export.graph import FORBIDDEN_OPS
from tests.fixtures import export_random_b0, one_error_line
from tests.trt_fake import FAKE_VERSIONS

MAX_BATCH = 3


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    root = tmp_path_factory.mktemp("dynamic")
    return {
        "dynamic": export_random_b0(root, "dyn", batch=MAX_BATCH, dynamic_batch=True),
        "static": export_random_b0(root, "static"),  # the same seeded weights, batch 1
    }


def _dims(value):
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def _check_graph(path):
    model = onnx.load(str(path))
    assert [_dims(v) for v in model.graph.input] == [[BATCH_DIM, 3, 64, 128]]
    assert [_dims(v) for v in model.graph.output] == [[BATCH_DIM, 19, 8, 16]]
    ops = {n.op_type for n in model.graph.node}
    assert not ops & set(FORBIDDEN_OPS), ops & set(FORBIDDEN_OPS)
    initializers = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    reshapes = [initializers[n.input[1]] for n in model.graph.node if n.op_type == "Reshape"]
    assert reshapes and all(s[0] == -1 and (s[1:] > 0).all() for s in reshapes)  # -1 for the batch, numbers elsewhere
    return model


def test_graph_has_only_a_dynamic_batch(exports):
    model = _check_graph(exports["dynamic"] / "model.onnx")
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta[META_BATCH] == DYNAMIC_BATCH and meta[META_MAX_BATCH] == str(MAX_BATCH)
    manifest = json.loads((exports["dynamic"] / "manifest.json").read_text())
    assert manifest["options"]["batch"] == MAX_BATCH and manifest["options"]["dynamic_batch"] is True
    static = json.loads((exports["static"] / "manifest.json").read_text())
    assert "dynamic_batch" not in static["options"]  # static manifests are written as before
    assert all(p["batch"] == -1 for p in manifest["attention_plans"])


def test_torchscript_exporter_gives_the_same_io(tmp_path):
    _check_graph(export_random_b0(tmp_path, "ts", batch=2, dynamic_batch=True, exporter="torchscript") / "model.onnx")


def test_parity_ran_at_the_largest_batch_and_at_one(exports):
    parity = json.loads((exports["dynamic"] / "parity.json").read_text())
    assert parity["passed"]
    labels = [c["label"] for c in parity["checks"]]
    assert labels == ["ONNX Runtime fp32", f"ONNX Runtime fp32, batch 1 of 1..{MAX_BATCH}"]
    assert all(c["passed"] for c in parity["checks"])


def test_every_batch_computes_what_pytorch_computes_per_picture(exports):
    """ONNX Runtime at batch 1, 2, 3 against the PyTorch model run on each picture alone."""
    import torch

    from msla_deploy.artifact.resolve import resolve
    from msla_deploy.loading import rebuild_exported_model
    from msla_deploy.runtime import open_onnx
    from msla_deploy.runtime.onnxruntime import CPU

    art = resolve(exports["dynamic"])
    model = rebuild_exported_model(art.manifest, "this test")
    pictures = np.random.default_rng(1).standard_normal((MAX_BATCH, 3, 64, 128)).astype(np.float32)
    with torch.no_grad():
        alone = np.concatenate([model(torch.from_numpy(p[None])).numpy() for p in pictures])
    with open_onnx(exports["dynamic"] / "model.onnx", CPU) as session:
        assert session.max_batch == MAX_BATCH and session.group == MAX_BATCH
        for n in range(1, MAX_BATCH + 1):
            got = session.run({"input": pictures[:n]})["logits"]
            assert got.shape == (n, 19, 8, 16)
            assert np.abs(got - alone[:n]).max() <= 1e-4 * np.abs(alone).max()


@pytest.mark.parametrize(
    "args, expected",
    [
        (("--batch", "dynamic"), "--batch dynamic needs --max-batch N"),
        (("--batch", "dynamic", "--max-batch", "1"), "a dynamic batch needs a largest batch of at least 2"),
        (("--batch", "4", "--max-batch", "8"), "--max-batch applies to --batch dynamic"),
        (("--batch", "many"), "is neither a number nor 'dynamic'"),
        (
            ("--batch", "dynamic", "--max-batch", "0"),
            "--max-batch 0: a dynamic batch needs a largest batch of at least 2",
        ),
        (("--batch", "-3"), "--batch -3 must be at least 1"),
    ],
)
def test_bad_batch_options_exit_2(args, expected, tmp_path):
    result = cli("export", "-m", "efficientvit-seg-b0-cityscapes", "--res", "64x128", "--out", tmp_path / "x", *args)
    assert result.exit_code == 2
    assert expected in one_error_line(result)
    assert not (tmp_path / "x").exists()


def test_default_folder_of_a_dynamic_export_is_its_own():
    from msla_deploy.artifact.options import ExportOptions

    static, dynamic = (
        ExportOptions(model="m", resolution=(64, 128)),
        ExportOptions(model="m", resolution=(64, 128), batch=8, dynamic_batch=True),
    )
    assert static.output_dir() != dynamic.output_dir() and dynamic.output_dir().name.endswith("-dyn8")
    assert ExportOptions.from_dict(dynamic.to_dict()).dynamic_batch is True


# --- TensorRT: the plan, trtexec, the API on the real-API fake ------------------------------------


@pytest.mark.parametrize("version", ["8.6", "10.3", "10.13", "11.4"])
def test_trtexec_carries_the_profile(exports, version):
    result = cli("build", exports["dynamic"], "--trt-version", version, "--print-trtexec", "--opt-batch", "2", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    argv = data["argv"]
    assert data["profiles"] == [
        {"name": "input", "min": [1, 3, 64, 128], "opt": [2, 3, 64, 128], "max": [MAX_BATCH, 3, 64, 128]}
    ]
    shape = "3x64x128"
    assert (
        f"--minShapes=input:1x{shape}" in argv
        and f"--optShapes=input:2x{shape}" in argv
        and f"--maxShapes=input:{MAX_BATCH}x{shape}" in argv
    )
    static = json.loads(cli("build", exports["static"], "--trt-version", version, "--print-trtexec", "--json").stdout)[
        "argv"
    ]
    assert not [a for a in static if "Shapes=" in a]  # a static engine needs no profile


@pytest.mark.parametrize(
    "args, expected",
    [
        (("--opt-batch", "4"), "outside the export's batch range 1..3"),
        (("--precision", "fp16", "--dla-core", "0"), "DLA needs static shapes"),
    ],
)
def test_build_refuses_what_the_profile_cannot_be(exports, args, expected):
    result = cli("build", exports["dynamic"], "--trt-version", "8.6", "--print-trtexec", *args)
    assert result.exit_code == 2 and expected in one_error_line(result)


def test_opt_batch_on_a_static_export_is_refused(exports):
    result = cli("build", exports["static"], "--trt-version", "10.3", "--print-trtexec", "--opt-batch", "1")
    assert result.exit_code == 2 and "has a static batch" in one_error_line(result)


def test_a_graph_with_other_dynamic_dims_is_refused(exports, tmp_path):
    model = onnx.load(str(exports["static"] / "model.onnx"))
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "height"
    onnx.save(model, str(tmp_path / "free.onnx"))
    result = cli("build", tmp_path / "free.onnx", "--trt-version", "10.3", "--print-trtexec")
    assert result.exit_code == 2 and "only dynamic dimension is the batch" in one_error_line(result)


@pytest.mark.parametrize("version", FAKE_VERSIONS)
def test_validate_on_tensorrt_builds_the_profile_and_runs_every_batch(exports, version, monkeypatch, tmp_path):
    """On each version's API: one optimisation profile 1/N/N on the input; validate runs the
    reference (batch N); the session then runs batches 1 and 2 with the input shape set per run."""
    from msla_deploy.runtime.tensorrt import TensorRTSession
    from tests.runtime.test_runtime_tensorrt import _install

    trt, _ = _install(monkeypatch, version, exports["dynamic"] / "model.onnx")
    result = cli("validate", exports["dynamic"], "--backend", "trt", "--report-dir", tmp_path / "r", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    # both ends of 1..N
    assert report["passed"] and [o["name"] for o in report["outputs"]] == ["logits", "logits (batch 1)"]
    (profile,) = trt.fake.calls_to("IOptimizationProfile.set_shape")
    assert profile["input"] == "input"
    assert [tuple(profile[k]) for k in ("min", "opt", "max")] == [
        (1, 3, 64, 128),
        (MAX_BATCH, 3, 64, 128),
        (MAX_BATCH, 3, 64, 128),
    ]
    assert len(trt.fake.calls_to("IBuilderConfig.add_optimization_profile")) == 1

    pictures = np.random.default_rng(2).standard_normal((2, 3, 64, 128)).astype(np.float32)
    from msla_deploy.runtime import open_onnx
    from msla_deploy.runtime.onnxruntime import CPU

    with open_onnx(exports["dynamic"] / "model.onnx", CPU) as ort_session:
        expected = ort_session.run({"input": pictures})["logits"]
    with TensorRTSession(None, is_engine=False, export=exports["dynamic"]) as session:
        assert session.max_batch == MAX_BATCH and session.inputs["input"].shape == (BATCH_DIM, 3, 64, 128)
        for n in (1, 2):
            got = session.run({"input": pictures[:n]})["logits"]
            np.testing.assert_allclose(got, expected[:n], rtol=0, atol=1e-5)
        shapes = [tuple(c["shape"]) for c in trt.fake.calls_to("IExecutionContext.set_input_shape")]
        assert (1, 3, 64, 128) in shapes and (2, 3, 64, 128) in shapes
        with pytest.raises(Exception, match="outside the model.s range 1..3"):
            session.run({"input": np.zeros((MAX_BATCH + 1, 3, 64, 128), np.float32)})


def test_fake_refuses_a_dynamic_network_without_a_profile(exports, monkeypatch):
    """The rule the profile is for, as TensorRT states it (so the test above can fail)."""
    from tests.trt_fake import install_fake_tensorrt

    trt = install_fake_tensorrt(monkeypatch, "10.3.0")
    logger = trt.Logger()
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse_from_file(str(exports["dynamic"] / "model.onnx"))
    assert builder.build_serialized_network(network, builder.create_builder_config()) is None


# --- pictures --------------------------------------------------------------------------------------


def test_segmenter_groups_by_the_largest_batch_and_labels_as_a_static_export(exports):
    from msla_deploy.runtime.segmenter import Segmenter

    rng = np.random.default_rng(4)
    pictures = [(rng.random((50 + 10 * i, 90, 3)) * 255).astype(np.uint8) for i in range(MAX_BATCH + 2)]
    with Segmenter(exports["dynamic"], "ort-cpu") as dynamic, Segmenter(exports["static"], "ort-cpu") as static:
        assert dynamic.batch_size == MAX_BATCH and static.batch_size == 1
        calls = []
        run = dynamic.session.run
        dynamic.session.run = lambda feeds: calls.append(feeds["input"].shape[0]) or run(feeds)
        got = dynamic.batch(pictures)
        want = static.batch(pictures)
    assert calls == [MAX_BATCH, 2]  # unpadded groups of up to the largest batch
    for a, b in zip(got, want):
        assert a.labels.shape == b.labels.shape and (a.labels == b.labels).mean() >= 0.999


def test_inspect_knows_a_dynamic_batch_and_dla_refuses_it(exports):
    manifest = json.loads((exports["dynamic"] / "manifest.json").read_text())
    assert not [f for scan in manifest["hazards"].values() for f in scan["warnings"] if f["check"] == "dynamic-shape"]
    plain = cli("inspect", exports["dynamic"], "--target-trt", "10.3", "--json")
    assert plain.exit_code == 0, plain.output
    assert any(f"dynamic batch 1..{MAX_BATCH}" in n for n in json.loads(plain.stdout)["info"]["notes"])
    dla = cli("inspect", exports["dynamic"], "--target-trt", "10.3", "--dla", "--precision", "fp16", "--json")
    assert dla.exit_code == 1
    assert any(f["check"] == "dla-shape" for f in json.loads(dla.stdout)["errors"])


def test_labels_head_keeps_the_batch_the_only_dynamic_dimension(tmp_path):
    """The in-graph resize is traced with constant scales, not sizes built from Shape."""
    out = export_random_b0(tmp_path, "both", batch=2, dynamic_batch=True, head="both")
    model = onnx.load(str(out / "model.onnx"))
    assert not {n.op_type for n in model.graph.node} & set(FORBIDDEN_OPS)
    assert {o.name: _dims(o) for o in model.graph.output} == {
        "logits": [BATCH_DIM, 19, 8, 16],
        "labels": [BATCH_DIM, 64, 128],
    }
    assert json.loads((out / "parity.json").read_text())["passed"]


def test_validate_judges_batch_n_and_batch_1(exports, tmp_path):
    result = cli(
        "validate",
        exports["dynamic"],
        "--backend",
        "ort-cpu",
        "--report-dir",
        tmp_path / "r",
        "--junit",
        tmp_path / "j.xml",
        "--json",
    )
    assert result.exit_code == 0, result.output
    outputs = {o["name"]: o for o in json.loads(result.stdout)["outputs"]}
    assert set(outputs) == {"logits", "logits (batch 1)"} and all(o["passed"] for o in outputs.values())
    assert outputs["logits"]["shape"][0] == MAX_BATCH and outputs["logits (batch 1)"]["shape"][0] == 1
    assert "logits (batch 1)" in (tmp_path / "j.xml").read_text()
    static = cli("validate", exports["static"], "--backend", "ort-cpu", "--report-dir", tmp_path / "s", "--json")
    assert [o["name"] for o in json.loads(static.stdout)["outputs"]] == ["logits"]


def test_bench_times_the_largest_batch_unless_told(exports):
    runs = {}
    for args in ((), ("--batch", "2")):
        result = cli(
            "bench", exports["dynamic"], "--backend", "ort-cpu", "--iterations", 3, "--warmup", 0, *args, "--json"
        )
        assert result.exit_code == 0, result.output
        (runs[args],) = json.loads(result.stdout)["results"]
    assert runs[()]["batch"] == MAX_BATCH and runs[("--batch", "2")]["batch"] == 2
    too_big = cli("bench", exports["dynamic"], "--backend", "ort-cpu", "--iterations", 3, "--batch", MAX_BATCH + 1)
    assert too_big.exit_code == 2 and "takes a batch of 1..3" in one_error_line(too_big)


def test_evaluate_scores_a_dynamic_export_as_the_static_one(exports, tmp_path):
    """5 pictures with a largest batch of 3: a full group and a short one; the same scores as
    the batch-1 export of the same weights."""
    from msla_deploy.evaluate.synthetic import write_dataset

    write_dataset(tmp_path / "data", "folder", 5, (64, 128), 19)
    scores = {}
    for kind in ("dynamic", "static"):
        result = cli(
            "evaluate",
            exports[kind],
            "--data",
            tmp_path / "data",
            "--backend",
            "ort-cpu",
            "--report-dir",
            tmp_path / kind,
            "--json",
        )
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert report["images"] == 5
        (scores[kind],) = report["backends"]
    assert abs(scores["dynamic"]["miou"] - scores["static"]["miou"]) <= 1e-6
    assert abs(scores["dynamic"]["pixel_accuracy"] - scores["static"]["pixel_accuracy"]) <= 1e-6


def test_every_backend_holds_to_the_range(exports):
    from msla_deploy.artifact.resolve import resolve
    from msla_deploy.runtime import open as open_session

    with open_session(resolve(exports["dynamic"]), "ort-cpu") as session:
        with pytest.raises(Exception, match="outside the model's range 1..3"):
            session.run({"input": np.zeros((MAX_BATCH + 1, 3, 64, 128), np.float32)})


def test_a_reference_of_any_size_is_validated_and_extended(exports, tmp_path):
    """1 sample (not a multiple of 3): validate runs a short group; reference --inputs adds 1 picture."""
    import shutil

    from PIL import Image

    one = cli(
        "validate",
        exports["dynamic"] / "model.onnx",
        "--reference",
        exports["static"] / "reference",
        "--backend",
        "ort-cpu",
        "--report-dir",
        tmp_path / "r",
        "--json",
    )
    assert one.exit_code == 0, one.output  # the same seeded weights: the static export's reference holds
    art = tmp_path / "dyn"
    shutil.copytree(exports["dynamic"], art)
    (tmp_path / "pics").mkdir()
    Image.fromarray((np.random.default_rng(0).random((40, 70, 3)) * 255).astype(np.uint8)).save(
        tmp_path / "pics" / "a.png"
    )
    added = cli("reference", "--inputs", tmp_path / "pics", art, "--json")
    assert added.exit_code == 0, added.output
    assert cli("validate", art, "--backend", "ort-cpu", "--report-dir", tmp_path / "r2").exit_code == 0  # 3 + 1 samples


def test_bench_compare_warns_when_batches_differ(exports):
    result = cli("bench", exports["dynamic"], "--compare", exports["static"], "--iterations", 2, "--warmup", 0)
    assert result.exit_code == 0, result.output
    assert "feed different batches" in result.stderr and f": {MAX_BATCH}" in result.stderr


def test_int8_dynamic_export_calibrates_on_every_picture(tmp_path):
    from PIL import Image

    (tmp_path / "calib").mkdir()
    for k in range(5):  # not a multiple of the largest batch
        Image.fromarray((np.random.default_rng(k).random((64, 128, 3)) * 255).astype(np.uint8)).save(
            tmp_path / "calib" / f"{k}.png"
        )
    out = export_random_b0(
        tmp_path, "i8", batch=4, dynamic_batch=True, precision="int8", calib_images=tmp_path / "calib"
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["precision"]["int8"]["calibration"]["used"] == 5
    _check_graph(out / "model.onnx")
    assert json.loads((out / "parity.json").read_text())["passed"]


def test_a_static_batch_calibrates_on_whole_batches_and_says_so():
    from msla_deploy.export.calibration import CalibrationSet

    calib = CalibrationSet(root=None, files=[None] * 5, inputs=np.zeros((5, 3, 8, 8), np.float32))
    assert [len(b) for b in calib.batches(2)] == [2, 2] and calib.used(2) == 4
    assert [len(b) for b in calib.batches(1)] == [1] * 5 and calib.used(1) == 5  # what a dynamic batch is fed


def test_a_bad_profile_is_exit_2_even_without_tensorrt(exports):
    result = cli("build", exports["dynamic"], "--opt-batch", MAX_BATCH + 1)  # a real build: TensorRT is absent here
    assert result.exit_code == 2 and "outside the export's batch range" in one_error_line(result)
