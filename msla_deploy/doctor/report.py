"""`diagnose()`: everything doctor finds, as one typed record (DoctorReport), and its JSON form.

The JSON layout is the one `doctor --json` printed before records existed (a bug report pasted
then reads as version 1): components and commands keyed by name, and each component's own facts
(Finding.data) beside its name/ok/version/detail/fix, not nested.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Type

from ..records import R, Record
from . import probes
from .probes import Finding
from .readiness import Availability, backends, commands

# the order the report lists the components in
CORE = (
    "msla-deploy",
    "python",
    "torch",
    "onnx",
    "onnxruntime",
    "polygraphy",
    "tensorrt",
    "trtexec",
    "gpu",
    "cuda-runtime",
)


@dataclass
class DoctorReport(Record):
    """What this machine has (components, and the Jetson when it is one), which backends run,
    and which commands can run here or why not."""

    KIND = "msla-deploy/doctor"
    VERSION = 1

    components: List[Finding]
    jetson: Optional[Finding]
    backends: Dict[str, Availability]
    commands: List[Availability]
    cpu: Optional[str] = None
    seconds: float = 0.0

    def component(self, name: str) -> Finding:
        return next(c for c in self.components if c.name == name)

    def command(self, name: str) -> Availability:
        return next(c for c in self.commands if c.name == name)

    def to_dict(self) -> Dict[str, Any]:
        data = super().to_dict()
        data["components"] = {c.name: c.flat() for c in self.components}
        data["jetson"] = self.jetson.flat() if self.jetson is not None else None
        data["commands"] = {item["name"]: item for item in data["commands"]}
        return {key: data[key] for key in ("format", "components", "cpu", "jetson", "backends", "commands", "seconds")}

    @classmethod
    def from_dict(cls: Type[R], data: Any, source: str = "") -> R:
        """The keyed-by-name layout back into lists, each component's facts back into its data."""
        if isinstance(data, dict):
            data = dict(data)
            if isinstance(data.get("components"), dict):
                data["components"] = [Finding.nested(item) for item in data["components"].values()]
            if "jetson" in data:
                data["jetson"] = Finding.nested(data["jetson"])
            if isinstance(data.get("commands"), dict):
                data["commands"] = list(data["commands"].values())
        return super().from_dict(data, source)  # type: ignore[misc]


def diagnose(registered: Optional[Sequence[str]] = None) -> DoctorReport:
    """Probe this machine. `registered`: the CLI's command names (doctor passes them; those not
    among them are reported as not part of this version); None takes every command as present."""
    start = time.perf_counter()
    run = {
        "msla-deploy": probes.msla_deploy_itself,
        "python": probes.python,
        "torch": probes.torch,
        "onnx": probes.onnx,
        "onnxruntime": probes.onnxruntime,
        "polygraphy": probes.polygraphy,
        "tensorrt": probes.tensorrt,
        "trtexec": probes.trtexec,
        "gpu": probes.gpu,
        "cuda-runtime": probes.cuda_runtime,
    }
    found = {name: probes.guarded(name, run[name]) for name in CORE}
    try:
        optional = probes.optional_packages()
    except Exception as exc:  # noqa: BLE001 (doctor must report, not crash)
        optional = [probes.probe_failed("optional packages", exc)]
    found.update((finding.name, finding) for finding in optional)
    try:
        jetson = probes.jetson()
    except Exception as exc:  # noqa: BLE001
        jetson = probes.probe_failed("jetson", exc)
    from ..bench.environment import cpu_model

    usable = backends(found)
    report = DoctorReport(
        components=list(found.values()),
        jetson=jetson,
        backends=usable,
        commands=commands(found, usable, registered),
        cpu=cpu_model(),
    )
    report.seconds = round(time.perf_counter() - start, 3)  # as printed: the record reads back equal
    return report
