"""What `validate ARTIFACT` points at: an export directory, an .onnx or an .engine, resolved to
the model file to run, the manifest that describes it (if any), its reference bundle, its
precision and where the report goes. Every problem is found here, before anything runs."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import onnx

from ..errors import BadInput
from ..artifact.names import MANIFEST_NAME, REFERENCE_DIR

ONNX_SUFFIX = ".onnx"
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")  # what TensorRT users call serialized engines
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
        return self.model_file.suffix in ENGINE_SUFFIXES

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
    from ..artifact.trust import check_manifest_paths

    check_manifest_paths(data, folder)  # its paths stay inside the directory
    return data


def load_onnx(path: Path) -> onnx.ModelProto:
    """The ONNX graph, or a one-line BadInput for a truncated or foreign file."""
    try:
        return onnx.load(str(path))
    except Exception as exc:  # protobuf DecodeError, external-data errors, ...: all mean "not a usable ONNX"
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BadInput(f"{path} is not a readable ONNX model ({detail}; truncated?)", "re-export it, or copy the file again") from None


def artifact_precision(model_file: Path, manifest: Optional[Dict], metadata: Dict[str, str]):
    """(precision, where it was read). An ONNX says it best itself (an fp16 export also holds an
    fp32 ONNX); an engine has no metadata we can read without TensorRT, so its manifest speaks."""
    options = (manifest or {}).get("options") if isinstance((manifest or {}).get("options"), dict) else {}
    if metadata.get(PRECISION_KEY):
        return metadata[PRECISION_KEY], f"ONNX metadata {PRECISION_KEY}"
    if model_file.suffix in ENGINE_SUFFIXES:
        record = engine_build_record(model_file, manifest)
        if record and record.get("precision"):
            return record["precision"], f"build record of {model_file.name}"
    if options.get("precision"):
        return options["precision"], "manifest options.precision"
    return "fp32", "default (the artifact records none)"


def budget_precision(artifact: "Artifact"):
    """The precision whose default budget applies, and why if it is not the artifact's own.

    A head that resizes bilinearly approximates upstream's bicubic resize, so it cannot meet the
    fp32 budget against a bicubic PyTorch reference; export judges it like fp16, and so does this."""
    options = (artifact.manifest or {}).get("options") or {}
    bilinear = options.get("upsample") == "bilinear"
    if not options.get("upsample") and artifact.onnx_model is not None:
        modes = {a.s.decode() for n in artifact.onnx_model.graph.node if n.op_type == "Resize" for a in n.attribute if a.name == "mode"}
        bilinear = "linear" in modes and "cubic" not in modes
    if artifact.precision == "fp32" and bilinear:
        return "fp16", "the head resizes bilinearly (upstream: bicubic), judged like fp16 as export does"
    return artifact.precision, None


def engine_build_record(engine: Path, manifest: Optional[Dict]) -> Optional[Dict]:
    """What `msla-deploy build` recorded about this engine: in the export's manifest ("builds"),
    or in build.json beside an engine built from a bare ONNX. The latest record wins."""
    records = list((manifest or {}).get("builds") or [])
    beside = engine.parent / "build.json"
    if not records and beside.is_file():
        try:
            records = list(json.loads(beside.read_text()).get("builds") or [])
        except (OSError, ValueError, AttributeError):
            records = []
    mine = [r for r in records if isinstance(r, dict) and Path(str((r.get("engine") or {}).get("file", ""))).name == engine.name]
    return mine[-1] if mine else None


def _engines(folder: Path) -> List[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix in ENGINE_SUFFIXES and p.is_file())


def resolve_artifact(path: Path, reference: Optional[Path], want_tensorrt: bool) -> Artifact:
    path = Path(path)
    if not path.exists():
        raise BadInput(f"{path}: no such file or directory", "pass an export directory, a .onnx or a .engine")
    if path.is_dir():
        kind, directory = "directory", path
        manifest = read_manifest_if_any(path)
        onnx_path = path / DEFAULT_ONNX
        engines = _engines(path)
        if want_tensorrt and len(engines) > 1:
            raise BadInput(f"{path} holds {len(engines)} engines ({', '.join(e.name for e in engines)})", "pass the one to validate")
        if want_tensorrt and engines:
            model_file = engines[0]  # a directory on a device that built its engine: validate that
        elif onnx_path.is_file():
            model_file = onnx_path
        else:
            raise BadInput(f"{path} has no {DEFAULT_ONNX}", "pass an export directory written by msla-deploy export, or the model file itself")
        onnx_path = onnx_path if onnx_path.is_file() else None
    elif path.suffix in (ONNX_SUFFIX, *ENGINE_SUFFIXES):
        kind, model_file = ("onnx" if path.suffix == ONNX_SUFFIX else "engine"), path
        manifest = read_manifest_if_any(path.parent)
        directory = path.parent if manifest is not None else None
        beside = path.parent / DEFAULT_ONNX
        onnx_path = path if kind == "onnx" else (beside if beside.is_file() else None)
    else:
        raise BadInput(f"{path}: not an .onnx, an .engine or a directory", "pass an export directory, a .onnx or a .engine")

    model = load_onnx(model_file) if model_file.suffix == ONNX_SUFFIX else None
    metadata = {p.key: p.value for p in model.metadata_props} if model is not None else {}

    precision, source = artifact_precision(model_file, manifest, metadata)
    if reference is None:
        reference = (path if kind == "directory" else path.parent) / REFERENCE_DIR
        if not reference.is_dir():
            raise BadInput(f"no reference bundle at {reference}", "pass --reference DIR (the reference/ folder of the export this artifact came from)")
    elif not Path(reference).is_dir():
        raise BadInput(f"--reference {reference}: not a directory", "pass the reference/ folder of an export")
    return Artifact(path, kind, model_file, directory, manifest, onnx_path, precision, source, Path(reference), model, metadata)
