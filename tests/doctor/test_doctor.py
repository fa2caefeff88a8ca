"""`msla-deploy doctor`: torch-free, real ONNX Runtime sessions, TensorRT and GPU faked both ways.

No TensorRT or GPU exists here: "present" is a stand-in module plus a faked GPU probe, "missing"
is an import made to fail. The ONNX Runtime CPU session is real.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from msla_deploy.bench.report import JetsonFacts
from msla_deploy.cli import app
from msla_deploy.doctor import diagnose, probes
from msla_deploy.trt import runtime as trt_runtime
from msla_deploy.trt.runtime import INSTALL_HINT, GpuInfo
from tests.fixtures import REPO

runner = CliRunner()
FAKE_GPU = GpuInfo(name="NVIDIA Orin (fake)", compute_capability="8.7", driver_cuda_version="12.6")


def _registered():
    """The command names of the real CLI app, as doctor reads them from its click group."""
    import typer.main

    from msla_deploy.cli import app

    group = typer.main.get_command(app)
    return list(group.list_commands(None))


def doctor_json(*args):
    result = runner.invoke(app, ["doctor", "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def fake_gpu(monkeypatch):
    monkeypatch.setattr(trt_runtime, "probe_gpu", lambda index=0: FAKE_GPU)
    monkeypatch.setattr(trt_runtime, "cuda_runtime_version", lambda: "12.6")


@pytest.fixture
def no_gpu(monkeypatch):
    def probe(index=0):
        raise trt_runtime.MissingRuntime("no CUDA driver found (libcuda): faked", "build on the target GPU")

    monkeypatch.setattr(trt_runtime, "probe_gpu", probe)


@pytest.fixture
def fake_tensorrt(monkeypatch, tmp_path):
    module = types.ModuleType("tensorrt")
    module.__version__ = "10.7.0"
    module.__file__ = str(tmp_path / "site-packages" / "tensorrt" / "__init__.py")
    monkeypatch.setitem(sys.modules, "tensorrt", module)
    return module


@pytest.fixture
def missing_tensorrt(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # `import tensorrt` raises ImportError


def test_runs_without_torch_and_says_what_needs_it(tmp_path):
    pytest.importorskip("torch")  # the helper's module needs it; without torch every run here is torch-free
    from tests.fixtures import run_without_torch

    # the helper fails the run (exit 1) if torch got imported at all
    proc = run_without_torch("doctor", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["components"]["torch"]["ok"] is False
    for command in ("export", "reference"):
        entry = report["commands"][command]
        assert entry["ready"] is False and "torch" in entry["reason"] and "pip install torch" in entry["fix"], entry
    for command in ("models", "inspect", "build --print-trtexec", "validate", "bench", "doctor"):
        assert report["commands"][command]["ready"] is True, report["commands"][command]
    assert "ort-cpu" in report["commands"]["validate"]["backends"]
    assert "torch" not in report["commands"]["bench"]["backends"]


def test_the_cpu_provider_really_started():
    report = diagnose(_registered())
    ort = report.component("onnxruntime")
    cpu = next(p for p in ort.data["providers"] if p["provider"] == "CPUExecutionProvider")
    assert cpu == {"provider": "CPUExecutionProvider", "started": True, "ran_on": "CPUExecutionProvider", "error": None}
    assert report.backends["ort-cpu"].ready
    import onnxruntime

    assert ort.version == onnxruntime.__version__


class _FallingBackOrt:
    """onnxruntime-gpu on a machine without a usable GPU: CUDA is listed, the CPU runs."""

    __version__ = "1.19.2"

    class SessionOptions:
        log_severity_level = 2

    class InferenceSession:
        def __init__(self, model, sess_options=None, providers=()):
            self.asked = list(providers)

        def run(self, names, feeds):
            return [np.maximum(feeds["x"], 0)]

        def get_providers(self):
            return ["CPUExecutionProvider"]

    @staticmethod
    def get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]


def test_a_listed_gpu_provider_that_falls_back_is_not_a_backend(monkeypatch):
    monkeypatch.setattr(probes, "import_onnxruntime", lambda: _FallingBackOrt)
    report = diagnose(_registered())
    by_name = {p["provider"]: p for p in report.component("onnxruntime").data["providers"]}
    assert by_name["CUDAExecutionProvider"]["started"] is False
    assert by_name["CUDAExecutionProvider"]["ran_on"] == "CPUExecutionProvider"
    assert by_name["CPUExecutionProvider"]["started"] is True
    cuda = report.backends["ort-cuda"]
    assert not cuda.ready and "ran on CPUExecutionProvider" in cuda.reason
    assert report.backends["ort-cpu"].ready
    assert report.backends["ort-trt"].reason.endswith("does not offer TensorrtExecutionProvider")


def test_fake_tensorrt_and_gpu_make_build_ready(fake_tensorrt, fake_gpu):
    report = doctor_json()
    trt = report["components"]["tensorrt"]
    assert trt["ok"] and trt["version"] == "10.7.0" and trt["path"] == fake_tensorrt.__file__
    if trt["distribution"] is None:  # no pip wheel here: it says where such a TensorRT comes from
        assert "python3-libnvinfer" in trt["detail"]
    assert report["components"]["gpu"]["device"]["name"] == FAKE_GPU.name
    assert report["commands"]["build"]["ready"] is True
    assert report["backends"]["trt"]["ready"] is True
    assert "trt" in report["commands"]["validate"]["backends"] and "trt" in report["commands"]["bench"]["backends"]


def test_missing_tensorrt_shows_build_unavailable_with_the_install_hint(missing_tensorrt, fake_gpu):
    report = doctor_json()
    assert report["components"]["tensorrt"]["ok"] is False
    build = report["commands"]["build"]
    assert build["ready"] is False and "TensorRT" in build["reason"] and INSTALL_HINT in build["fix"]
    assert "gpu" not in build["reason"]  # the faked GPU is fine: only TensorRT is named
    assert report["commands"]["build --print-trtexec"]["ready"] is True
    assert report["backends"]["trt"]["ready"] is False
    # the table for people says the same, and doctor still exits 0
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 0, result.output
    line = next(row for row in result.stdout.splitlines() if row.strip().startswith("build ") and "print" not in row)
    assert " no " in line and "TensorRT" in line
    assert "python3-libnvinfer" in result.stdout


def test_no_gpu_is_named_as_the_reason(fake_tensorrt, no_gpu):
    build = doctor_json()["commands"]["build"]
    assert (
        build["ready"] is False and "gpu: no CUDA driver found" in build["reason"] and "tensorrt" not in build["reason"]
    )


def test_a_probe_that_crashes_is_reported_not_raised(monkeypatch):
    def broken():
        raise RuntimeError("polygraphy exploded")

    monkeypatch.setattr(probes, "polygraphy", broken)
    report = doctor_json()
    poly = report["components"]["polygraphy"]
    assert poly["ok"] is False and "RuntimeError: polygraphy exploded" in poly["detail"]
    assert report["commands"]["validate"]["ready"] is False and report["commands"]["inspect"]["ready"] is True


def test_jetson_release_power_mode_and_board(monkeypatch):
    from msla_deploy.bench import environment

    facts = {
        "l4t_release": (
            "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64, DATE: Tue Aug  1 "
            "19:57:35 UTC 2023"
        ),
        "board": "NVIDIA Jetson Xavier NX Developer Kit",
        "nvpmodel_conf": True,
        "nvpmodel_q": "NV Power Mode: MODE_20W_6CORE\n8",
        "jetson_clocks_show": "SOC family:tegra194  Machine:NVIDIA Jetson Xavier NX Developer Kit\n"
        "GPU MinFreq=114750000 MaxFreq=1109250000 CurrentFreq=1109250000\nEMC MinFreq=204000000 MaxFreq=1600000000 "
        "CurrentFreq=1600000000 FreqOverride=1",
    }
    monkeypatch.setattr(environment, "jetson", lambda: JetsonFacts(**facts))
    monkeypatch.setattr(probes, "_dpkg_version", lambda package: None)
    jetson = doctor_json()["jetson"]
    assert (jetson["l4t"], jetson["jetpack"], jetson["power_mode"]) == ("35.4.1", "5.x", "MODE_20W_6CORE")
    assert jetson["board"] == facts["board"] and jetson["jetson_clocks_show"] == facts["jetson_clocks_show"]
    assert jetson["clocks"] == facts["jetson_clocks_show"].splitlines()[1:]
    assert "CurrentFreq=1109250000" in runner.invoke(app, ["doctor"]).stdout  # the table shows the clocks too
    monkeypatch.setattr(probes, "_dpkg_version", lambda package: "5.1.2-b104" if package == "nvidia-jetpack" else None)
    assert doctor_json()["jetson"]["jetpack"] == "5.1.2-b104"


def test_not_a_jetson_and_unregistered_commands(monkeypatch):
    from msla_deploy.bench import environment

    monkeypatch.setattr(environment, "jetson", lambda: None)
    report = diagnose(["inspect", "doctor"])
    assert report.jetson is None
    assert report.command("inspect").ready and not report.command("validate").ready
    assert "not a command of this msla-deploy version" in report.command("validate").reason


def test_bad_arguments_exit_2():
    result = runner.invoke(app, ["doctor", "--no-such-flag"])
    assert result.exit_code == 2


# --- scripts/device-check.sh, where it cannot run (no TensorRT or GPU here) -------------------

DEVICE_CHECK = REPO / "scripts" / "device-check.sh"


def device_check(*args, cwd: Path):
    env = dict(
        os.environ,
        PYTHON=sys.executable,
        PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    )
    return subprocess.run(
        ["bash", str(DEVICE_CHECK), *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_device_check_script_is_valid_bash():
    done = subprocess.run(["bash", "-n", str(DEVICE_CHECK)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_device_check_bad_arguments_exit_2(tmp_path):
    done = device_check("--iterations", "many", cwd=tmp_path)
    assert done.returncode == 2 and "--iterations must be a whole number" in done.stderr
    done = device_check(tmp_path, cwd=tmp_path)  # not an export directory
    assert done.returncode == 2 and "no manifest.json" in done.stderr
    assert not list(tmp_path.glob("device-check-*"))


def test_device_check_without_tensorrt_says_why_and_keeps_doctors_report(tmp_path):
    report = diagnose(_registered())
    if all(report.component(n).ok for n in ("tensorrt", "gpu", "cuda-runtime")):
        pytest.skip("this machine has TensorRT and a GPU: the device check would run for real")
    out = tmp_path / "report"
    done = device_check("--out", out, "--no-tests", cwd=tmp_path)
    assert done.returncode == 3, done.stderr
    missing = [n for n in ("tensorrt", "gpu", "cuda-runtime") if not report.component(n).ok]
    assert "cannot build or run TensorRT engines" in done.stderr and f"  {missing[0]}: " in done.stderr
    assert "Traceback" not in done.stderr
    doctor = json.loads((out / "doctor.json").read_text())
    assert doctor["commands"]["build"]["ready"] is False
    assert "cannot run the device check here" in (out / "summary.md").read_text()
    assert not (out / "export").exists()  # stopped before any work


FAKE_CLI = """#!/usr/bin/env bash
# msla-deploy as the device check sees it on a machine with TensorRT 8.6 and a GPU
echo "$*" >> "$CALLS"
case "$1 ${2:-}" in
  "--version "*) echo "msla-deploy 0.1.0" ;;
  "doctor --json") cat "$DOCTOR_JSON" ;;
  "doctor "*) echo "doctor table" ;;
  *)
    case " $* " in
      *" --typing strong "*) echo "error: strong typing needs TensorRT >= 9.0 (use --typing weak)" >&2; exit 2 ;;
      *" --typing weak "*) touch "${@: -2:1}"; echo '{}' ;;
      *) echo '{}' ;;
    esac ;;
esac
"""


def test_device_check_flow_with_a_stand_in_cli(tmp_path):
    """The script's own logic, with a stand-in `msla-deploy` first on PATH: the given export is
    copied (never written), a build the version refuses is reported as such, the other engine
    is validated and benched, and summary.md says so."""
    doctor = {"components": {n: {"ok": True, "detail": "", "fix": ""} for n in ("tensorrt", "gpu", "cuda-runtime")}}
    (tmp_path / "doctor.json").write_text(json.dumps(doctor))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "msla-deploy"
    fake.write_text(FAKE_CLI)
    fake.chmod(0o755)
    export = tmp_path / "run"
    (export / "reference").mkdir(parents=True)
    (export / "manifest.json").write_text("{}")
    calls = tmp_path / "calls.txt"
    env = dict(
        os.environ,
        PYTHON=sys.executable,
        CALLS=str(calls),
        DOCTOR_JSON=str(tmp_path / "doctor.json"),
        PATH=os.pathsep.join([str(bin_dir), os.environ.get("PATH", "")]),
    )
    out = tmp_path / "report"
    done = subprocess.run(
        ["bash", str(DEVICE_CHECK), str(export), "--out", str(out), "--no-tests", "--iterations", "7"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in export.iterdir()) == ["manifest.json", "reference"]  # the user's folder is untouched
    lines = calls.read_text().splitlines()
    weak = str(out / "export" / "device-check-fp16-weak.engine")
    assert any(line.startswith("build ") and "--typing strong" in line for line in lines)
    assert (
        f"validate {weak} --reference {out / 'export' / 'reference'} --backend trt --report-dir "
        f"{out / 'validate-fp16-weak'} --json" in lines
    )
    assert f"bench {weak} --backend trt --iterations 7 --plot {out / 'bench-fp16-weak.png'} --json" in lines
    assert not any("device-check-fp16-strong.engine --backend" in line for line in lines)  # never built: never run
    summary = (out / "summary.md").read_text()
    assert "| build-fp16-strong | not on this TensorRT: error: strong typing needs TensorRT >= 9.0" in summary
    assert "| validate-fp16-weak | pass |" in summary and "| bench-fp16-weak | pass |" in summary
    assert "All steps passed." in summary
