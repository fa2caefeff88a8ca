"""What `validate ARTIFACT` points at: an export directory, an .onnx or an .engine, resolved to
the model file to run, the manifest that describes it (if any), its reference bundle, its
precision and where the report goes. Every problem is found here, before anything runs."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional

import onnx

from ..errors import BadInput
from ..manifest import MANIFEST_NAME
from ..reference_bundle import REFERENCE_DIR

ONNX_SUFFIX, ENGINE_SUFFIX = ".onnx", ".engine"
DEFAULT_ONNX = "model.onnx"
PRECISION_KEY = "msla_deploy.precision"


@dataclass
class Artifact:
    path: Path  # as given
    kind: str  # "directory" | "onnx" | "engine"
    model_file: Path  # what runs: an .onnx or an .engine
    directory: Optional[Path]  # the export directory around it (the one with manifest.json), if any
    manifest: Optional[Dict]
    onnx_path: Optional[Path]  # the ONNX (for an engine: the one beside it, if any; for localize)
    precision: str
    precision_source: str
    reference_dir: Path
    onnx_model: Optional[onnx.ModelProto] = None  # the graph of model_file when that is an ONNX
    metadata: Dict[str, str] = field(default_factory=dict)  # ONNX metadata_props

    @property
    def is_engine(self) -> bool:
        return self.model_file.suffix == ENGINE_SUFFIX

    @property
    def model_name(self) -> Optional[str]:
        if self.manifest and isinstance(self.manifest.get("model"), dict):
            return self.manifest["model"].get("name")
        return self.metadata.get("msla_deploy.model")

    def default_report_dir(self) -> Path:
        if self.kind == "directory":
            return self.path / "validation"
        return self.path.parent / f"validation-{self.path.name}"

    def describe(self) -> Dict:
        return {
            "path": str(self.path), "name": self.path.name, "kind": self.kind, "model_file": str(self.model_file),
            "directory": None if self.directory is None else str(self.directory), "model": self.model_name,
            "precision": self.precision, "precision_source": self.precision_source,
            "recipe_sha256": (self.manifest or {}).get("recipe_sha256") or self.metadata.get("msla_deploy.recipe_sha256"),
        }


def read_manifest_if_any(folder: Path) -> Optional[Dict]:
    path = folder / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BadInput(f"{path} is not readable JSON ({exc})", "re-export, or copy the directory again") from None
    if not isinstance(data, dict):
        raise BadInput(f"{path} is not a manifest (not a JSON object)", "re-export, or copy the directory again")
    return data


def load_onnx(path: Path) -> onnx.ModelProto:
    """The ONNX graph, or a one-line BadInput for a truncated or foreign file."""
    try:
        return onnx.load(str(path))
    except Exception as exc:  # protobuf DecodeError, external-data errors, ...: all mean "not a usable ONNX"
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BadInput(f"{path} is not a readable ONNX model ({detail}; truncated?)", "re-export it, or copy the file again") from None


def _single_engine(folder: Path) -> Optional[Path]:
    engines = sorted(folder.glob(f"*{ENGINE_SUFFIX}"))
    return engines[0] if len(engines) == 1 else None


def resolve_artifact(path: Path, reference: Optional[Path], want_tensorrt: bool) -> Artifact:
    path = Path(path)
    if not path.exists():
        raise BadInput(f"{path}: no such file or directory", "pass an export directory, a .onnx or a .engine")
    if path.is_dir():
        kind, directory = "directory", path
        manifest = read_manifest_if_any(path)
        onnx_path = path / DEFAULT_ONNX
        engine = _single_engine(path)
        if want_tensorrt and engine is not None:
            model_file = engine  # a directory on a device that built its engine: validate that
        elif onnx_path.is_file():
            model_file = onnx_path
        else:
            raise BadInput(f"{path} has no {DEFAULT_ONNX}", "pass an export directory written by msla-deploy export, or the model file itself")
        onnx_path = onnx_path if onnx_path.is_file() else None
    elif path.suffix in (ONNX_SUFFIX, ENGINE_SUFFIX):
        kind, model_file = path.suffix[1:], path
        manifest = read_manifest_if_any(path.parent)
        directory = path.parent if manifest is not None else None
        beside = path.parent / DEFAULT_ONNX
        onnx_path = path if kind == "onnx" else (beside if beside.is_file() else None)
    else:
        raise BadInput(f"{path}: not an .onnx, an .engine or a directory", "pass an export directory, a .onnx or a .engine")

    model = load_onnx(model_file) if model_file.suffix == ONNX_SUFFIX else None
    metadata = {p.key: p.value for p in model.metadata_props} if model is not None else {}

    precision, source = "fp32", "default (the artifact records none)"
    if manifest and model_file.suffix == ENGINE_SUFFIX and isinstance(manifest.get("build"), dict) and manifest["build"].get("precision"):
        precision, source = manifest["build"]["precision"], "manifest build.precision"
    elif manifest and isinstance(manifest.get("options"), dict) and manifest["options"].get("precision"):
        precision, source = manifest["options"]["precision"], "manifest options.precision"
    elif metadata.get(PRECISION_KEY):
        precision, source = metadata[PRECISION_KEY], f"ONNX metadata {PRECISION_KEY}"

    if reference is None:
        reference = (path if kind == "directory" else path.parent) / REFERENCE_DIR
        if not reference.is_dir():
            raise BadInput(f"no reference bundle at {reference}", "pass --reference DIR (the reference/ folder of the export this artifact came from)")
    elif not Path(reference).is_dir():
        raise BadInput(f"--reference {reference}: not a directory", "pass the reference/ folder of an export")
    return Artifact(path, kind, model_file, directory, manifest, onnx_path, precision, source, Path(reference), model, metadata)
