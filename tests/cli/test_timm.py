"""`--model timm:NAME`: timm's EfficientViT classifiers through the plug-and-play swap.

timm is optional (and does not import with every torch build: it needs torchvision). Without it
a timm model is one line with the fix; the plumbing (pretrained=False, the swap keeping timm's
eps, random-weights record) is tested with a stand-in `timm` module whose create_model builds a
small network with tests/timm_litemla.py's block; the real timm is used where it imports.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from msla_deploy import timm_models
from msla_deploy.artifact.options import ExportOptions
from msla_deploy.cli import app
from msla_deploy.errors import BadInput
from msla_deploy.loading import load_model
from tests.fixtures import one_error_line
from tests.timm_litemla import TimmStyleLiteMLA

runner = CliRunner()


def _timm_imports() -> bool:
    if importlib.util.find_spec("timm") is None:
        return False
    try:
        import timm  # noqa: F401
    except Exception:
        return False
    return True


def test_resolution_from_the_pretrained_tag():
    assert timm_models.default_resolution("timm:efficientvit_b1.r224_in1k") == (224, 224)
    assert timm_models.default_resolution("timm:efficientvit_l3.r384_in1k") == (384, 384)
    assert timm_models.default_resolution("timm:efficientvit_b0") == (224, 224)  # timm's default tag: r224
    assert timm_models.is_timm_spec("timm:efficientvit_b0") and not timm_models.is_timm_spec("model.py:build")


@pytest.mark.parametrize("spec", ["timm:", "timm:hf-hub:timm/efficientvit_b0.r224_in1k", "timm:../x.py", "timm:a.b.c"])
def test_only_registered_names(spec):
    with pytest.raises(BadInput, match="is not a timm model name"):
        timm_models.timm_name(spec)


def test_missing_timm_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # `import timm` fails as where it is not installed
    out = tmp_path / "out"
    result = runner.invoke(app, ["export", "--model", "timm:efficientvit_b0.r224_in1k", "--out", str(out)])
    assert result.exit_code == 2, result.output
    line = one_error_line(result)
    assert "timm is not installed" in line and "pip install timm" in result.stderr
    assert not out.exists()


class _TinyTimmNet(nn.Module):
    """What create_model returns in the stand-in: a stem, timm's LiteMLA (eps 1e-5), a classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.num_classes = 10
        self.stem = nn.Conv2d(3, 32, 3, stride=4, padding=1)
        self.attn = TimmStyleLiteMLA(32, 32, dim=8, scales=(3,))
        self.head = nn.Linear(32, self.num_classes)

    def forward(self, x):
        return self.head(self.attn(self.stem(x)).mean((2, 3)))


def test_timm_model_is_built_without_pretrained_weights_and_swapped(monkeypatch):
    calls = []

    def create_model(name, **kwargs):
        calls.append((name, kwargs))
        return _TinyTimmNet()

    fake = types.SimpleNamespace(create_model=create_model, list_models=lambda pattern: [])
    monkeypatch.setitem(sys.modules, "timm", fake)
    options = ExportOptions(model="timm:efficientvit_b0.r224_in1k", resolution=(64, 64), seed=3)
    loaded = load_model(options)
    assert calls == [("efficientvit_b0.r224_in1k", {"pretrained": False})]
    assert loaded.source == "timm" and loaded.num_classes == 10 and loaded.name == options.model_label
    assert loaded.weights["source"] == "random" and loaded.weights["seed"] == 3
    (record,) = loaded.swapped
    assert record["swapped"] and record["path"] == "attn" and record["eps"] == 1e-5  # timm's eps, not upstream's
    again = load_model(options)  # seeded: the same random weights, as a rebuild needs
    assert again.weights["state_dict_sha256"] == loaded.weights["state_dict_sha256"]
    with torch.no_grad():
        assert loaded.module(torch.zeros(1, 3, 64, 64)).shape == (1, 10)


def test_unknown_timm_name_is_one_line(monkeypatch):
    def create_model(name, **kwargs):
        raise RuntimeError(f"Unknown model ({name})")

    fake = types.SimpleNamespace(create_model=create_model, list_models=lambda pattern: ["efficientvit_b0"])
    monkeypatch.setitem(sys.modules, "timm", fake)
    with pytest.raises(BadInput, match="timm cannot build 'efficientvit_b9'") as caught:
        load_model(ExportOptions(model="timm:efficientvit_b9", resolution=(64, 64)))
    assert "efficientvit_b0" in caught.value.fix


@pytest.mark.slow
@pytest.mark.skipif(not _timm_imports(), reason="timm is not importable here (it needs torchvision for this torch)")
def test_real_timm_efficientvit_exports_as_a_classifier(tmp_path):
    """timm's own efficientvit_b0 (pretrained=False) through export: classification, every
    LiteMLA swapped with timm's eps, parity passed."""
    out = tmp_path / "timm-b0"
    result = runner.invoke(
        app, ["export", "--model", "timm:efficientvit_b0.r224_in1k", "--res", "64", "--out", str(out), "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["passed"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"]["task"] == "classification" and manifest["model"]["source"] == "timm"
    swapped = manifest["swapped_modules"]
    assert len(swapped) == 4 and all(r["swapped"] and r["eps"] == 1e-5 for r in swapped)
