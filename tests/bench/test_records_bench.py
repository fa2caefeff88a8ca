"""The typed records of bench, doctor and the int8 sensitivity table: each reads the JSON layout
the tool wrote before records existed, round-trips, and refuses another kind or a newer version
on one line. No model runs here (bench's own runs are in test_bench.py)."""

from __future__ import annotations

import copy
import json
import math

import pytest

from msla_deploy.bench.report import BenchReport, read_earlier
from msla_deploy.doctor import diagnose
from msla_deploy.doctor.report import DoctorReport
from msla_deploy.errors import BadInput
from msla_deploy.export.int8_sensitivity import CalibrationUsed, SensitivityTable, UnitCost, table_rows
from msla_deploy.records import RecordError

# `bench --json` as printed before records (one run on ort-cpu, latencies cut to three)
BENCH_BEFORE = {
    "settings": {
        "warmup": 3,
        "iterations": 3,
        "duration_s": None,
        "batch": None,
        "threads": None,
        "transfers": True,
        "cuda_graph": False,
        "interleaved": False,
    },
    "baseline": "ort-cpu",
    "results": [
        {
            "label": "ort-cpu",
            "artifact": "/tmp/rb/tiny.onnx",
            "backend": "ort-cpu",
            "requested": "auto",
            "runtime": {
                "runtime": "onnxruntime",
                "version": "1.32.0",
                "providers_requested": ["CPUExecutionProvider"],
                "providers_active": ["CPUExecutionProvider"],
                "ran_on": "CPUExecutionProvider",
                "fell_back": False,
                "intra_op_threads": None,
            },
            "timer": "host",
            "batch": 1,
            "host_memory": {
                "peak_rss_bytes": 115978240,
                "start_rss_bytes": 110276608,
                "peak_delta_bytes": 5701632,
                "peak_is_per_block": True,
            },
            "device_memory_delta_bytes": None,
            "stats": {
                "iterations": 3,
                "min_ms": 0.02105,
                "mean_ms": 0.022596,
                "max_ms": 0.023374,
                "std_ms": 0.001093,
                "p50_ms": 0.023364,
                "p90_ms": 0.023372,
                "p99_ms": 0.0233738,
                "throughput_ips": 44255.62,
            },
            "latencies_ms": [0.023374, 0.023364, 0.02105],
            "p50_ratio": 1.0,
        }
    ],
    "host_memory_during_timing": {
        "peak_rss_bytes": 116858880,
        "start_rss_bytes": 116858880,
        "peak_delta_bytes": 0,
        "peak_is_per_block": True,
    },
    "environment": {
        "python": "3.11.7",
        "platform": "Linux-6.18.44-x86_64-with-glibc2.36",
        "machine": "x86_64",
        "packages": {"msla-deploy": "0.1.0", "onnxruntime": "1.32.0", "tensorrt": None},
        "cpu": "AMD EPYC",
        "cpu_count": 2,
        "cpu_usable": 2,
        "threads_requested": None,
        "cpu_governor": None,
        "gpu": {
            "index": 0,
            "name": "NVIDIA Orin (nvgpu)",
            "compute_capability": "8.7",
            "driver_cuda_version": "12.6",
            "driver": None,
        },
        "jetson": {
            "l4t_release": "# R36 (release), REVISION: 4.3",
            "board": "NVIDIA Jetson AGX Orin",
            "nvpmodel_conf": True,
            "nvpmodel_q": "NV Power Mode: MAXN\n0",
            "jetson_clocks_show": None,
        },
    },
    "timings_s": {"load:ort-cpu": 0.007, "measure": 0.001},
}


def test_bench_report_reads_the_layout_from_before_records():
    report = BenchReport.from_dict(copy.deepcopy(BENCH_BEFORE))
    (run,) = report.results
    assert run.stats.p50_ms == 0.023364 and run.stats.iterations == 3 and run.host_memory.peak_delta_bytes == 5701632
    assert run.runtime["ran_on"] == "CPUExecutionProvider" and run.source is None
    assert report.environment.gpu.compute_capability == "8.7" and report.environment.jetson.nvpmodel_q.startswith(
        "NV Power"
    )
    assert report.settings.iterations == 3 and report.settings.duration_s is None and report.plot is None
    # written again: the same keys in the same order, plus the format tag and each row's source
    again = report.to_dict()
    expected = copy.deepcopy(BENCH_BEFORE)
    expected["results"][0]["source"] = None
    assert again == {"format": "msla-deploy/bench/1", **expected}
    assert list(again) == ["format", *BENCH_BEFORE] and "plot" not in again


def test_bench_report_round_trips_through_a_file(tmp_path):
    report = BenchReport.from_dict(copy.deepcopy(BENCH_BEFORE))
    report.plot = str(tmp_path / "latency.png")
    report.results[0].stats.throughput_ips = None  # a clock too coarse for a mean
    assert BenchReport.from_dict(report.to_dict()) == report
    assert BenchReport.read(report.write(tmp_path / "bench.json")) == report
    assert json.loads((tmp_path / "bench.json").read_text())["plot"] == report.plot


@pytest.mark.parametrize(
    "change, needle",
    [
        (lambda d: d.update(format="msla-deploy/bench/99"), "newer msla-deploy"),
        (lambda d: d.update(format="msla-deploy/doctor/1"), "'msla-deploy/doctor/1' document"),
        (lambda d: d.pop("results"), "results is missing"),
        (lambda d: d["results"][0]["stats"].update(p50_ms="fast"), "results[0].stats.p50_ms is str"),
    ],
)
def test_a_saved_report_of_another_kind_or_version_is_one_line(tmp_path, change, needle):
    data = copy.deepcopy(BENCH_BEFORE)
    change(data)
    path = tmp_path / "earlier.json"
    path.write_text(json.dumps(data))
    with pytest.raises(BadInput) as info:
        read_earlier(path)
    assert info.value.exit_code == 2 and needle in info.value.problem and str(path) in info.value.problem
    assert "\n" not in info.value.one_line()
    assert ("upgrade" in info.value.fix) == (needle == "newer msla-deploy")


# --- doctor -----------------------------------------------------------------------------------

# `doctor --json` as printed before records, cut to a few components
DOCTOR_BEFORE = {
    "components": {
        "python": {
            "name": "python",
            "ok": True,
            "version": "3.8.10",
            "detail": "/usr/bin/python3",
            "fix": "",
            "implementation": "CPython",
            "platform": "Linux-5.10.216-tegra-aarch64-with-glibc2.29",
            "machine": "aarch64",
        },
        "onnxruntime": {
            "name": "onnxruntime",
            "ok": True,
            "version": "1.16.3",
            "detail": "really start: CPUExecutionProvider",
            "fix": "",
            "distributions": ["onnxruntime-gpu"],
            "available_providers": ["CUDAExecutionProvider", "CPUExecutionProvider"],
            "providers": [
                {"provider": "CUDAExecutionProvider", "started": False, "ran_on": None, "error": "libcublas missing"},
                {"provider": "CPUExecutionProvider", "started": True, "ran_on": "CPUExecutionProvider", "error": None},
            ],
        },
        "gpu": {
            "name": "gpu",
            "ok": True,
            "version": None,
            "detail": "Orin (compute 8.7)",
            "fix": "",
            "device": {
                "name": "Orin",
                "compute_capability": "8.7",
                "driver_cuda_version": "11.4",
                "index": 0,
                "driver": None,
            },
        },
    },
    "cpu": "ARMv8 Processor rev 1 (v8l)",
    "jetson": {
        "name": "jetson",
        "ok": True,
        "version": "5.1.2-b104",
        "detail": "NVIDIA Jetson AGX Orin; L4T 35.4.1",
        "fix": "",
        "l4t": "35.4.1",
        "jetpack": "5.1.2-b104",
        "power_mode": "MAXN",
        "clocks": [],
        "l4t_release": "# R35 (release), REVISION: 4.1",
        "board": "NVIDIA Jetson AGX Orin",
        "nvpmodel_conf": True,
        "nvpmodel_q": "NV Power Mode: MAXN\n0",
        "jetson_clocks_show": None,
    },
    "backends": {"ort-cpu": {"name": "ort-cpu", "ready": True, "reason": "", "fix": "", "note": "", "backends": []}},
    "commands": {
        "bench": {"name": "bench", "ready": True, "reason": "", "fix": "", "note": "", "backends": ["ort-cpu"]},
        "build": {
            "name": "build",
            "ready": False,
            "reason": "tensorrt: not installed",
            "fix": "apt install python3-libnvinfer",
            "note": "",
            "backends": [],
        },
    },
    "seconds": 1.234,
}


def test_doctor_report_reads_the_layout_from_before_records():
    report = DoctorReport.from_dict(copy.deepcopy(DOCTOR_BEFORE))
    ort = report.component("onnxruntime")
    assert (
        ort.ok
        and ort.data["providers"][0]["error"] == "libcublas missing"
        and ort.data["distributions"] == ["onnxruntime-gpu"]
    )
    assert report.component("gpu").data["device"]["compute_capability"] == "8.7"
    assert report.jetson.data["power_mode"] == "MAXN" and report.jetson.version == "5.1.2-b104"
    assert not report.command("build").ready and report.backends["ort-cpu"].ready
    assert report.to_dict() == {"format": "msla-deploy/doctor/1", **DOCTOR_BEFORE}


def test_doctor_report_of_this_machine_round_trips(tmp_path):
    report = diagnose()
    assert DoctorReport.from_dict(report.to_dict()) == report
    assert DoctorReport.read(report.write(tmp_path / "doctor.json")) == report
    data = report.to_dict()
    assert list(data) == ["format", "components", "cpu", "jetson", "backends", "commands", "seconds"]
    # a component's facts beside its fields
    assert set(data["components"]["onnxruntime"]) >= {"name", "ok", "providers"}


def test_doctor_report_refuses_a_newer_version_and_a_broken_component():
    with pytest.raises(RecordError, match="newer msla-deploy"):
        DoctorReport.from_dict({**DOCTOR_BEFORE, "format": "msla-deploy/doctor/2"})
    broken = copy.deepcopy(DOCTOR_BEFORE)
    broken["components"]["gpu"] = "fine"
    with pytest.raises(RecordError, match=r"components\[2\] is str"):
        DoctorReport.from_dict(broken)


# --- the int8 sensitivity table ------------------------------------------------------------------

# int8_sensitivity.json as written before records: write_json_atomic turned a NaN cosine into null
SENSITIVITY_BEFORE = {
    "metric": "argmax agreement of the Q/DQ graph with the fp32 graph on the calibration pictures (ONNX Runtime CPU)",
    "calibration": {"method": "max", "pictures": 4},
    "include_attention": True,
    "all_int8_agreement": 0.95,
    "ranking": [
        {
            "module": "backbone.stages.3.op.core",
            "kind": "attention",
            "quantizable": 2,
            "alone": 0.96,
            "all_but": 0.999,
            "alone_cosine": None,
            "cost": 0.040000000000000036,
        },
        {
            "module": "backbone.stages.0.op",
            "kind": "block",
            "quantizable": 3,
            "alone": 0.999,
            "all_but": 0.951,
            "alone_cosine": 0.99999,
            "cost": 0.0010000000000000009,
        },
    ],
    "min_argmax_agreement": 0.999,
    "keep_fp32": ["backbone.stages.3.op.core"],
    "achieved_agreement": 0.999,
    "met": True,
}


def test_sensitivity_table_reads_the_layout_from_before_records():
    table = SensitivityTable.from_dict(copy.deepcopy(SENSITIVITY_BEFORE))
    core, conv = table.ranking
    assert math.isnan(core.alone_cosine) and core.cost == pytest.approx(0.04) and conv.alone_cosine == 0.99999
    # what render() reads
    assert (table.method, table.pictures, table.all_int8, table.achieved) == ("max", 4, 0.95, 0.999)
    assert table.rows is table.ranking and table.met and table.min_agreement == 0.999
    data = table.to_dict()
    assert list(data) == ["format", *SENSITIVITY_BEFORE] and list(data["ranking"][0]) == list(
        SENSITIVITY_BEFORE["ranking"][0]
    )
    assert data["ranking"][0]["alone_cosine"] is None  # NaN is written as null and read back as NaN (records.py's rule)
    assert table_rows(table)[0] == ["1", "backbone.stages.3.op.core", "attention", "4.000%", "nan", "99.900%", "fp32"]


def test_sensitivity_table_round_trips_and_derives_the_cost(tmp_path):
    table = SensitivityTable(
        CalibrationUsed("percentile", 8),
        False,
        0.97,
        [UnitCost("decoder.block", "block", 5, alone=0.98, all_but=0.995, alone_cosine=0.9999)],
    )
    assert table.ranking[0].cost == pytest.approx(0.02) and table.min_argmax_agreement is None and table.met is None
    assert SensitivityTable.from_dict(table.to_dict()) == table
    assert SensitivityTable.read(table.write(tmp_path / "int8_sensitivity.json")) == table
    edited = table.to_dict()
    edited["ranking"][0]["cost"] = 0.5  # derived on read: a hand-edited cost does not disagree with alone
    assert SensitivityTable.from_dict(edited).ranking[0].cost == pytest.approx(0.02)
    with pytest.raises(RecordError, match="'msla-deploy/bench/1' document"):
        SensitivityTable.from_dict({**table.to_dict(), "format": "msla-deploy/bench/1"})


def test_export_prints_the_sensitivity_table_through_the_record(tmp_path, capsys):
    from msla_deploy.console import out
    from msla_deploy.export.command import _print_sensitivity

    path = tmp_path / "int8_sensitivity.json"
    path.write_text(json.dumps(SENSITIVITY_BEFORE))  # with null where a cosine was NaN: printed, not a TypeError
    with out.capture() as captured:
        _print_sensitivity(path)
    text = captured.get()
    assert "backbone.stages.3.op.core" in text and "4.000%" in text and "nan" in text
    assert "all modules int8: 95.000% of labels as fp32; kept in fp32 for 99.9%: backbone.stages.3.op.core" in text
