"""The manifest of an export directory, read and written in one place.

(Being typed: see the artifact/runtime layers issue.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict

from .names import MANIFEST_NAME


def read_manifest(directory: Path) -> Dict[str, Any]:
    from .trust import check_manifest_paths

    with open(Path(directory) / MANIFEST_NAME) as f:
        data = json.load(f)
    if isinstance(data, dict):
        check_manifest_paths(data, Path(directory))  # its paths stay inside the directory
    return data
