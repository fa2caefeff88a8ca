"""An export directory written by msla-deploy 0.1.0 before the artifact/runtime layers (b0 at
64x128, random weights, tests/data/legacy-export-0.1.0) still validates, builds, benches and
round-trips through the typed manifest unchanged."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from msla_deploy.artifact.manifest import Manifest, read_manifest
from msla_deploy.artifact.resolve import resolve
from msla_deploy.cli import app
from tests.fixtures import REPO

LEGACY = REPO / "tests" / "data" / "legacy-export-0.1.0"


@pytest.fixture()
def legacy(tmp_path):
    target = tmp_path / "legacy"
    shutil.copytree(LEGACY, target)
    return target


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_manifest_round_trips_unchanged(legacy):
    raw = json.loads((legacy / "manifest.json").read_text())
    manifest = read_manifest(legacy)
    assert manifest.model.name == "efficientvit-seg-b0-cityscapes" and manifest.options.resolution == (64, 128)
    assert manifest.to_dict() == raw
    assert Manifest.from_dict(manifest.to_dict()).to_dict() == raw


def test_resolves_to_the_same_facts(legacy):
    art = resolve(legacy)
    assert art.kind == "directory" and art.precision == "fp32" and art.batch == 1
    assert art.resolution == (64, 128) and art.num_classes == 19
    assert [s.name for s in art.inputs] == ["input"] and [s.name for s in art.outputs] == ["logits"]


def test_validates(legacy, tmp_path):
    result = cli("validate", legacy, "--backend", "ort-cpu", "--report-dir", tmp_path / "r", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["passed"] and report["artifact"]["precision"] == "fp32"
    assert report["outputs"][0]["argmax_agreement"] >= 0.999


def test_builds_its_trtexec_command(legacy):
    result = cli("build", legacy, "--print-trtexec", "--trt-version", "10.3", "--json")
    assert result.exit_code == 0, result.output
    assert "--onnx=model.onnx" in json.loads(result.stdout)["argv"]


@pytest.mark.parametrize("backend", ["ort-cpu", "torch"])
def test_benches(legacy, backend):
    result = cli("bench", legacy, "--backend", backend, "--iterations", "2", "--warmup", "0", "--json")
    assert result.exit_code == 0, result.output
    (run,) = json.loads(result.stdout)["results"]
    assert run["backend"] == backend and run["stats"]["iterations"] == 2


def test_inspect_takes_the_export_directory(legacy):
    result = cli("inspect", legacy, "--target-trt", "8.6", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["info"]["model"].endswith("model.onnx")


def test_trt_version_spellings_are_the_same_for_build_and_inspect(legacy):
    """'11' is 11.0 for inspect --target-trt; build --trt-version reads it the same."""
    for args in (
        ("build", legacy, "--print-trtexec", "--trt-version", "11"),
        ("inspect", legacy, "--target-trt", "11"),
    ):
        assert cli(*args).exit_code in (0, 1), args  # 1: inspect's preflight may find errors; never 2
