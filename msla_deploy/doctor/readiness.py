"""From findings to answers: which backends run here, and which commands can run, or why not.

The rules say what each command imports and opens (read off the commands themselves); they are
kept in this one table so that a new command or backend is one entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

from ..choices import ORT_BACKENDS as ORT_BACKEND_NAMES
from ..runtime.onnxruntime import PROVIDERS
from .probes import FIX_ORT, FIX_PILLOW, SERVE_PACKAGES, Finding

# ONNX Runtime backend names -> the provider that must really start for them (the first one it asks for)
ORT_BACKENDS = tuple((name, PROVIDERS[name][0]) for name in ORT_BACKEND_NAMES)


@dataclass
class Availability:
    """A backend or a command: can it run here; if not, why and the fix; if so, any caveat.
    A part of the DoctorReport record (report.py), written field by field."""

    name: str
    ready: bool
    reason: str = ""
    fix: str = ""
    note: str = ""
    backends: List[str] = field(default_factory=list)


def _missing(name: str, finding: Finding) -> Availability:
    return Availability(name, False, reason=f"{finding.name}: {finding.detail}".rstrip(": "), fix=finding.fix)


def backends(found: Dict[str, Finding]) -> Dict[str, Availability]:
    result: Dict[str, Availability] = {}
    ort = found["onnxruntime"]
    started = {p["provider"]: p for p in ort.data.get("providers", [])}
    for name, provider in ORT_BACKENDS:
        probe = started.get(provider)
        if "providers" not in ort.data or not ort.version:
            result[name] = _missing(name, ort)
        elif probe is None:
            hint = (
                FIX_ORT
                if provider == "CPUExecutionProvider"
                else (
                    "pip install onnxruntime-gpu instead of onnxruntime (a build matching this CUDA; on a Jetson, "
                    "NVIDIA's)"
                )
            )
            result[name] = Availability(
                name, False, reason=f"onnxruntime {ort.version} does not offer {provider}", fix=hint
            )
        elif not probe["started"]:
            result[name] = Availability(
                name,
                False,
                reason=f"{provider}: {probe['error']}",
                fix="install the CUDA/cuDNN (and for TensorRT, TensorRT) libraries this onnxruntime-gpu was built "
                "for, on a machine with a GPU",
            )
        else:
            result[name] = Availability(name, True)
    # TensorRT runs need the CUDA runtime too: Polygraphy and bench's timing both load libcudart
    result["trt"] = _needs("trt", found["tensorrt"], found["gpu"], found["cuda-runtime"]) or Availability("trt", True)
    result["torch"] = Availability("torch", True) if found["torch"].ok else _missing("torch", found["torch"])
    return result


def _needs(name: str, *findings: Finding) -> Optional[Availability]:
    """None when every finding is ok; else every missing one, with its fix (a user fixes them all)."""
    missing = [f for f in findings if not f.ok]
    if not missing:
        return None
    return Availability(
        name,
        False,
        reason="; ".join(_missing(name, f).reason for f in missing),
        fix="; ".join(dict.fromkeys(f.fix for f in missing if f.fix)),
    )


def _any_backend(
    name: str, usable: Dict[str, Availability], names: Sequence[str], needs: Sequence[Finding] = ()
) -> Availability:
    """Ready when every one of `needs` is there and at least one of the backends runs."""
    missing = _needs(name, *needs)
    if missing:
        return missing
    ready = [b for b in names if usable[b].ready]
    if not ready:
        first = usable[names[0]]
        tried = "; ".join(f"{b}: {usable[b].reason}" for b in names)
        return Availability(name, False, reason=f"no backend runs here ({tried})", fix=first.fix)
    return Availability(name, True, backends=ready)


def commands(
    found: Dict[str, Finding], usable: Dict[str, Availability], registered: Optional[Sequence[str]] = None
) -> List[Availability]:
    onnx, torch, ort, poly = found["onnx"], found["torch"], found["onnxruntime"], found["polygraphy"]
    trt, gpu, pillow = found["tensorrt"], found["gpu"], found.get("pillow")
    onnxscript = found.get("onnxscript")
    ort_names = [name for name, _ in ORT_BACKENDS]

    def export() -> Availability:
        missing = _needs("export", torch, onnx, ort)
        if missing:
            return missing
        note = (
            ""
            if onnxscript is None or onnxscript.ok
            else "onnxscript is missing: the dynamo exporter is off, --exporter torchscript works"
        )
        return Availability("export", True, note=note, backends=["torch", "ort-cpu"])

    def reference() -> Availability:
        missing = _needs("reference", torch, onnx)
        if missing:
            return missing
        note = "" if pillow is None or pillow.ok else f".npy pictures only: {FIX_PILLOW}"
        return Availability("reference", True, note=note, backends=["torch"])

    def build() -> Availability:
        missing = _needs("build", onnx, trt, gpu)
        return missing or Availability("build", True, backends=["trt"])

    def print_trtexec() -> Availability:
        missing = _needs("build --print-trtexec", onnx)
        if missing:
            return missing
        trtexec = found.get("trtexec")
        note = (
            ""
            if trtexec is None or trtexec.ok
            else "prints the command; running it needs trtexec (TensorRT), on the target"
        )
        return Availability("build --print-trtexec", True, note=note)

    def with_pictures(name: str) -> Callable[[], Availability]:
        def rule() -> Availability:
            result = _any_backend(name, usable, ort_names + ["trt"], needs=[onnx])
            if result.ready and pillow is not None and not pillow.ok:
                result.note = f".npy pictures only: {FIX_PILLOW}"
            return result

        return rule

    def serve() -> Availability:
        # serve starts PyTriton's tritonserver; tritonclient alone only talks to a server elsewhere
        extra = [found[name] for name in SERVE_PACKAGES if name in found]
        missing = _needs("serve", onnx, *extra)
        return missing or Availability("serve", True)

    rules: Dict[str, Callable[[], Availability]] = {
        "models": lambda: Availability("models", True),  # the zoo's sizes are data: no torch
        "export": export,
        "inspect": lambda: _needs("inspect", onnx) or Availability("inspect", True),
        "build": build,
        "build --print-trtexec": print_trtexec,
        "validate": lambda: _any_backend("validate", usable, ort_names + ["trt"], needs=[onnx, poly]),
        "reference": reference,
        "bench": lambda: _any_backend("bench", usable, ort_names + ["trt", "torch"], needs=[onnx]),
        "evaluate": with_pictures("evaluate"),
        "predict": with_pictures("predict"),
        "serve": serve,
        "doctor": lambda: Availability("doctor", True),
    }
    answers = []
    for name, rule in rules.items():
        if registered is not None and name.split()[0] not in registered:
            answers.append(
                Availability(
                    name,
                    False,
                    reason="not a command of this msla-deploy version",
                    fix="install a newer msla-deploy wheel",
                )
            )
            continue
        answers.append(rule())
    return answers
