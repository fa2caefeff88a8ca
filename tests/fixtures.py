"""Where the upstream golden data lives: shared/ beside the repository (as CI lays it out)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("MSLA_FIXTURES", REPO.parent / "shared" / "fixtures" / "upstream"))


def manifest_json(directory: Path) -> dict:
    """manifest.json as written on disk (tests check the file an export writes, not our reader)."""
    import json

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
    return subprocess.run([sys.executable, "-c", NO_TORCH, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120)


def one_error_line(result) -> str:
    """The single `error:` line a failing command prints (and no traceback anywhere)."""
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    return lines[0]


def export_random_b0(root: Path, name: str = "b0", **options) -> Path:
    """b0 at 64x128 with seeded random weights (an empty models dir: even where a checkpoint
    lies in ./models), exported into root/name; `options`: more ExportOptions fields."""
    from msla_deploy.artifact.options import ExportOptions
    from msla_deploy.export.pipeline import run_export

    out = root / name
    run_export(ExportOptions(model="efficientvit-seg-b0-cityscapes", resolution=(64, 128), out=out, models_dir=root / "no-models", **options))
    return out
