"""Issue 25 for predict, the Segmenter and bench: outputs guarded, NaN outputs fail, random weights
are said, pictures decoded by reference's rules, declared sizes checked before allocation, and
the colour and overlay files hold what they claim.

Each test failed before the change it came with. One random-weight b0 export at 64x128 is shared
by the module (copied where a test changes it); the rest are hand-made ONNX graphs.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tracemalloc
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image
from typer.testing import CliRunner

from msla_deploy.artifact.names import RANDOM_WEIGHTS_WARNING, WEIGHTS_RANDOM
from msla_deploy.bench.report import BenchReport
from msla_deploy.bench.run import measure
from msla_deploy.cli import app
from msla_deploy.errors import BadInput
from msla_deploy.runtime.segmenter import RandomWeightsWarning, Segmenter
from tests.fixtures import export_random_b0, one_error_line

runner = CliRunner()
PNG = b"\x89PNG\r\n\x1a\n"


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def snapshot(folder: Path) -> dict:
    """Every file below `folder` and its sha256: what a refused command must leave as it was."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def picture(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    channels = [127 + 120 * np.sin(x / (5 + 4 * c) + y / (9 + 2 * c) + rng.uniform(0, 6)) for c in range(3)]
    return np.clip(np.stack(channels, axis=2), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def b0(tmp_path_factory) -> Path:
    return export_random_b0(tmp_path_factory.mktemp("hardening-predict"))


def times_nan(source: Path, target: Path) -> Path:
    """`source` with its logits multiplied by a NaN constant: a model whose every output is NaN."""
    model = onnx.load(str(source))
    graph = model.graph
    producer = next(node for node in graph.node if "logits" in node.output)
    producer.output[list(producer.output).index("logits")] = "logits_before_nan"
    graph.initializer.append(numpy_helper.from_array(np.array(np.nan, np.float32), "nan_constant"))
    graph.node.append(helper.make_node("Mul", ["logits_before_nan", "nan_constant"], ["logits"]))
    onnx.save(model, str(target))
    return target


@pytest.fixture(scope="module")
def nan_b0(b0, tmp_path_factory) -> Path:
    """A copy of the export whose model.onnx outputs NaN logits (as a naive fp16 export may)."""
    copy = tmp_path_factory.mktemp("nan") / "b0-nan"
    shutil.copytree(b0, copy)
    times_nan(copy / "model.onnx", copy / "model.onnx")
    return copy


def logits_onnx(path: Path, shape, scale: float = 1.0) -> Path:
    """A hand-made artifact: logits = input * scale, input [N, 3, H, W] (three classes)."""
    graph = helper.make_graph(
        [helper.make_node("Mul", ["input", "scale"], ["logits"])],
        "scaled",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, list(shape))],
        [numpy_helper.from_array(np.array(scale, np.float32), "scale")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    onnx.save(model, str(path))
    return path


@pytest.fixture()
def pics(tmp_path) -> Path:
    folder = tmp_path / "pics"
    (folder / "sub").mkdir(parents=True)
    Image.fromarray(picture(64, 128)).save(folder / "street.png")
    Image.fromarray(picture(40, 50, seed=1)).save(folder / "sub" / "corner.png")
    return folder


# --- 1. outputs guarded --------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["the input folder", "a folder inside it", "an input picture"])
def test_predict_out_onto_or_into_an_input_is_refused_even_with_overwrite(b0, pics, where):
    out = {"the input folder": pics, "a folder inside it": pics / "sub", "an input picture": pics / "street.png"}[where]
    before = snapshot(pics)
    result = cli("predict", b0, pics, "--out", out, "--overwrite")
    assert result.exit_code == 2, result.output
    line = one_error_line(result)
    assert "--out" in line and str(pics) in line
    assert snapshot(pics) == before  # nothing written, nothing replaced


def test_predict_output_that_is_an_input_picture_is_refused(b0, pics, tmp_path):
    """A picture named like another's output (street_labels.png) is not overwritten by it."""
    Image.fromarray(picture(64, 128, seed=3)).save(pics / "street_labels.png")
    before = snapshot(pics)
    result = cli("predict", b0, pics / "street.png", pics / "street_labels.png", "--out", pics, "--overwrite")
    assert result.exit_code == 2, result.output
    assert "street_labels.png would replace the input picture" in one_error_line(result)
    assert snapshot(pics) == before


@pytest.mark.parametrize("inside", ["reference", ".", "reference/new"])
def test_predict_out_into_the_artifact_is_refused(b0, pics, tmp_path, inside):
    art = shutil.copytree(b0, tmp_path / "art")
    before = snapshot(art)
    result = cli("predict", art, pics, "--out", art / inside, "--overwrite")
    assert result.exit_code == 2, result.output
    assert "artifact" in one_error_line(result)
    assert snapshot(art) == before


def test_bench_plot_onto_the_manifest_is_refused(b0, tmp_path):
    art = shutil.copytree(b0, tmp_path / "art")
    before = snapshot(art)
    result = cli("bench", art, "--iterations", 1, "--warmup", 0, "--plot", art / "manifest.json", "--overwrite")
    assert result.exit_code == 2, result.output
    assert "manifest.json" in one_error_line(result)
    assert snapshot(art) == before


def test_bench_plot_replaces_an_existing_file_only_with_overwrite(tmp_path):
    model = logits_onnx(tmp_path / "scaled.onnx", [1, 3, 8, 8])
    plot = tmp_path / "latency.png"
    plot.write_bytes(b"an earlier plot")
    refused = cli("bench", model, "--iterations", 2, "--warmup", 0, "--plot", plot)
    assert refused.exit_code == 2, refused.output
    line = one_error_line(refused)
    assert str(plot) in line and "--overwrite" in line
    assert plot.read_bytes() == b"an earlier plot"
    replaced = cli("bench", model, "--iterations", 2, "--warmup", 0, "--plot", plot, "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    assert plot.read_bytes().startswith(PNG)


def test_bench_plot_onto_a_compared_report_is_refused(tmp_path):
    model = logits_onnx(tmp_path / "scaled.onnx", [1, 3, 8, 8])
    saved = tmp_path / "before.json"
    first = cli("bench", model, "--iterations", 2, "--warmup", 0, "--json")
    assert first.exit_code == 0, first.output
    saved.write_text(first.stdout)
    result = cli("bench", model, "--compare", saved, "--iterations", 2, "--plot", saved, "--overwrite")
    assert result.exit_code == 2, result.output
    assert "before.json" in one_error_line(result)
    assert json.loads(saved.read_text()) == json.loads(first.stdout)


# --- 2. NaN outputs fail -------------------------------------------------------------------------


def test_segmenter_counts_the_pixels_labelled_from_nonfinite_logits(b0, nan_b0):
    pixels = picture(30, 70)
    assert Segmenter(b0, backend="ort-cpu")(pixels).nonfinite == 0
    broken = Segmenter(nan_b0, backend="ort-cpu")(pixels)
    assert broken.nonfinite == 30 * 70 and broken.labels.shape == (30, 70)


def test_predict_with_nan_outputs_writes_the_files_and_exits_1(nan_b0, pics, tmp_path):
    out = tmp_path / "out"
    result = cli("predict", nan_b0, pics, "--out", out, "--json")
    assert result.exit_code == 1, result.output
    line = one_error_line(result)
    assert "2 of 2 picture(s)" in line and "non-finite" in line
    report = json.loads(result.stdout)
    assert [p["nonfinite"] for p in report["pictures"]] == [64 * 128, 40 * 50]
    assert report["nonfinite_pixels"] == 64 * 128 + 40 * 50
    assert (out / "street_overlay.png").is_file() and (out / "sub" / "corner_labels.png").is_file()
    table = cli("predict", nan_b0, pics / "street.png", "--out", tmp_path / "table")
    assert table.exit_code == 1 and "NaN/Inf px" in table.stdout and str(64 * 128) in table.stdout


def test_predict_of_a_sound_artifact_reports_zero_and_exits_0(b0, pics, tmp_path):
    result = cli("predict", b0, pics, "--out", tmp_path / "out", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [p["nonfinite"] for p in report["pictures"]] == [0, 0] and report["nonfinite_pixels"] == 0


def test_bench_counts_nan_outputs_and_exits_1(b0, nan_b0):
    broken = cli("bench", nan_b0, "--iterations", 2, "--warmup", 0, "--json")
    assert broken.exit_code == 1, broken.output
    assert "NaN/Inf" in one_error_line(broken)
    (row,) = json.loads(broken.stdout)["results"]
    (logits,) = onnx.load(str(nan_b0 / "model.onnx")).graph.output
    per_run = int(np.prod([d.dim_value for d in logits.type.tensor_type.shape.dim]))  # [1, 19, 8, 16]
    assert row["nonfinite"] == 2 * per_run  # every logit of the first run and of the first timed run
    table = cli("bench", nan_b0, "--iterations", 2, "--warmup", 0)
    assert table.exit_code == 1 and "NaN/Inf output values" in table.stdout
    sound = cli("bench", b0, "--iterations", 2, "--warmup", 0, "--json")
    assert sound.exit_code == 0, sound.output
    assert json.loads(sound.stdout)["results"][0]["nonfinite"] == 0


def test_measure_hands_over_the_first_timed_run_of_each():
    results = iter(range(100))
    first = []
    measure(
        [lambda: next(results), lambda: next(results)],
        warmup=2,
        iterations=3,
        duration=None,
        on_first=lambda i, result: first.append((i, result)),
    )
    assert first == [(0, 4), (1, 5)]  # after the four warm-up runs: the first timed run of each, once


def test_tensorrt_outputs_are_read_back_from_the_device():
    from msla_deploy.runtime.cudart import MEMCPY_DEVICE_TO_HOST
    from tests.bench.test_bench import _direct

    timing, _, log = _direct(transfers=False)
    timing.timed()
    del log[:]
    outputs = timing.fetch_outputs()
    assert [name for name, _ in log] == ["cudaMemcpyAsync", "cudaStreamSynchronize"]
    assert log[0][1][3] == MEMCPY_DEVICE_TO_HOST and set(outputs) == {"y"} and outputs["y"].shape == (2, 5)
    timing.close()


def test_a_saved_bench_report_without_the_new_fields_still_reads():
    from tests.bench.test_records_bench import BENCH_BEFORE

    report = BenchReport.from_dict(json.loads(json.dumps(BENCH_BEFORE)))
    assert report.results[0].nonfinite is None and report.nonfinite_runs() == []
    report.results[0].nonfinite, report.results[0].weights_source = 3, WEIGHTS_RANDOM
    again = BenchReport.from_dict(report.to_dict())
    assert again == report and again.nonfinite_runs() == again.results


# --- 3. random weights are said ------------------------------------------------------------------


def test_predict_says_the_weights_source_and_the_random_weights_warning(b0, pics, tmp_path):
    result = cli("predict", b0, pics / "street.png", "--out", tmp_path / "j", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["weights_source"] == WEIGHTS_RANDOM and report["weights_warning"] == RANDOM_WEIGHTS_WARNING
    table = cli("predict", b0, pics / "street.png", "--out", tmp_path / "t")
    assert table.exit_code == 0, table.output
    text = " ".join(table.stdout.split())
    assert RANDOM_WEIGHTS_WARNING in text and "weights: " in text  # the header and the table's caption
    assert "RandomWeightsWarning" not in table.output  # said once, by predict itself


def test_bench_says_the_weights_source_and_the_random_weights_warning(b0, tmp_path):
    result = cli("bench", b0, "--iterations", 2, "--warmup", 0, "--json")
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)["results"]
    assert row["weights_source"] == WEIGHTS_RANDOM and row["weights_warning"] == RANDOM_WEIGHTS_WARNING
    table = cli("bench", b0, "--iterations", 2, "--warmup", 0)
    text = " ".join(table.stdout.split())
    assert table.exit_code == 0 and RANDOM_WEIGHTS_WARNING in text and "weights: random" in text
    bare = cli("bench", logits_onnx(tmp_path / "bare.onnx", [1, 3, 8, 8]), "--iterations", 1, "--json")
    assert "weights_source" not in json.loads(bare.stdout)["results"][0]  # no manifest: nothing to say


def test_the_segmenter_warns_once_and_says_the_source(b0, tmp_path):
    with pytest.warns(RandomWeightsWarning) as caught:
        seg = Segmenter(b0, backend="ort-cpu")
        seg(picture(8, 8))
        seg(picture(8, 8))
    assert len(caught) == 1 and RANDOM_WEIGHTS_WARNING in str(caught[0].message)
    assert seg.weights_source == WEIGHTS_RANDOM and seg.weights_warning == RANDOM_WEIGHTS_WARNING
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a bare ONNX says nothing about its weights: no warning
        bare = Segmenter(logits_onnx(tmp_path / "bare.onnx", [1, 3, 8, 8]), backend="ort-cpu")
    assert bare.weights_source is None and bare.weights_warning is None


# --- 4. pictures decoded by reference's rules; declared sizes checked first ---------------------


def deep_pictures(folder: Path) -> dict:
    """A 32-bit integer TIFF and a floating-point TIFF: no fixed white level."""
    folder.mkdir(parents=True, exist_ok=True)
    values = (np.arange(64 * 128).reshape(64, 128) * 97).astype(np.int32)
    Image.fromarray(values).save(folder / "int32.tif")
    Image.fromarray((values / 1000.0).astype(np.float32)).save(folder / "float.tif")
    assert Image.open(folder / "int32.tif").mode == "I" and Image.open(folder / "float.tif").mode == "F"
    return {"int32": folder / "int32.tif", "float": folder / "float.tif"}


def test_32_bit_and_float_pictures_are_refused_by_the_segmenter(b0, tmp_path):
    seg = Segmenter(b0, backend="ort-cpu")
    for path in deep_pictures(tmp_path / "deep").values():
        with pytest.raises(BadInput, match="no fixed white level"):
            seg(path)
        with pytest.raises(BadInput, match="no fixed white level"):
            seg(Image.open(path))


def test_predict_skips_32_bit_and_float_pictures_or_stops_with_strict(b0, tmp_path):
    deep_pictures(tmp_path / "deep")
    skipped = cli("predict", b0, tmp_path / "deep", "--out", tmp_path / "out", "--json")
    assert skipped.exit_code == 0, skipped.output
    report = json.loads(skipped.stdout)
    assert report["pictures"] == [] and not list(tmp_path.glob("out/*.png"))
    assert sorted(Path(s["input"]).name for s in report["skipped"]) == ["float.tif", "int32.tif"]
    assert all("no fixed white level" in s["error"] for s in report["skipped"])
    strict = cli("predict", b0, tmp_path / "deep", "--out", tmp_path / "strict", "--strict")
    assert strict.exit_code == 2, strict.output
    assert "no fixed white level" in one_error_line(strict)


def test_a_16_bit_picture_feeds_the_model_what_reference_feeds_it(b0, tmp_path):
    from msla_deploy.runtime.picture_files import load_rgb, preprocess

    deep = ((np.arange(64 * 128).reshape(64, 128) * 7919) % 65536).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(deep).save(path)  # a 16-bit grey PNG
    seg = Segmenter(b0, backend="ort-cpu")
    fed = []
    run = seg.session.run
    seg.session.run = lambda feeds: fed.append(feeds["input"].copy()) or run(feeds)
    result = seg(path)
    np.testing.assert_array_equal(fed[0][0], preprocess(load_rgb(path), 64, 128))  # v / 65535, not v >> 8
    np.testing.assert_array_equal(result.image[:, :, 0], (deep >> 8).astype(np.uint8))  # drawn: the top 8 bits


def test_a_graph_declaring_a_huge_input_is_refused_before_allocating(tmp_path, monkeypatch):
    huge = logits_onnx(tmp_path / "huge.onnx", [1, 3, 200000, 200000])  # 480 GB per tensor, as declared
    with pytest.raises(BadInput, match="needs about"):
        Segmenter(huge, backend="ort-cpu")
    Image.fromarray(picture(8, 8)).save(tmp_path / "p.png")
    result = cli("predict", huge, tmp_path / "p.png", "--out", tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert "needs about" in one_error_line(result) and not (tmp_path / "out").exists()
    from msla_deploy import limits

    small = logits_onnx(tmp_path / "small.onnx", [1, 3, 16, 16])
    monkeypatch.setattr(limits, "available_memory", lambda: 4096)  # less than its 3 KiB input and 3 KiB logits
    with pytest.raises(BadInput, match="needs about"):
        Segmenter(small, backend="ort-cpu")


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_bench_makes_its_inputs_in_the_dtype_its_memory_check_counts(dtype):
    from msla_deploy.artifact.graph import TensorSpec
    from msla_deploy.bench.backends import feeds_for

    shape = (1, 3, 512, 1024)
    spec = TensorSpec("input", shape, np.dtype(dtype).name)
    session = SimpleNamespace(inputs={"input": spec}, outputs={}, max_batch=None)
    tracemalloc.start()
    try:
        feeds, _ = feeds_for(session, None, "graph")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    declared = int(np.prod(shape)) * np.dtype(dtype).itemsize
    assert feeds["input"].dtype == dtype and feeds["input"].nbytes == declared
    assert peak < 1.5 * declared  # not a float64 copy on the way (3x a float32 input, 5x a float16 one)


# --- 7. the colour and overlay files are what they claim --------------------------------------


def test_predict_colour_and_overlay_files_are_colorize_and_overlay(b0, pics, tmp_path):
    out = tmp_path / "out"
    result = cli("predict", b0, pics, "--out", out, "--alpha", 0.3, "--json")
    assert result.exit_code == 0, result.output
    seg = Segmenter(b0, backend="ort-cpu")
    for p in json.loads(result.stdout)["pictures"]:
        expected = seg(p["input"])
        colour = np.asarray(Image.open(p["files"]["color"]).convert("RGB"))
        overlay = np.asarray(Image.open(p["files"]["overlay"]).convert("RGB"))
        np.testing.assert_array_equal(colour, expected.colorize())
        np.testing.assert_array_equal(overlay, expected.overlay(0.3))
        assert not np.array_equal(colour, overlay)  # the picture shows through the overlay
