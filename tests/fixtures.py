"""Where the upstream golden data lives: shared/ beside the repository (as CI lays it out)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("MSLA_FIXTURES", REPO.parent / "shared" / "fixtures" / "upstream"))


def manifest_json(directory: Path) -> dict:
    """manifest.json as written on disk (tests check the file an export writes, not our reader)."""
    import json

    return json.loads((Path(directory) / "manifest.json").read_text())
