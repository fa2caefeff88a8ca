"""`msla-deploy build` on real exports (b0 at 64x128): the printed trtexec commands, exit 3 without
TensorRT, exit 2 for bad options, one error line and nothing written."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from msla_deploy.cli import app
from tests.fixtures import export_random_b0
from tests.fixtures import manifest_json as read_manifest

B0 = "efficientvit-seg-b0-cityscapes"
runner = CliRunner()


def _has_tensorrt() -> bool:
    try:
        import tensorrt  # noqa: F401
    except Exception:
        return False
    return True


def build(*args):
    return runner.invoke(app, ["build", *map(str, args)])


def _export(directory: Path, precision: str) -> Path:
    # B0 at 64x128, seeded random weights
    return export_random_b0(directory.parent, directory.name, must_pass=True, precision=precision)


@pytest.fixture(scope="module")
def fp32_dir(tmp_path_factory):
    return _export(tmp_path_factory.mktemp("build_cli") / "b0-fp32", "fp32")


@pytest.fixture(scope="module")
def fp16_dir(tmp_path_factory):
    return _export(tmp_path_factory.mktemp("build_cli") / "b0-fp16", "fp16")


def _error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    return errors[0]


def test_print_trtexec_8_6(fp32_dir):
    result = build(fp32_dir, "--print-trtexec", "--trt-version", "8.6")
    assert result.exit_code == 0, result.stderr
    command = result.stdout.strip()
    argv = shlex.split(command)
    assert argv[:3] == ["trtexec", "--onnx=model.onnx", "--saveEngine=model_fp32_trt8.6.engine"]
    assert "--memPoolSize=workspace:1024" in argv and "--timingCacheFile=timing_trt8.6.cache" in argv
    assert "--noTF32" in argv and "--skipInference" in argv and "--fp16" not in argv
    assert str(fp32_dir) in result.stderr  # where to run it
    assert not list(fp32_dir.glob("*.engine"))  # printing builds nothing


def test_print_trtexec_json(fp32_dir):
    result = build(fp32_dir, "--print-trtexec", "--trt-version", "10.3", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) == {"argv", "command", "run_in", "summary", "warnings", "dla_preflight", "profiles"}
    assert data["profiles"] == []  # a static export: no optimisation profile
    assert data["run_in"] == str(fp32_dir) and data["dla_preflight"] is None
    assert shlex.split(data["command"]) == data["argv"] and "--memPoolSize=workspace:1024" in data["argv"]


def test_fp16_from_the_fp32_export_pins_its_recorded_nodes(fp32_dir):
    nodes = (read_manifest(fp32_dir).get("precision") or {}).get("fp32_nodes") or []
    result = build(fp32_dir, "--print-trtexec", "--trt-version", "8.6", "--precision", "fp16")
    assert result.exit_code == 0, result.stderr
    argv = shlex.split(result.stdout.strip())
    assert "--fp16" in argv and "--onnx=model.onnx" in argv
    if nodes:
        assert "--precisionConstraints=obey" in argv
        assert f"--layerPrecisions={','.join(n + ':fp32' for n in nodes)}" in argv
    else:
        assert "#3893" in result.stderr  # an old export: warned, not silently trusted


def test_fp16_export_per_version(fp16_dir):
    manifest = read_manifest(fp16_dir)
    section = manifest["precision"]
    assert section["onnx_files"]["fp16"] == "model.onnx" and section["fp32_nodes"]
    weak = shlex.split(build(fp16_dir, "--print-trtexec", "--trt-version", "8.6").stdout.strip())
    assert weak[1] == f"--onnx={section['onnx_files']['fp32']}" and "--fp16" in weak and "--stronglyTyped" not in weak
    assert f"--layerPrecisions={','.join(n + ':fp32' for n in section['fp32_nodes'])}" in weak
    strong = shlex.split(build(fp16_dir, "--print-trtexec", "--trt-version", "10.13").stdout.strip())
    assert strong[1] == "--onnx=model.onnx" and "--stronglyTyped" in strong and "--fp16" not in strong
    eleven = shlex.split(build(fp16_dir, "--print-trtexec", "--trt-version", "11.4").stdout.strip())
    assert eleven[1] == "--onnx=model.onnx" and not {"--fp16", "--stronglyTyped"} & set(eleven)
    assert not [a for a in eleven if a.startswith(("--layerPrecisions", "--precisionConstraints"))]


def test_dla_preflight_is_shown(fp32_dir):
    result = build(fp32_dir, "--print-trtexec", "--trt-version", "10.3", "--precision", "fp16", "--dla-core", "0")
    assert result.exit_code == 0, result.stderr
    assert "DLA preflight" in result.stderr and "HardSwish" in result.stderr and "MatMul" in result.stderr
    assert "--useDLACore=0" in result.stdout and "--allowGPUFallback" in result.stdout


def test_legacy_directory_without_precision_section(fp32_dir, tmp_path):
    legacy = tmp_path / "legacy"
    shutil.copytree(fp32_dir, legacy)
    manifest = read_manifest(legacy)
    manifest.pop("precision", None)
    (legacy / "manifest.json").write_text(json.dumps(manifest))
    result = build(legacy, "--print-trtexec", "--trt-version", "8.6")
    assert result.exit_code == 0, result.stderr
    assert "--onnx=model.onnx" in result.stdout and "--fp16" not in result.stdout


@pytest.mark.skipif(_has_tensorrt(), reason="TensorRT is installed here: the exit-3 path cannot be seen")
def test_real_build_without_tensorrt_exits_3(fp32_dir):
    before = sorted(p.name for p in fp32_dir.iterdir())
    result = build(fp32_dir)
    assert result.exit_code == 3
    line = _error_line(result)
    assert "TensorRT" in line and "install" in line
    assert sorted(p.name for p in fp32_dir.iterdir()) == before


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--opt-level", "9"], "0..5"),
        (["--workspace", "banana"], "not a size"),
        (["--dla-core", "0", "--precision", "fp32"], "fp16 and int8 only"),
        (["--precision", "fp16", "--typing", "weak", "--trt-version", "11.4"], "removed in TensorRT 11.0"),
        (
            ["--precision", "fp16", "--typing", "weak", "--trt-version", "11.4", "--print-trtexec"],
            "removed in TensorRT 11.0",
        ),
        (["--precision", "fp16", "--trt-version", "11.4"], "mixed-precision fp16 ONNX"),
        (["--typing", "strong", "--trt-version", "8.6", "--print-trtexec"], "9.0"),
        (["--hardware-compat", "same-cc", "--trt-version", "10.3", "--print-trtexec"], "10.9"),
        (["--dla-core", "0", "--precision", "fp16", "--trt-version", "10.13", "--print-trtexec"], "no DLA"),
        (["--gpu-fallback"], "only to DLA"),
    ],
)
def test_bad_options_exit_2(fp32_dir, args, needle):
    before = sorted(p.name for p in fp32_dir.iterdir())
    result = build(fp32_dir, *args)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert needle in _error_line(result)
    assert sorted(p.name for p in fp32_dir.iterdir()) == before


def test_bad_inputs_exit_2(tmp_path):
    result = build(tmp_path / "nothing", "--print-trtexec", "--trt-version", "8.6")
    assert result.exit_code == 2 and "no such file" in _error_line(result)
    result = build(tmp_path, "--print-trtexec", "--trt-version", "8.6")
    assert result.exit_code == 2 and "not an export directory" in _error_line(result)


@pytest.mark.skipif(_has_tensorrt(), reason="TensorRT is installed: the version defaults to it")
def test_print_trtexec_needs_a_version_without_tensorrt(fp32_dir):
    result = build(fp32_dir, "--print-trtexec")
    assert result.exit_code == 2 and "--trt-version" in _error_line(result)


def test_entry_point_in_a_fresh_process(fp32_dir):
    """As a shell sees it: stdout is only the command, exit codes are the documented ones."""
    ok = subprocess.run(
        [sys.executable, "-m", "msla_deploy", "build", str(fp32_dir), "--print-trtexec", "--trt-version", "10.3"],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.count("\n") == 1 and ok.stdout.startswith("trtexec --onnx=model.onnx")
    bad = subprocess.run(
        [sys.executable, "-m", "msla_deploy", "build", str(fp32_dir), "--opt-level", "9"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    if not _has_tensorrt():
        missing = subprocess.run(
            [sys.executable, "-m", "msla_deploy", "build", str(fp32_dir)], capture_output=True, text=True
        )
        assert missing.returncode == 3 and "Traceback" not in missing.stderr and missing.stderr.count("\n") == 1


@pytest.mark.parametrize("fake_trt", ["10.3.0"], indirect=True)
def test_a_build_renders_its_record(tmp_path, fake_trt):
    """A whole build on the fake TensorRT (tests/trt_fake.py): --json is the record as the manifest holds it,
    the table reads it."""
    from msla_deploy.artifact.builds import BuildRecord
    from tests.trt.test_build_plan import make_export_dir

    directory = make_export_dir(tmp_path / "e", "fp16")
    result = build(directory, "--json")
    assert result.exit_code == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["record_file"] == str(directory / "manifest.json")
    assert shown["record"] == read_manifest(directory)["builds"][0]
    record = BuildRecord.from_dict(shown["record"])
    assert record.engine_file == "model_fp16_trt10.3.engine" and record.precision == "fp16" and record.typing == "weak"
    table = build(directory)  # a second build: the timing cache is loaded
    assert table.exit_code == 0, table.stderr
    for text in (
        "model_fp16_trt10.3.engine",
        f"sha256 {record.engine.sha256[:16]}",
        "loaded and updated",
        "fp32 layers",
        "recorded in",
    ):
        assert text in table.stdout, text
