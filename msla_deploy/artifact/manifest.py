"""The manifest of an export directory as typed records, read and written in this module only.

The JSON layout is the one every export since the first has written ("format": "msla-deploy/1");
a manifest from an older export (no "precision" section, no "builds") reads with the defaults
those exports implied. Keys this version does not know are kept and written back unchanged, so
a newer tool's manifest survives a round trip through an older one.

Every problem (missing, unreadable, not an object, a field of the wrong type, a path that
leaves the directory) is one `ManifestError` (BadInput, exit 2) naming the file and the field.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from ..errors import BadInput
from .builds import BuildRecord, read_builds
from .files import write_json_atomic
from .graphs import GraphRecord, find_graph
from .names import MANIFEST_FORMAT, MANIFEST_NAME, ONNX_NAME
from .options import ExportOptions

REEXPORT = "re-export the directory, or copy it again from where it was exported"


class ManifestError(BadInput):
    """manifest.json is missing, unreadable or inconsistent."""


def _expect(value: Any, kind, where: str, path: Path):
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ManifestError(f"{path}: {where} is {type(value).__name__}, expected {names}", REEXPORT)
    return value


def relative_inside(text: Any, where: str, path: Path) -> str:
    """A path the manifest names: relative, and inside the artifact directory. Anything else
    would let a manifest (data) point the tool at files elsewhere on the machine."""
    _expect(text, str, where, path)
    normal = posixpath.normpath(text.replace("\\", "/"))
    if (
        not text
        or posixpath.isabs(normal)
        or normal == ".."
        or normal.startswith("../")
        or (len(text) > 1 and text[1] == ":")
    ):
        raise ManifestError(f"{path}: {where} = {text!r} is not a path inside the artifact directory", REEXPORT)
    return normal


@dataclass
class ModelRecord:
    name: Optional[str] = None
    source: Optional[str] = None  # "zoo" | "factory"
    spec: Optional[str] = None  # the zoo name or FILE.py:FACTORY as given
    num_classes: Optional[int] = None
    parameters: Optional[int] = None
    task: Optional[str] = None  # tasks.py's name; None (exported before tasks): segmentation
    # of FILE.py when spec is FILE.py:FACTORY: checked before it is imported again (trust.py)
    file_sha256: Optional[str] = None
    present: Optional[Tuple[str, ...]] = field(default=None, compare=False, repr=False)  # keys read (None: all)

    def to_dict(self) -> Dict[str, Any]:
        data = {
            "name": self.name,
            "source": self.source,
            "spec": self.spec,
            "num_classes": self.num_classes,
            "parameters": self.parameters,
        }
        if self.file_sha256 is not None:
            data["file_sha256"] = self.file_sha256
        if self.task is not None:
            data["task"] = self.task
        return data if self.present is None else {k: v for k, v in data.items() if k in self.present or v is not None}


@dataclass
class PrecisionRecord:
    """Which ONNX serves which precision, and which nodes stay fp32 in a weakly typed fp16 build."""

    precision: str = "fp32"
    attention_precision: str = "fp32"
    io_dtype: str = "fp32"
    upsample: str = "cubic"
    fp16_guards: bool = True
    onnx_files: Dict[str, str] = field(default_factory=lambda: {"fp32": ONNX_NAME})  # role -> relative path
    fp32_nodes: List[str] = field(default_factory=list)
    extra: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "precision": self.precision,
            "attention_precision": self.attention_precision,
            "io_dtype": self.io_dtype,
            "upsample": self.upsample,
            "fp16_guards": self.fp16_guards,
            "onnx_files": dict(self.onnx_files),
            "fp32_nodes": list(self.fp32_nodes),
            **self.extra,
        }


_KNOWN = (
    "format",
    "stage",
    "created_unix",
    "tool",
    "recipe_sha256",
    "model",
    "weights",
    "options",
    "precision",
    "exporter",
    "swapped_modules",
    "attention_plans",
    "onnx",
    "probes",
    "hazards",
    "parity",
    "environment",
    "timings_s",
    "warnings",
    "artifacts",
    "builds",
    "graphs",
)


@dataclass
class Manifest:
    format: str = MANIFEST_FORMAT
    stage: str = "export"
    created_unix: Optional[float] = None
    tool: Dict[str, Any] = field(default_factory=dict)
    recipe_sha256: Optional[str] = None
    model: ModelRecord = field(default_factory=ModelRecord)
    weights: Dict[str, Any] = field(default_factory=dict)
    options: Optional[ExportOptions] = None
    # the options section as read: keys a newer tool wrote (kept), and which keys it had at all (an
    # option added since is not invented into an older manifest on the way back)
    options_read: Optional[Dict[str, Any]] = field(default=None, compare=False, repr=False)
    precision: PrecisionRecord = field(default_factory=PrecisionRecord)
    exporter: Dict[str, Any] = field(default_factory=dict)
    swapped_modules: List[Dict[str, Any]] = field(default_factory=list)
    attention_plans: List[Dict[str, Any]] = field(default_factory=list)
    onnx: Dict[str, Any] = field(default_factory=dict)
    probes: Dict[str, str] = field(default_factory=dict)  # module path -> tensor of model.onnx
    hazards: Dict[str, Any] = field(default_factory=dict)
    parity: Dict[str, Any] = field(default_factory=dict)
    environment: Dict[str, Any] = field(default_factory=dict)
    timings_s: Dict[str, float] = field(default_factory=dict)
    warnings: List[str] = field(default_factory=list)
    artifacts: Optional[Dict[str, Dict[str, Any]]] = None  # relative path -> {sha256, bytes}
    builds: List[BuildRecord] = field(default_factory=list)
    # a multi-graph artifact's graphs (SAM: encoder and decoder); empty for a single-graph export
    graphs: List[GraphRecord] = field(default_factory=list)
    extra: Dict[str, Any] = field(default_factory=dict)  # keys of a newer tool, kept as they are
    # where it was read from, and the known sections it lacked (neither is written)
    path: Optional[Path] = field(default=None, compare=False, repr=False)
    absent: Tuple[str, ...] = field(default=(), compare=False, repr=False)

    def graph(self, role: str) -> GraphRecord:
        """The graph of this role (graphs.ENCODER, graphs.DECODER); BadInput if it lists none."""
        return find_graph(self.graphs, role)

    def build_for(self, engine_name: str) -> Optional[BuildRecord]:
        """The latest build record of the engine with this file name."""
        mine = [b for b in self.builds if Path(b.engine_file).name == engine_name]
        return mine[-1] if mine else None

    def to_dict(self) -> Dict[str, Any]:
        data: Dict[str, Any] = {
            "format": self.format,
            "stage": self.stage,
            "created_unix": self.created_unix,
            "tool": self.tool,
            "recipe_sha256": self.recipe_sha256,
            "model": self.model.to_dict(),
            "weights": self.weights,
            "options": self._options_dict(),
            "precision": self.precision.to_dict(),
            "exporter": self.exporter,
            "swapped_modules": self.swapped_modules,
            "attention_plans": self.attention_plans,
            "onnx": self.onnx,
            "probes": self.probes,
            "hazards": self.hazards,
            "parity": self.parity,
            "environment": self.environment,
            "timings_s": self.timings_s,
            "warnings": self.warnings,
        }
        if self.artifacts is not None:
            data["artifacts"] = self.artifacts
        if self.builds:
            data["builds"] = [b.to_dict() for b in self.builds]
        if self.graphs:
            data["graphs"] = [g.to_dict() for g in self.graphs]
        data.update(self.extra)
        # a section the file did not have and nobody set is not invented on the way back
        defaults = Manifest()
        for key in self.absent:
            if key in data and getattr(self, key) == getattr(defaults, key):
                del data[key]
        return data

    def _options_dict(self) -> Optional[Dict[str, Any]]:
        if self.options is None:
            return None
        data = self.options.to_dict()
        if self.options_read is None:
            return data
        defaults = ExportOptions().to_dict()
        kept = {k: v for k, v in data.items() if k in self.options_read or v != defaults.get(k)}
        return {**kept, **{k: v for k, v in self.options_read.items() if k not in data}}

    @classmethod
    def from_dict(cls, data: Any, path: Path = Path(MANIFEST_NAME)) -> "Manifest":
        _expect(data, dict, "the manifest", path)
        m = cls(path=path)
        m.extra = {k: v for k, v in data.items() if k not in _KNOWN}
        m.absent = tuple(k for k in _KNOWN if k not in data)
        m.format = _expect(data.get("format", MANIFEST_FORMAT), str, "format", path)
        m.stage = _expect(data.get("stage", "export"), str, "stage", path)
        m.created_unix = data.get("created_unix")
        m.tool = _expect(data.get("tool") or {}, dict, "tool", path)
        m.recipe_sha256 = _expect(data.get("recipe_sha256"), (str, type(None)), "recipe_sha256", path)
        model = _expect(data.get("model") or {}, dict, "model", path)
        num_classes = model.get("num_classes")
        m.model = ModelRecord(
            name=_expect(model.get("name"), (str, type(None)), "model.name", path),
            source=model.get("source"),
            spec=model.get("spec"),
            num_classes=_expect(num_classes, (int, type(None)), "model.num_classes", path),
            parameters=model.get("parameters"),
            file_sha256=_expect(model.get("file_sha256"), (str, type(None)), "model.file_sha256", path),
            task=_expect(model.get("task"), (str, type(None)), "model.task", path),
            present=tuple(model),
        )
        m.weights = _expect(data.get("weights") or {}, dict, "weights", path)
        options = data.get("options")
        if options is not None:
            m.options = ExportOptions.from_dict(_expect(options, dict, "options", path))
            m.options_read = dict(options)
        m.precision = _precision(data.get("precision"), path)
        for name in ("exporter", "onnx", "hazards", "parity", "environment", "timings_s"):
            setattr(m, name, _expect(data.get(name) or {}, dict, name, path))
        if "file" in m.parity:
            relative_inside(m.parity["file"], "parity.file", path)
        m.probes = _expect(data.get("probes") or {}, dict, "probes", path)
        for name in ("swapped_modules", "attention_plans", "warnings"):
            setattr(m, name, _expect(data.get(name) or [], list, name, path))
        if "artifacts" in data:
            artifacts = _expect(data["artifacts"], dict, "artifacts", path)
            for rel, entry in artifacts.items():
                relative_inside(rel, "an 'artifacts' entry", path)
                _expect(entry, dict, f"artifacts[{rel!r}]", path)
            m.artifacts = artifacts
        graphs = _expect(data.get("graphs") or [], list, "graphs", path)
        m.graphs = [
            GraphRecord.from_dict(g, f"{path}: graphs[{i}]", lambda text, where: relative_inside(text, where, path))
            for i, g in enumerate(graphs)
        ]
        m.builds = read_builds(data.get("builds"), str(path))
        for i, b in enumerate(m.builds):  # the ONNX a build names is the artifact's own (localize rebuilds from it)
            if b.onnx_file is not None:
                relative_inside(b.onnx_file, f"builds[{i}].onnx.file", path)
        return m


def _precision(section: Any, path: Path) -> PrecisionRecord:
    if section is None:  # exported before the precision contract: fp32, model.onnx, nothing pinned
        return PrecisionRecord()
    _expect(section, dict, "precision", path)
    files = section.get("onnx_files")
    if not isinstance(files, dict):
        raise ManifestError(
            f"{path}: 'precision' has no 'onnx_files' table", "re-export the directory with this version of msla-deploy"
        )
    onnx_files = {
        role: relative_inside(rel, f"precision.onnx_files.{role}", path)
        for role, rel in files.items()
        if role in ("fp32", "fp16", "int8")
    }
    if not onnx_files:
        raise ManifestError(f"{path} lists no fp32 or fp16 ONNX", "re-export the directory")
    nodes = _expect(section.get("fp32_nodes") or [], list, "precision.fp32_nodes", path)
    known = ("precision", "attention_precision", "io_dtype", "upsample", "fp16_guards", "onnx_files", "fp32_nodes")
    return PrecisionRecord(
        precision=_expect(section.get("precision", "fp32"), str, "precision.precision", path),
        attention_precision=str(section.get("attention_precision", "fp32")),
        io_dtype=str(section.get("io_dtype", "fp32")),
        upsample=str(section.get("upsample", "cubic")),
        fp16_guards=bool(section.get("fp16_guards", True)),
        onnx_files=onnx_files,
        fp32_nodes=[str(n) for n in nodes],
        extra={k: v for k, v in section.items() if k not in known},
    )


def manifest_path(directory: Path) -> Path:
    return Path(directory) / MANIFEST_NAME


def read_manifest_if_any(directory: Path) -> Optional[Manifest]:
    """The directory's manifest, None if it has none; ManifestError if it is broken."""
    path = manifest_path(directory)
    if not path.is_file():
        return None
    return read_manifest(directory)


def read_manifest(directory: Path) -> Manifest:
    path = manifest_path(directory)
    if not path.is_file():
        raise ManifestError(
            f"{Path(directory)} has no {MANIFEST_NAME}: not an export directory",
            "run `msla-deploy export` first, or pass the .onnx file itself",
        )
    try:
        data = json.loads(path.read_text())
    except RecursionError:
        raise ManifestError(f"{path} is not usable JSON (nested too deeply)", REEXPORT) from None
    except (OSError, ValueError) as exc:
        raise ManifestError(f"{path} is not readable JSON ({exc})", REEXPORT) from None
    return Manifest.from_dict(data, path)


def write_manifest(directory: Path, manifest: Manifest) -> Path:
    path = manifest_path(directory)
    write_json_atomic(path, manifest.to_dict())
    return path
