"""Hashes, environment capture and atomic writes: what every stage's files are made of.

torch-free: the runtime stages (on a Jetson) write manifests and reports too.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
from importlib import metadata
from pathlib import Path
from typing import Any, Dict, Iterable, Optional

from ..atomic import write_bytes_atomic  # noqa: F401  (below records, which write with it; imported from here by every stage)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_json(data: Any) -> str:
    """Hash of a JSON-able value in canonical form (sorted keys, no whitespace)."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def package_version(name: str) -> Optional[str]:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


PACKAGES = (
    "msla-deploy",
    "torch",
    "onnx",
    "onnxscript",
    "onnxruntime",
    "onnxruntime-gpu",
    "numpy",
    "polygraphy",
    "tensorrt",
)


def environment(packages: Iterable[str] = PACKAGES) -> Dict[str, Any]:
    """Versions of the tools that shaped an artifact (None where not installed)."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "packages": {name: package_version(name) for name in packages},
    }


def strict_json_value(data: Any) -> Any:
    """NaN and infinities become null: they are not JSON, and strict parsers (JavaScript, Go)
    reject the whole document. The NaN/Inf counts next to such values say what happened."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: strict_json_value(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [strict_json_value(v) for v in data]
    return data


def json_text(data: Any) -> str:
    return json.dumps(strict_json_value(data), indent=2, default=str, allow_nan=False) + "\n"


def read_json(path: Path, fix: str) -> Any:
    """A JSON file's value; unreadable, undecodable, invalid or absurdly nested JSON is BadInput
    naming the file (json raises RecursionError for deep nesting, which is no bug of ours)."""
    from ..errors import BadInput

    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInput(f"{path}: no such file", fix) from None
    except RecursionError:
        raise BadInput(f"{path} is not usable JSON (nested too deeply)", fix) from None
    except (OSError, ValueError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise BadInput(f"{path} is not readable JSON ({str(exc)[:120]})", fix) from None


def write_json_atomic(path: Path, data: Any) -> None:
    write_bytes_atomic(path, json_text(data).encode())


def describe_files(root: Path, relative_paths: Iterable[str]) -> Dict[str, Dict[str, Any]]:
    """sha256 and size of each artifact, keyed by its path relative to the artifact directory."""
    out = {}
    for rel in relative_paths:
        path = root / rel
        out[rel] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    return out
