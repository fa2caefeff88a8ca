"""`msla-deploy bench`: the statistics on known numbers, the interleaving order, and the report on
a tiny hand-made ONNX and a small real export (b0 at 64x128) with the CPU backends. Nothing here
asserts a time: only that times exist, are positive and are consistent with each other."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from msla_deploy.bench.plot import nice_ticks, render
from msla_deploy.bench.run import measure
from msla_deploy.bench.stats import interleaved_order, median_ratios, percentile, rotation, summarize
from msla_deploy.cli import app
from msla_deploy.parity.png import SIGNATURE

B0 = "efficientvit-seg-b0-cityscapes"
runner = CliRunner()


def bench(*args):
    return runner.invoke(app, ["bench", *map(str, args)])


def _json(result):
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# --- statistics ------------------------------------------------------------------------------

def test_percentiles_on_a_known_list():
    values = list(range(1, 11))  # 1..10: linear interpolation between closest ranks
    assert percentile(values, 50) == pytest.approx(5.5)
    assert percentile(values, 90) == pytest.approx(9.1)
    assert percentile(values, 99) == pytest.approx(9.91)
    assert percentile([7.0], 99) == 7.0


def test_summary_in_ms_and_throughput_from_the_mean():
    s = summarize([0.010, 0.020, 0.030, 0.040], batch=4)
    assert s["iterations"] == 4
    assert s["min_ms"] == pytest.approx(10) and s["max_ms"] == pytest.approx(40)
    assert s["mean_ms"] == pytest.approx(25) and s["p50_ms"] == pytest.approx(25)
    assert s["p90_ms"] == pytest.approx(37) and s["p99_ms"] == pytest.approx(39.7)
    assert s["throughput_ips"] == pytest.approx(4 / 0.025)  # batch / mean latency, not median
    with pytest.raises(ValueError):
        summarize([], batch=1)


def test_ratios_of_medians_against_the_first():
    assert median_ratios([2.0, 1.0, 6.0]) == pytest.approx([1.0, 0.5, 3.0])
    assert median_ratios([0.0, 1.0]) == [None, None]
    assert median_ratios([]) == []


def test_round_robin_rotates_who_goes_first():
    assert interleaved_order(3, 4) == [[0, 1, 2], [1, 2, 0], [2, 0, 1], [0, 1, 2]]
    assert interleaved_order(1, 2) == [[0], [0]]
    assert rotation(2, 5) == [1, 0]


def test_measure_runs_warmup_untimed_then_interleaves():
    calls = []
    runs = [lambda: calls.append("a"), lambda: calls.append("b")]
    latencies = measure(runs, warmup=1, iterations=3, duration=None)
    assert calls == ["a", "b"] + ["a", "b", "b", "a", "a", "b"]  # warm-up round, then 3 rotating rounds
    assert [len(x) for x in latencies] == [3, 3] and all(t >= 0 for x in latencies for t in x)


def test_measure_by_duration_runs_at_least_one_round():
    latencies = measure([lambda: None], warmup=0, iterations=None, duration=1e-9)
    assert len(latencies[0]) >= 1


def test_plot_renders_an_rgb_picture():
    ticks = nice_ticks(0.37, 4.2)
    assert ticks[0] <= 0.37 and ticks[-1] >= 4.2 and len(ticks) >= 3
    picture = render([{"label": "a", "latencies_ms": [1.0, 2.0, 3.0]}, {"label": "b", "latencies_ms": [2.0, 2.5]}])
    assert picture.dtype == np.uint8 and picture.ndim == 3 and picture.shape[2] == 3
    assert len(np.unique(picture.reshape(-1, 3), axis=0)) > 3  # more than a blank canvas


# --- a tiny hand-made ONNX ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((16, 16)).astype(np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Relu", ["h"], ["y"])], "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 16])], [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path_factory.mktemp("tiny") / "tiny.onnx"
    onnx.save(model, str(path))
    return path


def test_tiny_onnx_report(tiny_onnx):
    report = _json(bench(tiny_onnx, "--backend", "ort-cpu", "--iterations", 5, "--warmup", 1, "--batch", 4, "--threads", 1, "--json"))
    (r,) = report["results"]
    s = r["stats"]
    assert r["backend"] == "ort-cpu" and r["runtime"]["ran_on"] == "CPUExecutionProvider" and r["batch"] == 4
    assert s["iterations"] == 5 == len(r["latencies_ms"])
    assert 0 < s["min_ms"] <= s["p50_ms"] <= s["p90_ms"] <= s["p99_ms"] <= s["max_ms"]
    assert s["throughput_ips"] == pytest.approx(4 / (s["mean_ms"] / 1e3))
    assert r["p50_ratio"] == 1.0 and report["settings"]["interleaved"] is False
    assert r["host_memory"]["peak_rss_bytes"] > 0
    env = report["environment"]
    assert env["cpu_count"] >= 1 and env["threads_requested"] == 1 and "onnxruntime" in env["packages"]


def test_auto_picks_the_cpu_here_and_the_table_renders(tiny_onnx):
    result = bench(tiny_onnx, "--iterations", 2)
    assert result.exit_code == 0, result.output
    assert "p50" in result.stdout and "ort-cpu" in result.stdout


def test_compare_two_backends_and_plot(tiny_onnx, tmp_path):
    plot = tmp_path / "latency.png"
    report = _json(bench(tiny_onnx, "--backend", "ort-cpu", "--compare", "ort-cpu", "--compare", f"{tiny_onnx}@ort-cpu",
                         "--iterations", 4, "--plot", plot, "--json"))
    labels = [r["label"] for r in report["results"]]
    assert labels == ["ort-cpu", "ort-cpu#2", "ort-cpu#3"] and report["settings"]["interleaved"]
    assert [r["stats"]["iterations"] for r in report["results"]] == [4, 4, 4]
    ratios = [r["p50_ratio"] for r in report["results"]]
    medians = [r["stats"]["p50_ms"] for r in report["results"]]
    assert ratios == pytest.approx([m / medians[0] for m in medians])
    data = plot.read_bytes()
    assert data[:8] == SIGNATURE
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width >= 400 and height >= 100


@pytest.mark.parametrize("args, needle", [
    (["--iterations", 0], "--iterations 0"),
    (["--iterations", 3, "--duration", 1], "--iterations and --duration"),
    (["--warmup", -1], "--warmup"),
    (["--backend", "tpu"], "unknown"),
    (["--batch", 0], "--batch"),
])
def test_bad_options_exit_2(tiny_onnx, args, needle):
    result = bench(tiny_onnx, *args)
    assert result.exit_code == 2, result.output
    assert needle in result.output and "Traceback" not in result.output


def test_missing_file_and_foreign_file_exit_2(tmp_path):
    missing = bench(tmp_path / "nope.onnx", "--iterations", 1)
    assert missing.exit_code == 2 and "no such file" in missing.output
    text = tmp_path / "model.txt"
    text.write_text("hi")
    assert bench(text).exit_code == 2
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x00garbage")
    assert bench(broken).exit_code == 2


def test_compare_with_an_unknown_backend_names_the_backends(tiny_onnx):
    result = bench(tiny_onnx, "--compare", f"{tiny_onnx}@foo", "--iterations", 1)
    assert result.exit_code == 2, result.output
    assert "unknown backend 'foo'" in result.stderr and "ort-cpu" in result.stderr and "no such file" not in result.stderr
    result = bench(tiny_onnx, "--compare", "ort-cpuu", "--iterations", 1)
    assert result.exit_code == 2 and "neither a backend nor a file" in result.stderr


def test_help_shows_the_iterations_default():
    result = runner.invoke(app, ["bench", "--help"])
    assert result.exit_code == 0 and "[default: 20]" in result.stdout


def test_torch_backend_needs_an_export_directory(tiny_onnx):
    result = bench(tiny_onnx, "--backend", "torch")
    assert result.exit_code == 2 and "manifest" in result.output


def _has_tensorrt() -> bool:
    try:
        import tensorrt  # noqa: F401
    except Exception:
        return False
    return True


def _has_cuda_provider() -> bool:
    import onnxruntime

    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


@pytest.mark.skipif(_has_tensorrt(), reason="TensorRT is installed: the missing-runtime path cannot be shown")
def test_trt_backend_without_tensorrt_exits_3(tiny_onnx, tmp_path):
    result = bench(tiny_onnx, "--backend", "trt", "--iterations", 1)
    assert result.exit_code == 3, result.output
    assert "TensorRT" in result.output and "Traceback" not in result.output
    engine = tmp_path / "tiny.engine"
    engine.write_bytes(b"not really an engine")
    result = bench(engine, "--iterations", 1)
    assert result.exit_code == 3, result.output
    assert "--backend ort-cpu" not in result.stderr and "model.onnx" in result.stderr  # ort-cpu is refused for an engine


@pytest.mark.skipif(_has_cuda_provider(), reason="this ONNX Runtime has the CUDA provider")
def test_ort_cuda_without_cuda_exits_3(tiny_onnx):
    result = bench(tiny_onnx, "--backend", "ort-cuda", "--iterations", 1)
    assert result.exit_code == 3, result.output
    assert "CUDAExecutionProvider" in result.output


@pytest.mark.skipif(not _has_tensorrt(), reason="TensorRT is not installed here (it cannot be on this project's machines)")
def test_trt_backend_with_and_without_transfers(tiny_onnx):
    for flag in ("--transfers", "--no-transfers"):
        report = _json(bench(tiny_onnx, "--backend", "trt", "--batch", 2, "--iterations", 3, flag, "--json"))
        assert report["results"][0]["runtime"]["transfers"] is (flag == "--transfers")


def test_bench_of_an_onnx_imports_no_torch(tiny_onnx):
    """The runtime side stays torch-free: bench an ONNX with torch made unimportable."""
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from msla_deploy.cli import app\n"
        f"app(['bench', {str(tiny_onnx)!r}, '--iterations', '2', '--json'], standalone_mode=True)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["results"][0]["backend"] == "ort-cpu"


# --- a small real export -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def b0_export(tmp_path_factory) -> Path:
    pytest.importorskip("torch")
    from msla_deploy.export.options import ExportOptions
    from msla_deploy.export.pipeline import run_export

    directory = tmp_path_factory.mktemp("bench") / "b0"
    result = run_export(ExportOptions(model=B0, resolution=(64, 128), out=directory))
    assert result.passed, result.parity
    return directory


def test_real_export_torch_vs_ort_cpu(b0_export):
    report = _json(bench(b0_export, "--backend", "ort-cpu", "--compare", "torch", "--iterations", 3, "--warmup", 1, "--json"))
    ort, torch_result = report["results"]
    assert (ort["backend"], torch_result["backend"]) == ("ort-cpu", "torch")
    assert torch_result["runtime"]["runtime"] == "torch" and ort["batch"] == torch_result["batch"] == 1
    for r in report["results"]:
        assert r["stats"]["iterations"] == 3 and r["stats"]["min_ms"] > 0
    assert torch_result["p50_ratio"] == pytest.approx(torch_result["stats"]["p50_ms"] / ort["stats"]["p50_ms"])


def test_real_export_static_batch_mismatch_exits_2(b0_export):
    result = bench(b0_export, "--batch", 2, "--iterations", 1)
    assert result.exit_code == 2 and "static batch" in result.output


def test_real_export_torch_table(b0_export):
    result = bench(b0_export, "--backend", "torch", "--iterations", 3, "--warmup", 0)
    assert result.exit_code == 0, result.output
    assert "torch" in result.stdout and "img/s" in result.stdout


def test_torch_backend_without_torch_exits_3(b0_export):
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from msla_deploy.cli import app\n"
        f"app(['bench', {str(b0_export)!r}, '--backend', 'torch', '--iterations', '1'])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 3, done.stderr
    assert "PyTorch" in done.stderr and "Traceback" not in done.stderr
    assert "--backend ort-cpu" in done.stderr and "validate" not in done.stderr
