"""Helpers the tests share, and where their data lives: tests/data/ inside the repository
(tests/data/README.md says where each file came from)."""

from __future__ import annotations

import atexit
import gzip
import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
FIXTURES = DATA / "upstream"  # upstream EfficientViT's golden data (tests/data/README.md)
B0_GOLDEN = FIXTURES / "efficientvit-seg-b0-cityscapes" / "golden.npz"


def data_file(path: Path) -> Path:
    """`path` under tests/data, which must exist: a missing golden file fails, never skips (a
    skipped parity test would read as green)."""
    assert path.is_file(), f"test data {path} is missing: tests/data is part of the repository (git checkout it)"
    return path


def read_gzip_text(path: Path) -> str:
    """A text file stored gzip-compressed under tests/data (`<name>.gz`)."""
    with gzip.open(data_file(path), "rt", encoding="utf-8") as handle:
        return handle.read()


def b0_golden(name: str):
    """One of upstream's b0-cityscapes golden arrays: 'input_256x512', 'output_256x512',
    'input_64x64', 'output_64x64' (float32, as upstream's own model read and wrote them)."""
    import numpy as np

    with np.load(data_file(B0_GOLDEN)) as arrays:
        return arrays[name]


def manifest_json(directory: Path) -> dict:
    """manifest.json as written on disk (tests check the file an export writes, not our reader)."""
    return json.loads((Path(directory) / "manifest.json").read_text())


# A subprocess in which torch is not installed: every import of it fails, and the run asserts at
# the end that nothing imported it (the torch-free side stays torch-free).
BLOCK_TORCH = textwrap.dedent(
    """
    import sys

    class NoTorch:  # torch "not installed": every import of it fails
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError(f"No module named {name!r}")
            return None

    sys.meta_path.insert(0, NoTorch())
    """
)
# the CLI with sys.argv[1:], then: nothing imported torch
NO_TORCH = BLOCK_TORCH + textwrap.dedent(
    """
    from msla_deploy.cli import app
    try:
        app(sys.argv[1:])
    finally:
        assert not [m for m in sys.modules if m == "torch" or m.startswith("torch.")], "torch got imported"
    """
)


def run_without_torch(*args, cwd: Path):
    return subprocess.run(
        [sys.executable, "-c", NO_TORCH, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def one_error_line(result) -> str:
    """The single `error:` line a failing command prints (and no traceback anywhere)."""
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    return lines[0]


# One export per set of options in a test process: the exports below are the slow part of many
# modules, and several modules ask for the same one. Each caller still gets a directory of its own
# (a copy: a test may write into it), with the manifest an export at that place would have written.
_EXPORTS: Dict[str, Tuple[Dict[str, Path], bool, Any]] = {}  # its paths, ExportResult.passed and .parity
_CACHE: List[Path] = []  # the process's cache folder, made on first use


def _cache_root() -> Path:
    if not _CACHE:
        _CACHE.append(Path(tempfile.mkdtemp(prefix="msla-test-exports-")))
        atexit.register(shutil.rmtree, _CACHE[0], True)
    return _CACHE[0]


def shared_export(
    root: Path,
    name: str,
    must_pass: bool = False,
    weights: Optional[Path] = None,
    models_dir: Optional[Path] = None,
    **options,
) -> Path:
    """`run_export(ExportOptions(out=root/name, weights=weights, models_dir=models_dir, **options))`
    (models_dir: root/"no-models" unless given; it must hold no checkpoint: the weights are `weights`
    or seeded random ones), computed once per process, options and weights' content and copied for
    later callers. The copy's manifest names its own out, models_dir and weights, as a fresh export's
    would (its created_unix and timings_s are the first export's). `must_pass`: assert the export
    passed (parity within budget, no hazard: ExportResult.passed)."""
    import dataclasses
    import hashlib

    from msla_deploy.artifact.options import ExportOptions
    from msla_deploy.export.pipeline import run_export

    models_dir = root / "no-models" if models_dir is None else Path(models_dir)
    assert not models_dir.exists() or not any(models_dir.iterdir()), f"{models_dir} must be empty"
    recipe = dataclasses.asdict(ExportOptions(**options))
    if weights is not None:
        recipe["weights"] = [Path(weights).name, hashlib.sha256(Path(weights).read_bytes()).hexdigest()]
    key = json.dumps(recipe, sort_keys=True, default=str)
    if key not in _EXPORTS:
        where = Path(tempfile.mkdtemp(dir=_cache_root()))
        paths = {"out": where / "export", "models_dir": where / "no-models"}
        if weights is not None:
            paths["weights"] = where / Path(weights).name
            shutil.copyfile(weights, paths["weights"])
        result = run_export(ExportOptions(**paths, **options))
        _EXPORTS[key] = (paths, result.passed, result.parity)
    paths, passed, parity = _EXPORTS[key]
    assert passed or not must_pass, parity
    out = root / name
    shutil.copytree(paths["out"], out)
    manifest = out / "manifest.json"
    text = manifest.read_text()
    for field, there in paths.items():
        quoted = json.dumps(str(there))
        assert quoted in text, (field, quoted, text)
        text = text.replace(quoted, json.dumps(str({"out": out, "models_dir": models_dir, "weights": weights}[field])))
    manifest.write_text(text)
    return out


def export_random_b0(root: Path, name: str = "b0", **options) -> Path:
    """b0 at 64x128 with seeded random weights (an empty models dir: even where a checkpoint
    lies in ./models), exported into root/name (shared_export); `options`: more ExportOptions fields."""
    return shared_export(root, name, model="efficientvit-seg-b0-cityscapes", resolution=(64, 128), **options)


def export_random_classifier(root: Path, name: str = "cls", **options) -> Path:
    """The zoo's efficientvit-b0 classifier at 64x64 with seeded random weights (no checkpoint looked
    up), exported into root/name (shared_export); `options`: more ExportOptions fields (head="topk", ...)."""
    options.setdefault("resolution", (64, 64))
    # torchscript: a b0 classifier exports ~6x faster than with dynamo here; both exporters are
    # proven against upstream in tests/export/test_cls_upstream_parity.py
    options.setdefault("exporter", "torchscript")
    return shared_export(root, name, model="efficientvit-b0", **options)


def export_sam(root: Path, name: str = "sam", **options) -> Path:
    """efficientvit-sam-l0 (encoder side 512) with tests/zoo/sam_golden.py's seeded weights (the
    weights upstream's golden data was made with), exported into root/name; `options`: more
    ExportOptions fields (precision="fp16", head="single", max_prompts=8, ...). About a minute."""
    import torch

    from msla_deploy.artifact.options import ExportOptions
    from msla_deploy.export.pipeline import run_export
    from msla_deploy.zoo.sam import build_sam
    from tests.zoo import sam_golden

    out = root / name
    weights = root / f"{name}-weights.pt"
    if not weights.exists():
        torch.save(sam_golden.fill_model(build_sam("efficientvit-sam-l0")).state_dict(), weights)
    # the legacy exporter traces an fp16 encoder on CPU half convolutions (minutes): dynamo there
    options.setdefault("exporter", "dynamo" if options.get("precision") == "fp16" else "torchscript")
    model = "efficientvit-sam-l0"
    run_export(ExportOptions(model=model, weights=weights, out=out, models_dir=root / "none", **options))
    return out


# A user model file for FILE.py:FACTORY tests: one 1x1 convolution (exports in seconds), and
# factories that misbehave in the ways the tests need.
TINY_MODEL_FILE = """
import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        return self.conv(x)


def build():
    torch.manual_seed(0)
    return Tiny()


def build_one_class():
    model = Tiny()
    with torch.no_grad():
        model.conv.weight.zero_()
        model.conv.bias.copy_(torch.tensor([5.0, 0.0, 0.0, 0.0]))
    return model


def build_printing():
    print("hello from the factory")
    return Tiny()


class Broken(nn.Module):
    def forward(self, x):
        raise ValueError("forward is broken")


def build_broken():
    return Broken()
"""
