"""The manifest of an export directory, read and written in one place.

(Being typed: see the artifact/runtime layers issue.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict

from .names import MANIFEST_NAME


def read_manifest(directory: Path) -> Dict[str, Any]:
    with open(Path(directory) / MANIFEST_NAME) as f:
        return json.load(f)
