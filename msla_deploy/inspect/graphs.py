"""`inspect` of a multi-graph artifact (SAM: an image encoder and a prompt decoder): one section per
graph the artifact's builds would parse, each the ordinary single-graph inspection.

What is read, per graph (artifact/graphs.py GraphRecord):

* without --target-trt: the graph's ONNX as exported (`encoder.onnx`: the mixed-precision fp16
  graph reads strongly typed; `decoder.onnx`: fp32), and beside an fp16 graph its fp32 ONNX
  (`encoder_fp32.onnx`) read as the weakly typed fp16 build (FP16 flag) that pins the record's
  fp32 nodes, which is how TensorRT 8.5 ... 10.11 build it;
* with --target-trt and --precision auto: exactly the ONNX `build` parses for that version, in the
  precision it builds it (trt.plan.graph_to_build, the same decision the segmentation inspection
  follows), so the two never look at different graphs;
* an explicit --precision applies to the graphs `build --precision` applies to
  (trt.build.PRECISION_GRAPHS: the encoder); the others read as exported.

The pins come from the manifest's record, not the ONNX's metadata: they are what `build` pins.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..artifact.manifest import Manifest
from .report import InspectReport


@dataclass
class GraphSection:
    role: str  # encoder | decoder
    file: str  # relative to the artifact directory
    read_as: str  # what this section assumes: "as exported", "weakly typed fp16 build (FP16 flag, N pins)", ...
    report: InspectReport

    @property
    def title(self) -> str:
        return f"{self.role}: {self.file} ({self.read_as})"

    def to_dict(self) -> Dict:
        return {"graph": self.role, "file": self.file, "read_as": self.read_as, **self.report.to_dict()}


@dataclass
class GraphsReport:
    directory: str
    task: Optional[str]
    sections: List[GraphSection]

    @property
    def passed(self) -> bool:
        return all(s.report.passed for s in self.sections)

    @property
    def errors(self) -> list:
        return [f for s in self.sections for f in s.report.errors]

    @property
    def warnings(self) -> list:
        return [f for s in self.sections for f in s.report.warnings]

    def to_dict(self) -> Dict:
        return {
            "passed": self.passed,
            "artifact": self.directory,
            "task": self.task,
            "graphs": [s.to_dict() for s in self.sections],
        }


def multi_graph_manifest(path: Path) -> Optional[Manifest]:
    """The manifest of a multi-graph artifact directory (or its manifest.json); None for anything else."""
    from ..artifact.manifest import read_manifest_if_any
    from ..artifact.names import MANIFEST_NAME

    path = Path(path)
    folder = path.parent if path.name == MANIFEST_NAME and path.is_file() else path
    if not folder.is_dir():
        return None
    manifest = read_manifest_if_any(folder)
    return manifest if manifest is not None and manifest.graphs else None


def _reads(directory: Path, manifest: Manifest, role: str, version, precision: str) -> List[Tuple[Path, str, object]]:
    """(ONNX, --precision to read it with, pins or None) for each section of one graph."""
    from ..trt.build import PRECISION_GRAPHS
    from ..trt.inputs import load_graph
    from ..trt.plan import graph_to_build

    record = manifest.graph(role)
    model = load_graph(directory, role, manifest)  # checks the files are there
    asked = precision if role in PRECISION_GRAPHS else "auto"
    exported = model.onnx_files.get(record.precision if record.precision in ("fp16", "int8") else "fp32")
    if asked == "auto" and version is not None:
        slot, typing, built = graph_to_build(model, version.version)
        weak_fp16 = typing == "weak" and built == "fp16"
        return [(model.onnx_files[slot], "fp16" if weak_fp16 else "auto", record.fp32_nodes if weak_fp16 else None)]
    if asked == "auto":
        reads = [(exported, "auto", None)]
        if record.precision == "fp16" and "fp32" in model.onnx_files:
            reads.append((model.onnx_files["fp32"], "fp16", record.fp32_nodes))
        return reads
    if asked == "fp32":  # the fp32 graph beside a lower-precision one
        return [(model.onnx_files.get("fp32", exported), "fp32", None)]
    # fp16 of an fp32 export: its graph with the FP16 flag and the recorded pins, as `build --precision fp16`
    weak = asked == "fp16" and record.precision == "fp32"
    return [(exported, asked, record.fp32_nodes if weak else None)]


def _read_as(report: InspectReport, pinned) -> str:
    precision = report.info["precision"]
    text = f"{precision['assumed']}, {precision['typing']} typing"
    if pinned is not None and precision["typing"] == "weak":
        text += f", {len(precision['pinned_fp32_nodes'])} nodes pinned to fp32 (the manifest's)"
    return text


def inspect_graphs(
    directory: Path, manifest: Manifest, target: Optional[str], precision: str = "auto", dla: bool = False
) -> GraphsReport:
    from ..artifact.names import MANIFEST_NAME
    from ..errors import BadInput
    from . import inspect_view, trt_support
    from .model_view import load

    version = trt_support.parse_target(target)
    if dla and version is None:
        raise BadInput(
            "--dla needs --target-trt: DLA support depends on the TensorRT version", "add e.g. --target-trt 10.3"
        )
    directory = Path(directory)
    if directory.name == MANIFEST_NAME:
        directory = directory.parent
    sections = []
    for record in manifest.graphs:
        for path, read_precision, pinned in _reads(directory, manifest, record.role, version, precision):
            profiles = {dim: tuple(p.to_list()) for dim, p in record.profile.items()}
            report = inspect_view(load(path), version, read_precision, dla, pinned, profiles)
            rel = Path(path).resolve().relative_to(directory.resolve()).as_posix()
            sections.append(GraphSection(record.role, rel, _read_as(report, pinned), report))
    return GraphsReport(str(directory), manifest.model.task, sections)
