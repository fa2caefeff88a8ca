"""What the parity checks write: parity.json (export) and validate's report.json, as typed records.

    OutputRow         one output's statistics and verdict (a row of both files)
    ParityCheck       one comparison of the export (a runtime or proxy against PyTorch fp32)
    ParityRecord      parity.json: every check, the primary artifact's first
    ValidateReport    validate's report.json (report.md and junit.xml are rendered from it)

The JSON keys are the ones these files have had since the first export; a statistic that
could not be measured (NaN: no finite pair of values; the NaN/Inf counts say why) is None here
and null on disk, as it always was. numpy-free: a report reads back without the runtime.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from ..records import Record
from .budgets import Budget, Check
from .config import BudgetChoice


def measured(value: Any) -> Optional[float]:
    """A statistic as a report holds it: None where there is none or it is not a finite number."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


_STATISTICS = (
    "max_abs",
    "mean_abs",
    "p99_abs",
    "max_abs_reference",
    "cosine",
    "argmax_agreement",
    "max_rel",
    "rel_floor",
    "miou",
    "dominant_class_share",
    "relative_max_abs",
    "topk_overlap",
    "mask_iou",
    "mask_iou_min",
)


@dataclass
class OutputRow:
    """One output compared with its reference (metrics.OutputParity, as the reports write it)."""

    name: str
    shape: List[int]
    # error statistics; None for an integer label map (no error magnitudes) or when not measurable
    max_abs: Optional[float]
    mean_abs: Optional[float]
    p99_abs: Optional[float]
    max_abs_reference: Optional[float]
    cosine: Optional[float]
    nan_count: int
    inf_count: int
    reference_nonfinite: int
    argmax_agreement: Optional[float]  # fraction of pixels with the same label; None if not logits
    failures: List[str] = field(default_factory=list)
    max_rel: Optional[float] = None
    rel_floor: Optional[float] = None
    miou: Optional[float] = None
    # per class: {class, reference_pixels, candidate_pixels, iou, change} (+ name in validate's
    # report); a dict because "class" cannot be a field name
    class_iou: Optional[List[Dict[str, Any]]] = None
    measured_by: Dict[str, str] = field(default_factory=dict)  # statistic -> tool (absent: numpy)
    labels: bool = False
    dominant_class: Optional[int] = None
    dominant_class_share: Optional[float] = None
    vacuous_note: Optional[str] = None
    relative_max_abs: Optional[float] = None  # max |error| / peak |reference|
    topk_overlap: Optional[float] = None  # classification: shared top-5 classes (metrics.topk_overlap)
    near_ties: Optional[int] = None  # classification: pictures left out of top-1 agreement (Budget.near_tie)
    mask_iou: Optional[float] = None  # SAM's masks: mean IoU of the binarised masks (metrics.mask_ious)
    mask_iou_min: Optional[float] = None  # and the worst mask's
    kind: Optional[str] = None  # tasks.OutputKind, where the comparison was told it
    passed: Optional[bool] = None  # None on construction: no failures

    def __post_init__(self) -> None:
        if self.passed is None:
            self.passed = not self.failures

    @classmethod
    def of(cls, result: Any, **more: Any) -> "OutputRow":
        """The row of a metrics.OutputParity (every field it has, and its derived values)."""
        values = {
            f.name: copy.deepcopy(getattr(result, f.name)) for f in fields(cls) if f.init and hasattr(result, f.name)
        }
        values.update(more)
        for name in _STATISTICS:
            values[name] = measured(values.get(name))
        values["passed"] = bool(result.passed)
        return cls(**values)


@dataclass
class ValidatedOutput(OutputRow):
    """An output of validate's report: its row and every budget criterion checked on it."""

    checks: List[Check] = field(default_factory=list)


@dataclass
class ParityCheck:
    """One comparison made by the export: `artifact` run on `runtime` against PyTorch fp32."""

    label: str
    artifact: str
    runtime: Dict[str, Any]  # name, version and what ran (providers, or the proxy's mode)
    budget: Budget
    passed: bool
    outputs: List[OutputRow]

    @classmethod
    def of(
        cls, label: str, artifact: str, runtime: Mapping[str, Any], budget: Budget, results: Sequence[Any]
    ) -> "ParityCheck":
        """From the metrics.OutputParity of each output."""
        rows = [OutputRow.of(r) for r in results]
        return cls(label, artifact, dict(runtime), budget, all(r.passed for r in rows), rows)


@dataclass
class ParityRecord(Record):
    """parity.json: the export's checks against PyTorch fp32; the primary artifact's (first
    check's) runtime, budget and outputs also at the top, where readers have always found them."""

    KIND = "msla-deploy/parity"
    VERSION = 1

    passed: bool
    reference: str
    runtime: Dict[str, Any]
    budget: Budget
    outputs: List[OutputRow]
    checks: List[ParityCheck]

    @classmethod
    def of(cls, checks: Sequence[ParityCheck], reference: str = "pytorch fp32") -> "ParityRecord":
        primary = checks[0]
        return cls(
            all(c.passed for c in checks), reference, primary.runtime, primary.budget, primary.outputs, list(checks)
        )

    def failures(self) -> List[str]:
        """ "check: output failure" for every failed criterion."""
        return [f"{c.label}: {f}" for c in self.checks for o in c.outputs for f in o.failures]


# --- validate's report -------------------------------------------------------------------------


@dataclass
class ProbeDrift:
    """One probe tensor of the ONNX against the PyTorch module output it stands for."""

    module: str
    tensor: str
    shape: List[int]
    max_abs: Optional[float]  # None: no finite pair of values
    peak: float
    relative: Optional[float]  # max |error| / max |reference| of this tensor
    cosine: Optional[float]
    nonfinite: int  # NaN/Inf in the artifact where PyTorch is finite
    offender: bool


@dataclass
class LocalizeCriterion:
    max_relative: float
    min_cosine: float
    rule: str


@dataclass
class Localization:
    """Where the numbers start to drift (validate --localize)."""

    first_offender: Optional[str]  # None: every probe within the limit
    criterion: LocalizeCriterion
    input: str
    runtime: Dict[str, Any]
    probes: List[ProbeDrift]  # in execution order
    ranked: List[str]  # modules, worst first
    notes: List[str] = field(default_factory=list)


@dataclass
class ArtifactInfo:
    """What was validated (artifact.resolve.Artifact.describe) and whether it still is the export's."""

    path: str
    name: str
    kind: str
    model_file: str
    directory: Optional[str]
    model: Optional[str]
    precision: str
    precision_source: str
    recipe_sha256: Optional[str] = None
    modified_after_export: List[str] = field(default_factory=list)
    # the manifest's weights.source (checkpoint, random, factory); None: no manifest
    weights_source: Optional[str] = None
    weights_warning: Optional[str] = None  # said in the header and the report when the weights are random

    @classmethod
    def of(cls, described: Mapping[str, Any], modified: Sequence[str] = (), **more: Any) -> "ArtifactInfo":
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in described.items() if k in known}
        values.update(more)
        return cls(**values, modified_after_export=list(modified))


@dataclass
class ReferenceInfo:
    directory: str
    samples: int
    source: str  # who computed it, and whether real pictures are among the inputs
    info: Dict[str, Any] = field(default_factory=dict)  # the bundle's reference.json


@dataclass
class ValidateReport(Record):
    """validate's report.json: the verdict, what ran where, under which budget, every output."""

    KIND = "msla-deploy/validate"
    VERSION = 1

    tool: Dict[str, str]
    passed: bool
    artifact: ArtifactInfo
    reference: ReferenceInfo
    backend: Dict[str, Any]  # requested, used, and the session's description (runtime, version, ran_on, ...)
    budget: BudgetChoice
    outputs: List[ValidatedOutput]
    localization: Optional[Localization] = None
    environment: Dict[str, Any] = field(default_factory=dict)
    warnings: List[str] = field(default_factory=list)
    pictures: Dict[str, Dict[str, Any]] = field(default_factory=dict)  # output -> its picture files (pictures.py)
    timings_s: Dict[str, float] = field(default_factory=dict)
    files: Dict[str, str] = field(default_factory=dict)  # json, markdown, junit (+ junit_extra): set when written

    @property
    def report_dir(self) -> Optional[Path]:
        return Path(self.files["json"]).parent if self.files.get("json") else None

    def failures(self) -> List[str]:
        """ "output: failure" for every failed criterion."""
        return [f"{o.name}: {f}" for o in self.outputs for f in o.failures]
