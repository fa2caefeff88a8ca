"""`diagnose()`: everything doctor finds, as one typed report (and its JSON form)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

from . import probes
from .readiness import Availability, backends, commands

# the order the report lists the components in
CORE = ("msla-deploy", "python", "torch", "onnx", "onnxruntime", "polygraphy", "tensorrt", "trtexec", "gpu", "cuda-runtime")


@dataclass
class DoctorReport:
    components: List[probes.Finding]
    jetson: Optional[probes.Finding]
    backends: Dict[str, Availability]
    commands: List[Availability]
    cpu: Optional[str] = None
    seconds: float = 0.0

    def component(self, name: str) -> probes.Finding:
        return next(c for c in self.components if c.name == name)

    def command(self, name: str) -> Availability:
        return next(c for c in self.commands if c.name == name)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "components": {c.name: c.to_dict() for c in self.components},
            "cpu": self.cpu,
            "jetson": self.jetson.to_dict() if self.jetson else None,
            "backends": {name: b.to_dict() for name, b in self.backends.items()},
            "commands": {c.name: c.to_dict() for c in self.commands},
            "seconds": round(self.seconds, 3),
        }


def diagnose(registered: Optional[Sequence[str]] = None) -> DoctorReport:
    """Probe this machine. `registered`: the CLI's command names (doctor passes them; those not
    among them are reported as not part of this version); None takes every command as present."""
    start = time.perf_counter()
    run = {
        "msla-deploy": probes.msla_deploy_itself, "python": probes.python, "torch": probes.torch, "onnx": probes.onnx,
        "onnxruntime": probes.onnxruntime, "polygraphy": probes.polygraphy, "tensorrt": probes.tensorrt,
        "trtexec": probes.trtexec, "gpu": probes.gpu, "cuda-runtime": probes.cuda_runtime,
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
    report = DoctorReport(components=list(found.values()), jetson=jetson, backends=usable,
                          commands=commands(found, usable, registered), cpu=cpu_model())
    report.seconds = time.perf_counter() - start
    return report
