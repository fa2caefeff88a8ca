"""`msla-deploy bench`: the statistics on known numbers, the interleaving order, and the report on
a tiny hand-made ONNX and a small real export (b0 at 64x128) with the CPU backends. Nothing here
asserts a time: only that times exist, are positive and are consistent with each other."""

from __future__ import annotations

import ctypes
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from msla_deploy.bench.plot import render
from msla_deploy.bench.run import measure
from msla_deploy.bench.stats import interleaved_order, median_ratios, percentile, rotation, summarize
from msla_deploy.cli import app
from msla_deploy.drawing import nice_ticks
from msla_deploy.errors import MissingRuntime
from msla_deploy.runtime.cudart import MEMCPY_DEVICE_TO_HOST, MEMCPY_HOST_TO_DEVICE, call
from msla_deploy.runtime.trt_direct import DirectTiming
from tests.fixtures import export_random_b0
from tests.trt_fake import FAKE_VERSIONS, make_engine, make_fake_tensorrt

SIGNATURE = b"\x89PNG\r\n\x1a\n"  # every PNG starts so

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
    assert s.iterations == 4
    assert s.min_ms == pytest.approx(10) and s.max_ms == pytest.approx(40)
    assert s.mean_ms == pytest.approx(25) and s.p50_ms == pytest.approx(25)
    assert s.p90_ms == pytest.approx(37) and s.p99_ms == pytest.approx(39.7)
    assert s.throughput_ips == pytest.approx(4 / 0.025)  # batch / mean latency, not median
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
        [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Relu", ["h"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 16])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path_factory.mktemp("tiny") / "tiny.onnx"
    onnx.save(model, str(path))
    return path


def test_tiny_onnx_report(tiny_onnx):
    report = _json(
        bench(
            tiny_onnx, "--backend", "ort-cpu", "--iterations", 5, "--warmup", 1, "--batch", 4, "--threads", 1, "--json"
        )
    )
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
    report = _json(
        bench(
            tiny_onnx,
            "--backend",
            "ort-cpu",
            "--compare",
            "ort-cpu",
            "--compare",
            f"{tiny_onnx}@ort-cpu",
            "--iterations",
            4,
            "--plot",
            plot,
            "--json",
        )
    )
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


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--iterations", 0], "--iterations 0"),
        (["--iterations", 3, "--duration", 1], "--iterations and --duration"),
        (["--warmup", -1], "--warmup"),
        (["--backend", "tpu"], "unknown"),
        (["--batch", 0], "--batch"),
    ],
)
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
    assert (
        "unknown backend 'foo'" in result.stderr and "ort-cpu" in result.stderr and "no such file" not in result.stderr
    )
    result = bench(tiny_onnx, "--compare", "ort-cpuu", "--iterations", 1)
    assert result.exit_code == 2 and "neither a backend nor a file" in result.stderr


def test_compare_with_a_saved_report(tiny_onnx, tmp_path):
    """`--compare FILE.json`: an earlier `bench --json` joins the table as read, not re-timed, and
    its ratio is against this run's baseline."""
    saved = tmp_path / "before.json"
    first = bench(tiny_onnx, "--backend", "ort-cpu", "--iterations", 3, "--json")
    saved.write_text(first.stdout)
    report = _json(bench(tiny_onnx, "--backend", "ort-cpu", "--compare", saved, "--iterations", 4, "--json"))
    live, earlier = report["results"]
    assert (live["label"], live["source"]) == ("ort-cpu", None) and live["stats"]["iterations"] == 4
    assert earlier["label"] == "before.json:ort-cpu" and earlier["source"] == str(saved)
    assert (
        earlier["latencies_ms"] == json.loads(first.stdout)["results"][0]["latencies_ms"]
        and earlier["stats"]["iterations"] == 3
    )
    assert earlier["p50_ratio"] == pytest.approx(earlier["stats"]["p50_ms"] / live["stats"]["p50_ms"])
    assert report["settings"]["interleaved"] is False  # one contestant timed here
    again = tmp_path / "again.json"
    again.write_text(json.dumps(report))
    chained = _json(bench(tiny_onnx, "--compare", again, "--iterations", 2, "--json"))
    # a saved report's own rows only
    assert [r["label"] for r in chained["results"]] == ["ort-cpu", "again.json:ort-cpu"]
    table = bench(tiny_onnx, "--compare", saved, "--iterations", 2)
    assert table.exit_code == 0, table.output
    assert "before.json:ort-cpu" in table.stdout and f"{saved}: rows read from an earlier run" in table.stdout


def test_compare_with_a_file_that_is_not_a_bench_report_exits_2(tiny_onnx, tmp_path):
    other = tmp_path / "parity.json"
    other.write_text(json.dumps({"format": "msla-deploy/parity/1", "checks": []}))
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps({"format": "msla-deploy/bench/7"}))
    for path, needle in (
        (other, "'msla-deploy/parity/1' document"),
        (newer, "newer msla-deploy"),
        (tmp_path / "gone.json", "no such file"),
    ):
        result = bench(tiny_onnx, "--compare", path, "--iterations", 1)
        assert result.exit_code == 2, result.output
        assert needle in result.stderr and str(path) in result.stderr, result.stderr
        assert (
            len(result.stderr.strip().splitlines()) == 1
            and "Traceback" not in result.output
            and "loading" not in result.stderr
        )


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
    # ort-cpu is refused for an engine
    assert "--backend ort-cpu" not in result.stderr and "model.onnx" in result.stderr


@pytest.mark.skipif(_has_cuda_provider(), reason="this ONNX Runtime has the CUDA provider")
def test_ort_cuda_without_cuda_exits_3(tiny_onnx):
    result = bench(tiny_onnx, "--backend", "ort-cuda", "--iterations", 1)
    assert result.exit_code == 3, result.output
    assert "CUDAExecutionProvider" in result.output


@pytest.mark.skipif(
    not _has_tensorrt(), reason="TensorRT is not installed here (it cannot be on this project's machines)"
)
@pytest.mark.tensorrt
@pytest.mark.gpu
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
    # B0 at 64x128, seeded random weights
    return export_random_b0(tmp_path_factory.mktemp("bench"), "b0", must_pass=True)


def test_real_export_torch_vs_ort_cpu(b0_export):
    report = _json(
        bench(b0_export, "--backend", "ort-cpu", "--compare", "torch", "--iterations", 3, "--warmup", 1, "--json")
    )
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


# --- TensorRT timed directly with CUDA events (the generated fake TensorRT and a recording libcudart) --

CUDART_CALLS = (
    "cudaMalloc",
    "cudaFree",
    "cudaMemcpyAsync",
    "cudaStreamCreate",
    "cudaStreamDestroy",
    "cudaStreamSynchronize",
    "cudaEventCreate",
    "cudaEventRecord",
    "cudaEventSynchronize",
    "cudaEventElapsedTime",
    "cudaEventDestroy",
    "cudaStreamBeginCapture",
    "cudaStreamEndCapture",
    "cudaGraphInstantiateWithFlags",
    "cudaGraphLaunch",
    "cudaGraphExecDestroy",
    "cudaGraphDestroy",
)


class FakeCudart:
    """libcudart's method names; records (name, args), returns 0 (or `fail[name]`), hands out handles."""

    def __init__(self, log, fail=None):
        self.log, self.fail, self.next_handle = log, fail or {}, 0x1000

    def __getattr__(self, name):
        if name not in CUDART_CALLS:
            raise AttributeError(name)

        def function(*args):
            self.log.append((name, args))
            if name in (
                "cudaMalloc",
                "cudaStreamCreate",
                "cudaEventCreate",
                "cudaStreamEndCapture",
                "cudaGraphInstantiateWithFlags",
            ):
                out = args[-1] if name == "cudaStreamEndCapture" else args[0]
                self.next_handle += 0x100
                out._obj.value = self.next_handle
            if name == "cudaEventElapsedTime":
                args[0]._obj.value = 2.5
            return self.fail.get(name, 0)

        return function


def _engine(log, version):
    """The generated fake TensorRT of `version` (tests/trt_fake.py): x (2, 3) fp32 in, y (2, 5) fp16 out;
    execute_async_v3 logs."""
    trt = make_fake_tensorrt(version, execute=lambda context, stream: log.append(("execute_async_v3", (stream,))))
    engine = make_engine(trt, {"x": ((2, 3), "FLOAT")}, {"y": ((2, 5), "HALF")})
    return trt, engine, engine.create_execution_context()


def _direct(transfers=True, cuda_graph=False, fail=None, version="10.3.0"):
    log = []
    trt, engine, context = _engine(log, version)
    timing = DirectTiming(trt, engine, context, FakeCudart(log, fail), transfers=transfers, cuda_graph=cuda_graph)
    return timing, context, log


def _names(log):
    return [name for name, _ in log]


@pytest.mark.parametrize("version", FAKE_VERSIONS)
@pytest.mark.parametrize("transfers", [True, False])
def test_direct_trt_one_timed_iteration_call_sequence(transfers, version):
    timing, context, log = _direct(transfers=transfers, version=version)
    assert _names(log) == [
        "cudaMalloc",
        "cudaMalloc",
        "cudaStreamCreate",
        "cudaEventCreate",
        "cudaEventCreate",
        "cudaMemcpyAsync",
        "cudaStreamSynchronize",
    ]  # inputs reach the device once at load
    assert all(context.get_tensor_address(name) for name in ("x", "y"))
    del log[:]
    assert timing.timed() == pytest.approx(2.5e-3)  # cudaEventElapsedTime's ms, in seconds
    copies = ["cudaMemcpyAsync"] if transfers else []
    assert _names(log) == [
        "cudaEventRecord",
        *copies,
        "execute_async_v3",
        *copies,
        "cudaEventRecord",
        "cudaEventSynchronize",
        "cudaEventElapsedTime",
    ]
    stream = timing.stream.value
    assert log[0][1] == (timing.start, timing.stream) and dict(log)["execute_async_v3"] == (stream,) and stream
    if transfers:
        (_, h2d), (_, d2h) = log[1], log[3]
        assert h2d[2:4] == (2 * 3 * 4, MEMCPY_HOST_TO_DEVICE) and h2d[0].value == context.get_tensor_address("x")
        assert d2h[2:4] == (2 * 5 * 2, MEMCPY_DEVICE_TO_HOST) and d2h[1].value == context.get_tensor_address("y")
    del log[:]
    timing.close()
    assert _names(log) == [
        "cudaStreamSynchronize",
        "cudaEventDestroy",
        "cudaEventDestroy",
        "cudaStreamDestroy",
        "cudaFree",
        "cudaFree",
    ]


@pytest.mark.parametrize("version", FAKE_VERSIONS)
def test_direct_trt_cuda_graph_captures_once_then_launches(version):
    timing, _, log = _direct(transfers=False, cuda_graph=True, version=version)
    assert _names(log)[-6:] == [
        "execute_async_v3",
        "cudaStreamSynchronize",
        "cudaStreamBeginCapture",
        "execute_async_v3",
        "cudaStreamEndCapture",
        "cudaGraphInstantiateWithFlags",
    ]
    del log[:]
    for _ in range(2):
        timing.timed()
    assert (
        _names(log)
        == ["cudaEventRecord", "cudaGraphLaunch", "cudaEventRecord", "cudaEventSynchronize", "cudaEventElapsedTime"] * 2
    )
    assert log[1][1] == (timing.graph_exec, timing.stream)
    del log[:]
    timing.close()
    assert _names(log)[:3] == ["cudaStreamSynchronize", "cudaGraphExecDestroy", "cudaGraphDestroy"]


def test_direct_trt_cuda_graph_with_transfers_copies_around_the_launch():
    timing, _, log = _direct(transfers=True, cuda_graph=True)
    del log[:]
    timing.timed()
    assert _names(log) == [
        "cudaEventRecord",
        "cudaMemcpyAsync",
        "cudaGraphLaunch",
        "cudaMemcpyAsync",
        "cudaEventRecord",
        "cudaEventSynchronize",
        "cudaEventElapsedTime",
    ]


def test_a_failing_cuda_call_names_itself_and_releases_what_was_taken():
    with pytest.raises(MissingRuntime, match=r"cudaEventCreate failed with CUDA error 2") as info:
        _direct(fail={"cudaEventCreate": 2})
    assert info.value.exit_code == 3
    timing, _, log = _direct(fail={"cudaEventSynchronize": 700})
    with pytest.raises(MissingRuntime, match="cudaEventSynchronize failed with CUDA error 700"):
        timing.timed()
    log = []
    with pytest.raises(MissingRuntime, match="cudaMalloc"):
        call(FakeCudart(log, {"cudaMalloc": 2}), "cudaMalloc", ctypes.byref(ctypes.c_void_p()), 4)


@pytest.mark.parametrize("version", FAKE_VERSIONS)
def test_failed_construction_frees_its_buffers(version):
    log = []
    trt, engine, context = _engine(log, version)
    with pytest.raises(MissingRuntime, match="cudaStreamBeginCapture"):
        DirectTiming(
            trt, engine, context, FakeCudart(log, {"cudaStreamBeginCapture": 1}), transfers=True, cuda_graph=True
        )
    assert _names(log).count("cudaFree") == 2 and "cudaStreamDestroy" in _names(log)


def test_tensorrt_without_the_name_api_is_refused():
    engine = SimpleNamespace()  # TensorRT 8.2-style: bindings, no num_io_tensors
    context = SimpleNamespace(execute_async_v2=lambda *a: True)
    with pytest.raises(MissingRuntime, match=r"needs TensorRT >= 8.5") as info:
        DirectTiming(make_fake_tensorrt("8.6.1"), engine, context, FakeCudart([]), transfers=True, cuda_graph=False)
    assert "--backend ort-trt" in info.value.fix


def test_measure_uses_a_runs_own_timer():
    host_calls = []
    latencies = measure(
        [lambda: host_calls.append(1), lambda: None], warmup=1, iterations=2, duration=None, timed=[None, lambda: 0.004]
    )
    assert latencies[1] == [0.004, 0.004] and len(latencies[0]) == 2 and len(host_calls) == 3  # warm-up uses run()


def test_cuda_graph_is_refused_off_tensorrt(tiny_onnx):
    result = bench(tiny_onnx, "--backend", "ort-cpu", "--cuda-graph", "--iterations", 1)
    assert result.exit_code == 2, result.output
    assert "--cuda-graph" in result.output and "Traceback" not in result.output


def test_host_timer_is_recorded(tiny_onnx):
    report = _json(bench(tiny_onnx, "--backend", "ort-cpu", "--iterations", 2, "--batch", 1, "--json"))
    assert report["results"][0]["timer"] == "host" and report["settings"]["cuda_graph"] is False


@pytest.mark.skipif(
    not _has_tensorrt(), reason="TensorRT is not installed here (it cannot be on this project's machines)"
)
@pytest.mark.tensorrt
@pytest.mark.gpu
def test_trt_backend_times_with_cuda_events_and_a_graph(tiny_onnx):
    for flags in (["--no-transfers"], ["--cuda-graph"]):
        report = _json(bench(tiny_onnx, "--backend", "trt", "--batch", 1, "--iterations", 3, *flags, "--json"))
        (r,) = report["results"]
        assert (
            r["timer"] == "cuda-events"
            and r["runtime"]["cuda_graph"] is ("--cuda-graph" in flags)
            and r["stats"]["min_ms"] > 0
        )


# --- p50 is the median, not the mean (issue 16) -----------------------------------------------


def test_summary_of_an_uneven_sample_tells_median_from_mean():
    """One slow outlier pulls the mean far from the median: p50 must stay with the median."""
    s = summarize([0.010, 0.011, 0.012, 0.013, 0.100], batch=1)
    assert s.p50_ms == pytest.approx(12.0)  # the middle of five
    assert s.mean_ms == pytest.approx(29.2)  # (10 + 11 + 12 + 13 + 100) / 5
    assert s.p90_ms == pytest.approx(13 + 0.6 * 87)  # rank 3.6 of 0..4
    assert s.p99_ms == pytest.approx(13 + 0.96 * 87)
    assert s.throughput_ips == pytest.approx(1 / 0.0292)
    even = summarize([0.001, 0.002, 0.004, 0.100], batch=1)
    assert even.p50_ms == pytest.approx(3.0)  # halfway between the middle two
    assert even.mean_ms == pytest.approx(26.75)


def test_report_p50_is_the_median_of_its_own_latencies(tiny_onnx):
    """The report's figures recomputed from the latencies it lists, for two contestants."""
    report = _json(
        bench(
            tiny_onnx,
            "--backend",
            "ort-cpu",
            "--compare",
            "ort-cpu",
            "--iterations",
            7,
            "--warmup",
            0,
            "--batch",
            1,
            "--threads",
            1,
            "--json",
        )
    )
    medians = []
    for r in report["results"]:
        ms = np.asarray(r["latencies_ms"])
        assert r["stats"]["p50_ms"] == pytest.approx(float(np.median(ms)), rel=1e-9)
        assert r["stats"]["mean_ms"] == pytest.approx(float(ms.mean()), rel=1e-9)
        medians.append(float(np.median(ms)))
    assert report["results"][1]["p50_ratio"] == pytest.approx(medians[1] / medians[0], rel=1e-9)
