"""The output guard (artifact/outputs.py): one rule for every flag that writes (issue 25 §1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from msla_deploy.artifact.outputs import OutputGuard, escaping_link
from msla_deploy.errors import BadInput


@pytest.fixture()
def artifact(tmp_path) -> Path:
    """A directory shaped like an export: manifest listing its files, model, reference bundle."""
    root = tmp_path / "art"
    (root / "reference").mkdir(parents=True)
    (root / "model.onnx").write_bytes(b"onnx")
    (root / "reference" / "inputs.npz").write_bytes(b"npz")
    manifest = {
        "tool": {"name": "msla-deploy"},
        "format": "msla-deploy/1",
        "artifacts": {"model.onnx": {"sha256": "x"}, "reference/inputs.npz": {"sha256": "y"}},
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


@pytest.mark.parametrize(
    "target", ["manifest.json", "model.onnx", "reference", "reference/inputs.npz", "reference/new.xml", "."]
)
def test_nothing_lands_on_the_artifact(artifact, target):
    with pytest.raises(BadInput, match="artifact"):
        OutputGuard(artifact_dir=artifact).check(artifact / target, "--junit")


def test_reports_beside_the_artifact_files_are_fine(artifact, tmp_path):
    guard = OutputGuard(artifact_dir=artifact)
    assert guard.check(artifact / "evaluation", "--report-dir") == artifact / "evaluation"
    assert guard.check(tmp_path / "elsewhere" / "junit.xml", "--junit")


def test_a_link_inside_the_artifact_that_leaves_it_is_refused(artifact, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (artifact / "validation").symlink_to(outside, target_is_directory=True)
    with pytest.raises(BadInput, match="a link out of the artifact"):
        OutputGuard(artifact_dir=artifact).check(artifact / "validation", "--report-dir")
    with pytest.raises(BadInput, match="a link out of the artifact"):
        OutputGuard(artifact_dir=artifact).check(artifact / "validation" / "report.md", "--report-dir")
    assert escaping_link(artifact / "validation" / "x", artifact) == artifact / "validation"


def test_a_link_that_stays_inside_is_fine(artifact):
    (artifact / "reports").mkdir()
    (artifact / "latest").symlink_to(artifact / "reports", target_is_directory=True)
    assert OutputGuard(artifact_dir=artifact).check(artifact / "latest", "--report-dir")


def test_inputs_are_never_written_onto_nor_into(tmp_path):
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    (pictures / "a.png").write_bytes(b"png")
    guard = OutputGuard().reading(pictures, tmp_path / "single.png")
    for target in (pictures, pictures / "out", pictures / "a.png", tmp_path / "single.png"):
        with pytest.raises(BadInput, match="which this command reads"):
            guard.check(target, "--out")
    assert guard.check(tmp_path / "predictions", "--out")


def test_a_bare_model_file_is_protected_too(tmp_path):
    model = tmp_path / "model.onnx"
    model.write_bytes(b"onnx")
    with pytest.raises(BadInput, match="the artifact being read"):
        OutputGuard(artifact_files=[model]).check(model, "--plot")
