"""Findings and the report that collects them (plain data, JSON-ready)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional

ERROR, WARNING = "error", "warning"


@dataclass
class Finding:
    severity: str  # "error" fails the command (exit 1), "warning" does not
    check: str  # short stable id, e.g. "eps-underflow", "opset", "dla-fallback"
    node: str  # the (first) node concerned, "" for graph-wide findings
    detail: str
    fix: str = ""
    op: str = ""
    module: Optional[str] = None  # PyTorch module path, where the graph records it
    module_source: Optional[str] = None  # "name_scopes" | "node_name" | "probe"
    nodes: List[str] = field(default_factory=list)  # all nodes when one finding groups several

    def to_dict(self) -> Dict:
        data = asdict(self)
        if not data["nodes"]:
            data["nodes"] = [self.node] if self.node else []
        return data


@dataclass
class InspectReport:
    findings: List[Finding]
    info: Dict

    @property
    def errors(self) -> List[Finding]:
        return [f for f in self.findings if f.severity == ERROR]

    @property
    def warnings(self) -> List[Finding]:
        return [f for f in self.findings if f.severity == WARNING]

    @property
    def passed(self) -> bool:
        return not self.errors

    def to_dict(self) -> Dict:
        return {
            "passed": self.passed,
            "errors": [f.to_dict() for f in self.errors],
            "warnings": [f.to_dict() for f in self.warnings],
            "info": self.info,
        }
