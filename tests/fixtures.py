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
