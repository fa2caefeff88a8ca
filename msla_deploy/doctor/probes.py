"""What is installed here and what really works, each probe on its own and best-effort.

No probe imports torch (its version and CUDA build are read from its metadata and its version.py
file), and no probe raises: a probe that breaks on an odd machine becomes a Finding saying so,
because `doctor` is what a user runs when things are already broken.
"""

from __future__ import annotations

import importlib.util
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from ..artifact.files import package_version
from ..errors import MissingRuntime, install_extra, one_line_text
from ..records import to_jsonable
from ..runtime.onnxruntime import import_onnxruntime  # imports onnxruntime only when called

TOOL_TIMEOUT_S = 5.0

# Fixes named in the report; the TensorRT one is trt/runtime.py's own.
FIX_TORCH = (
    "pip install torch (the build for this machine: CPU, CUDA, or NVIDIA's Jetson wheel), then "
    f"{install_extra('export')}"
)
FIX_ONNXSCRIPT = f"{install_extra('export')} (brings onnxscript)"
FIX_ORT = (
    "pip install onnxruntime (CPU) or onnxruntime-gpu (CUDA; on a Jetson NVIDIA's build for its JetPack), never both"
)
FIX_POLYGRAPHY = "pip install 'polygraphy>=0.53' (part of the base install)"
FIX_PILLOW = "pip install Pillow (needed only for .png/.jpg pictures; .npy always works)"
FIX_ONNX = "pip install 'onnx>=1.15' (part of the base install)"

# Optional packages that switch features on; (distribution, import name, what it is for)
OPTIONAL_PACKAGES = (
    ("Pillow", "PIL", "reading .png/.jpg pictures (reference, evaluate, predict)"),
    ("onnxscript", "onnxscript", "the dynamo exporter (export)"),
    ("tomli", "tomli", "reading [tool.msla-deploy] from pyproject.toml on Python < 3.11"),
    ("tritonclient", "tritonclient", "talking to a Triton server (triton:// backends)"),
    ("nvidia-pytriton", "pytriton", "running a Triton server here (serve)"),
)
SERVE_PACKAGES = ("tritonclient", "nvidia-pytriton")  # the serve extra: a finding each


@dataclass
class Finding:
    """One component: is it there, which version, what it said, how to get it. `data`: the facts
    of this component alone (the providers that started, the GPU, the Jetson's release ...): each
    probe has its own, so they stay a mapping of plain JSON values."""

    name: str
    ok: bool
    version: Optional[str] = None
    detail: str = ""
    fix: str = ""
    data: Dict[str, Any] = field(default_factory=dict)

    def flat(self) -> Dict[str, Any]:
        """The report's JSON form: the component's facts beside its fields, as doctor has always printed."""
        common = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "data"}
        return to_jsonable({**common, **self.data})

    @classmethod
    def nested(cls, flat: Any) -> Any:
        """`flat()` undone: the keys that are not fields go back into `data` (anything but an object
        is left for the record reader to refuse)."""
        if not isinstance(flat, dict):
            return flat
        names = {f.name for f in fields(cls)} - {"data"}
        return {
            **{k: v for k, v in flat.items() if k in names},
            "data": {k: v for k, v in flat.items() if k not in names},
        }


def probe_failed(name: str, exc: BaseException) -> Finding:
    return Finding(name, False, detail=f"the probe itself failed: {type(exc).__name__}: {one_line_text(exc)}")


def guarded(name: str, probe: Callable[[], Finding]) -> Finding:
    """Run a probe; a bug or an odd machine becomes a failed Finding, never a traceback."""
    try:
        return probe()
    except (Exception, SystemExit) as exc:  # noqa: BLE001 (doctor must report, not crash; a package may exit on import)
        return probe_failed(name, exc)


def importable(module: str) -> bool:
    """Whether `import module` would find it, without importing it (a blocked import counts as no)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def python() -> Finding:
    return Finding(
        "python",
        True,
        platform.python_version(),
        detail=sys.executable,
        data={
            "implementation": platform.python_implementation(),
            "platform": platform.platform(),
            "machine": platform.machine(),
        },
    )


def msla_deploy_itself() -> Finding:
    from .. import __file__ as location
    from .. import __version__

    return Finding("msla-deploy", True, __version__, detail=str(Path(location).parent))


_TORCH_CUDA = re.compile(r"^cuda\s*(?::[^=\n]*)?=\s*(?:None|(['\"])(?P<value>[^'\"\n]*)\1)", re.MULTILINE)


def torch() -> Finding:
    """Version and CUDA build of torch from its files: importing torch takes seconds and the point
    of this machine may be that it has none."""
    version = package_version("torch")
    if not importable("torch"):
        detail = "not installed" if version is None else f"metadata says {version}, but `import torch` cannot find it"
        return Finding("torch", False, version, detail=detail, fix=FIX_TORCH, data={"cuda_build": None})
    spec = importlib.util.find_spec("torch")
    locations = list(spec.submodule_search_locations or []) if spec else []
    cuda_build: Optional[str] = None
    for location in locations:
        try:
            text = (Path(location) / "version.py").read_text()
        except OSError:
            continue
        match = _TORCH_CUDA.search(text)
        if match:
            cuda_build = match.group("value")
        break
    build = f"CUDA {cuda_build} build" if cuda_build else "CPU build (no CUDA)"
    return Finding(
        "torch", True, version, detail=f"{build}; {locations[0] if locations else '?'}", data={"cuda_build": cuda_build}
    )


def onnx() -> Finding:
    try:
        import onnx as onnx_module
    except ImportError as exc:
        return Finding(
            "onnx", False, package_version("onnx"), detail=f"cannot import: {one_line_text(exc)}", fix=FIX_ONNX
        )
    return Finding("onnx", True, onnx_module.__version__, detail=f"opset up to {onnx_module.defs.onnx_opset_version()}")


def _tiny_model() -> bytes:
    """A one-node ONNX (Relu) every ONNX Runtime since 1.10 loads: IR 8, opset 13."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "msla_deploy_doctor", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8).SerializeToString()


@dataclass
class ProviderStart:
    """One ONNX Runtime provider tried on its own (kept in the onnxruntime Finding's data)."""

    provider: str
    started: bool  # it ran the session itself, and computed Relu right
    ran_on: Optional[str]  # the provider the session really used
    error: Optional[str]


def start_provider(ort: Any, model: bytes, provider: str) -> ProviderStart:
    """Open a session with `provider` alone, run it once, and read back what really ran it:
    onnxruntime-gpu lists CUDA on machines without a usable GPU and quietly runs on the CPU."""
    import numpy as np

    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(model, sess_options=options, providers=[provider])
        result = session.run(None, {"x": np.array([[-1.0, 2.0, -3.0, 4.0]], dtype=np.float32)})[0]
        ran_on = session.get_providers()[0]
    except Exception as exc:  # noqa: BLE001 (any failure to start is the finding)
        return ProviderStart(provider, False, None, one_line_text(exc))
    correct = np.array_equal(np.asarray(result), np.array([[0.0, 2.0, 0.0, 4.0]], dtype=np.float32))
    started = ran_on == provider and correct
    error = None
    if ran_on != provider:
        error = f"listed, but the session ran on {ran_on} (its libraries or a usable GPU are missing)"
    elif not correct:
        error = f"ran, but computed {np.asarray(result).tolist()} for Relu"
    return ProviderStart(provider, started, ran_on, error)


def onnxruntime() -> Finding:
    both = [d for d in ("onnxruntime", "onnxruntime-gpu") if package_version(d)]
    try:
        ort = import_onnxruntime()
    except MissingRuntime as exc:
        return Finding(
            "onnxruntime",
            False,
            detail=exc.problem,
            fix=exc.fix or FIX_ORT,
            data={"available_providers": [], "providers": []},
        )
    model = _tiny_model()
    listed = list(ort.get_available_providers())
    providers = [start_provider(ort, model, p) for p in listed]
    works = [p.provider for p in providers if p.started]
    detail = f"really start: {', '.join(works) or 'none'}"
    quiet = [p.provider for p in providers if not p.started]
    if quiet:
        detail += f"; listed but do not start: {', '.join(quiet)}"
    fix = ""
    if len(both) > 1:
        detail += "; BOTH onnxruntime and onnxruntime-gpu are installed (they overwrite each other's files)"
        fix = "pip uninstall -y onnxruntime onnxruntime-gpu, then install exactly one"
    return Finding(
        "onnxruntime",
        "CPUExecutionProvider" in works,
        str(ort.__version__),
        detail=detail,
        fix=fix,
        data={"distributions": both, "available_providers": listed, "providers": [asdict(p) for p in providers]},
    )


def polygraphy() -> Finding:
    from ..runtime.polygraphy_env import import_polygraphy

    try:
        module = import_polygraphy()
    except MissingRuntime as exc:
        return Finding(
            "polygraphy", False, package_version("polygraphy"), detail=exc.problem, fix=exc.fix or FIX_POLYGRAPHY
        )
    return Finding("polygraphy", True, str(module.__version__))


def tensorrt() -> Finding:
    """Version, the file it was imported from, and the distribution that installed it (none for
    JetPack's apt package, which is how a Jetson gets it)."""
    from ..trt.runtime import import_tensorrt, tensorrt_distribution

    distribution = tensorrt_distribution()
    try:
        trt = import_tensorrt()
    except MissingRuntime as exc:
        return Finding(
            "tensorrt",
            False,
            distribution["version"] if distribution else None,
            detail=exc.problem,
            fix=exc.fix,
            data={"path": None, "distribution": distribution},
        )
    path = getattr(trt, "__file__", None)
    source = (
        f"pip distribution {distribution['name']} {distribution['version']}"
        if distribution
        else "no pip distribution (a system package, e.g. JetPack's python3-libnvinfer)"
    )
    return Finding(
        "tensorrt",
        True,
        str(getattr(trt, "__version__", "unknown")),
        detail=f"{path or '?'}; {source}",
        data={"path": path, "distribution": distribution},
    )


def trtexec() -> Finding:
    from ..trt.trtexec import JETPACK_TRTEXEC, TRTEXEC

    found = shutil.which(TRTEXEC) or (JETPACK_TRTEXEC if Path(JETPACK_TRTEXEC).is_file() else None)
    if found is None:
        return Finding(
            "trtexec",
            False,
            detail="not on PATH nor in /usr/src/tensorrt/bin",
            fix=(
                "only needed to run `build --print-trtexec`'s command: it comes with TensorRT (JetPack: "
                "/usr/src/tensorrt/bin)"
            ),
        )
    return Finding("trtexec", True, detail=found, data={"path": found})


def gpu() -> Finding:
    from ..bench.environment import gpu as gpu_info
    from ..trt.runtime import probe_gpu

    info = gpu_info()
    if info is None:
        try:
            probe_gpu()
            reason = MissingRuntime("the GPU probe found no device", "check nvidia-smi / the driver")
        except MissingRuntime as exc:
            reason = exc
        return Finding("gpu", False, detail=reason.problem, fix=reason.fix)
    detail = f"{info.name} (compute {info.compute_capability}), driver supports CUDA {info.driver_cuda_version}"
    if info.driver:
        detail += f"; {info.driver}"
    return Finding("gpu", True, detail=detail, data={"device": asdict(info)})


def cuda_runtime() -> Finding:
    from ..runtime.cudart import NO_CUDART_FIX
    from ..trt.runtime import cuda_runtime_version

    version = cuda_runtime_version()
    if version is None:
        return Finding("cuda-runtime", False, detail="libcudart cannot be loaded", fix=NO_CUDART_FIX)
    return Finding("cuda-runtime", True, version, detail="libcudart (bench --backend trt times through it)")


# L4T major release -> JetPack line (NVIDIA's release notes); the exact JetPack comes from dpkg.
L4T_TO_JETPACK = {"32": "4.x", "34": "5.0 developer preview", "35": "5.x", "36": "6.x", "38": "7.x"}
_L4T = re.compile(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)")


def _dpkg_version(package: str) -> Optional[str]:
    if shutil.which("dpkg-query") is None:
        return None
    try:
        done = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True, timeout=TOOL_TIMEOUT_S
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


def jetson() -> Optional[Finding]:
    """L4T/JetPack release, board, power mode and clocks; None on anything but a Jetson.
    The raw facts are bench's (bench/environment.py records them beside every latency)."""
    from ..bench.environment import jetson as jetson_facts

    facts = jetson_facts()
    if facts is None:
        return None
    l4t, jetpack = None, None
    match = _L4T.search(facts.l4t_release or "")
    if match:
        l4t = f"{match.group(1)}.{match.group(2)}"
        jetpack = L4T_TO_JETPACK.get(match.group(1))
    jetpack = _dpkg_version("nvidia-jetpack") or jetpack
    mode = None
    for line in (facts.nvpmodel_q or "").splitlines():
        if "Power Mode" in line:
            mode = line.split(":", 1)[-1].strip()
            break
    show = (facts.jetson_clocks_show or "").splitlines()
    # "GPU MinFreq=... MaxFreq=... CurrentFreq=..." and the memory clock; without root, its error
    clocks = [line.strip() for line in show if line.startswith(("GPU ", "EMC "))] or show[:1]
    detail = f"{facts.board or 'board unknown'}; L4T {l4t or '?'}, JetPack {jetpack or '?'}; power mode {mode or '?'}"
    if clocks:
        detail += f"; clocks: {' | '.join(clocks)}"
    return Finding(
        "jetson",
        True,
        jetpack,
        detail=detail,
        data={"l4t": l4t, "jetpack": jetpack, "power_mode": mode, "clocks": clocks, **asdict(facts)},
    )


def optional_packages() -> List[Finding]:
    found = []
    for distribution, module, purpose in OPTIONAL_PACKAGES:
        if distribution == "tomli" and sys.version_info >= (3, 11):
            continue  # tomllib is in the standard library
        ok = importable(module)
        fix = (
            FIX_PILLOW
            if distribution == "Pillow"
            else install_extra("serve")
            if distribution in SERVE_PACKAGES
            else f"pip install {distribution}"
        )
        found.append(
            Finding(distribution.lower(), ok, package_version(distribution), detail=purpose, fix="" if ok else fix)
        )
    return found
