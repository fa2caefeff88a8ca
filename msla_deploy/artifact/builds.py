"""The record of one `msla-deploy build`, and build.json: written by trt/build.py, read here by the
artifact layer (which engine came from which ONNX, how to load it) and by validate, bench, serve.

An export directory keeps its builds in manifest.json ("builds", a list of these records); an
engine built from a bare ONNX keeps them in build.json beside it. Records written before this
module existed have no "format" key and read as version 1; keys a newer tool added are kept and
written back unchanged, as the manifest keeps its own.

torch-free, TensorRT-free, Python 3.8: the bottom layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, List, Optional, Type, TypeVar

from ..records import Record, RecordError
from .names import BUILD_RECORD_NAME, MANIFEST_FORMAT

B = TypeVar("B", bound="BuildRecord")


@dataclass
class FileEntry:
    """A file the build wrote or read, relative to the export directory where it lies inside."""

    file: str
    sha256: str
    bytes: int


@dataclass
class TimingCacheEntry(FileEntry):
    loaded: bool = False  # an existing cache was loaded (and updated) rather than started anew


@dataclass
class OnnxEntry(FileEntry):
    role: str = "fp32"  # which of the export's graphs: fp32, fp16, int8


@dataclass
class Fp32Layers:
    pinned: List[str] = field(default_factory=list)  # layers TensorRT was told to keep in fp32
    unmatched_nodes: List[str] = field(default_factory=list)  # recorded fp32 nodes with no layer of that name


@dataclass
class DlaBuild:
    core: int
    gpu_fallback: bool
    forecast: Optional[Dict[str, Any]] = None  # trt.dla.Preflight, the rule table's forecast
    tensorrt_gpu_layers: Optional[List[str]] = None  # what TensorRT put on the GPU after all


@dataclass
class BuildRecord(Record):
    """One engine build: the files, the plan, the TensorRT and GPU it ran on."""

    KIND = "msla-deploy/build"
    VERSION = 1

    stage: str = "build"
    created_unix: Optional[float] = None
    tool: Dict[str, Any] = field(default_factory=dict)
    engine: Optional[FileEntry] = None
    layer_info: Optional[FileEntry] = None  # None: this TensorRT cannot describe its layers
    timing_cache: Optional[TimingCacheEntry] = None
    onnx: Optional[OnnxEntry] = None
    precision: Optional[str] = None
    typing: Optional[str] = None  # strong | weak
    options: Dict[str, Any] = field(default_factory=dict)  # trt.options.BuildOptions as given
    plan: Dict[str, Any] = field(default_factory=dict)  # trt.plan.BuildPlan, paths relative to the export
    trtexec_equivalent: Optional[str] = None
    tensorrt: Dict[str, Any] = field(default_factory=dict)  # version, distribution
    cuda: Dict[str, Any] = field(default_factory=dict)  # driver_version, runtime_version
    gpu: Dict[str, Any] = field(default_factory=dict)  # index, name, compute_capability, driver_cuda_version
    fp32_layers: Fp32Layers = field(default_factory=Fp32Layers)
    dla: Optional[DlaBuild] = None
    graph: Optional[str] = None  # a multi-graph artifact's graph this engine runs (SAM: encoder | decoder)
    warnings: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    build_seconds: Optional[float] = None
    timings_s: Dict[str, float] = field(default_factory=dict)
    environment: Dict[str, Any] = field(default_factory=dict)
    # keys of a newer tool's record, written back as they were read (not a key of its own)
    extra: Dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    # what the readers ask of a build
    @property
    def engine_file(self) -> str:
        return self.engine.file if self.engine is not None else ""

    @property
    def onnx_file(self) -> Optional[str]:
        return self.onnx.file if self.onnx is not None else None

    @property
    def version_compatible(self) -> bool:
        return bool(self.options.get("version_compatible"))

    @property
    def dla_core(self) -> Optional[int]:
        return self.dla.core if self.dla is not None else None

    def to_dict(self) -> Dict[str, Any]:
        data = super().to_dict()
        extra = data.pop("extra")
        return {**data, **{k: v for k, v in extra.items() if k not in data}}

    @classmethod
    def from_dict(cls: Type[B], data: Any, source: str = "") -> B:
        record = super().from_dict(data, source)
        known = {f.name for f in fields(cls)} | {"format"}
        record.extra = {k: v for k, v in data.items() if k not in known}
        return record


def read_builds(entries: Any, source: str) -> List[BuildRecord]:
    """A "builds" list (of a manifest or build.json), each entry read as the record it is."""
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise RecordError(f"{source}: builds is {type(entries).__name__}, expected list", BuildRecord._fix())
    return [
        BuildRecord.from_dict(b, f"{source}: builds[{i}]" if source else f"builds[{i}]") for i, b in enumerate(entries)
    ]


@dataclass
class BuildsFile(Record):
    """build.json beside an engine built from a bare ONNX (no manifest to hold its record)."""

    KIND = "msla-deploy/builds"
    VERSION = 1

    onnx: str = ""  # the ONNX the engines were built from, as given
    stage: str = "build"
    builds: List[BuildRecord] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: Any, source: str = "") -> "BuildsFile":
        if isinstance(data, dict) and data.get("format") == MANIFEST_FORMAT:  # written before records existed
            data = {k: v for k, v in data.items() if k != "format"}
        if not isinstance(data, dict):
            return super().from_dict(data, source)
        found = super().from_dict({k: v for k, v in data.items() if k != "builds"}, source)
        found.builds = read_builds(data.get("builds"), source)
        return found

    @classmethod
    def read_beside(cls, engine: Path) -> Optional["BuildsFile"]:
        """The build.json beside `engine`; None when there is none (RecordError when it is broken)."""
        path = Path(engine).parent / BUILD_RECORD_NAME
        return cls.read(path) if path.is_file() else None

    @classmethod
    def _fix(cls) -> str:
        return "delete it (the engines beside it lose their record), or copy it again"
