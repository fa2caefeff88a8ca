"""The one place that imports `tensorrt`, the one engine loader, and the GPU probe (CUDA driver API through ctypes).

Neither import happens when the package is imported: `build --print-trtexec`, the plan and the
DLA preflight work on a machine with neither TensorRT nor a GPU.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Dict, List, Optional

from ..errors import BadInput, MissingRuntime

INSTALL_HINT = (
    "on a Jetson: JetPack's python3-libnvinfer (sudo apt install python3-libnvinfer); on a desktop: "
    "pip install tensorrt (its wheels download from NVIDIA's index); or print the trtexec command "
    "with --print-trtexec --trt-version X.Y"
)
TENSORRT_DISTRIBUTIONS = (
    "tensorrt",
    "tensorrt-cu13",
    "tensorrt-cu12",
    "tensorrt-cu11",
    "tensorrt_cu13_bindings",
    "tensorrt_cu12_bindings",
    "tensorrt-lean",
    "tensorrt-dispatch",
)


def import_tensorrt():
    """`import tensorrt`, or MissingRuntime (exit 3) with what to install."""
    try:
        import tensorrt  # noqa: F401  (the only tensorrt import in msla_deploy)
    except ImportError as exc:
        raise MissingRuntime(f"TensorRT's Python package is not installed ({exc})", INSTALL_HINT) from None
    except OSError as exc:  # the wheel's stub, or libnvinfer missing
        raise MissingRuntime(
            f"TensorRT's Python package is installed but cannot load its libraries ({exc})", INSTALL_HINT
        ) from None
    return tensorrt


def deserialize_engine(
    trt, data: bytes, *, logger=None, version_compatible: bool = False, dla_core: Optional[int] = None
):
    """The one engine loader: bytes -> ICudaEngine, set up the way trtexec loads an engine.

    - version_compatible: `Runtime.engine_host_code_allowed = True` first (a version-compatible
      engine embeds its lean runtime, which TensorRT runs only when the application opts in;
      trtexec's sampleEngines.cpp, Polygraphy's loader and NVIDIA's samples all set it);
    - dla_core: `Runtime.DLA_core = N` first, as trtexec does for --useDLACore.
    Where the installed version lacks what the engine needs, or TensorRT refuses the bytes, this is
    BadInput (exit 2) naming the engine's requirement and the fix; it never returns None.
    `trt` is the imported module (import_tensorrt()); the engine keeps its runtime alive
    (the bindings' keep_alive), so only the engine is returned.
    """
    from . import versions as V

    version = V.parse_version(str(trt.__version__))
    runtime = trt.Runtime(logger if logger is not None else trt.Logger(trt.Logger.WARNING))
    if version_compatible:
        if not V.has("engine_host_code_allowed", version):
            raise BadInput(
                f"the engine was built version-compatible, which TensorRT {version.text} cannot load (version "
                "compatibility starts in 8.6)",
                "load it with TensorRT >= the version that built it, or rebuild it on this machine",
            )
        runtime.engine_host_code_allowed = True
    if dla_core is not None:
        cores = runtime.num_DLA_cores
        if not 0 <= dla_core < cores:
            raise BadInput(
                f"the engine runs on DLA core {dla_core}, but this device has {cores} DLA core(s)",
                "load it on the Jetson it was built for, or rebuild it for the GPU (drop --dla-core)",
            )
        runtime.DLA_core = dla_core
    engine = runtime.deserialize_cuda_engine(bytes(data))
    if engine is None:
        raise BadInput(
            f"TensorRT {version.text} could not load the engine: engines only load on the TensorRT version and GPU "
            "that built them" + (" (it was built version-compatible)" if version_compatible else ""),
            "rebuild it on this machine with `msla-deploy build` (TensorRT's log above says more)",
        )
    return engine


def installed_version_text() -> Optional[str]:
    """The installed TensorRT version, or None. Imports tensorrt (metadata alone misses apt installs)."""
    try:
        return str(import_tensorrt().__version__)
    except MissingRuntime:
        return None


def tensorrt_distribution() -> Optional[Dict[str, str]]:
    for name in TENSORRT_DISTRIBUTIONS:
        try:
            return {"name": name, "version": metadata.version(name)}
        except metadata.PackageNotFoundError:
            continue
    return None


@dataclass(frozen=True)
class GpuInfo:
    name: str
    compute_capability: str  # "8.7"
    driver_cuda_version: str  # the CUDA version the driver supports, "12.6"
    index: int = 0

    def to_dict(self) -> Dict[str, Any]:
        return {
            "index": self.index,
            "name": self.name,
            "compute_capability": self.compute_capability,
            "driver_cuda_version": self.driver_cuda_version,
        }


_CC_MAJOR, _CC_MINOR = 75, 76  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR / _MINOR


def _load_libcuda():
    names: List[str] = ["libcuda.so.1", "libcuda.so", "nvcuda.dll"]
    found = ctypes.util.find_library("cuda")
    if found:
        names.insert(0, found)
    for name in names:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


def probe_gpu(index: int = 0) -> GpuInfo:
    """Name and compute capability of CUDA device `index`, or MissingRuntime (exit 3).

    Uses the CUDA driver API (libcuda, present wherever a GPU driver is, Jetson included), so it
    needs neither torch nor cuda-python.
    """
    lib = _load_libcuda()
    if lib is None:
        raise MissingRuntime(
            "no CUDA driver found (libcuda): this machine has no usable NVIDIA GPU",
            "build on the target GPU or Jetson, or print the trtexec command with --print-trtexec",
        )
    if lib.cuInit(0) != 0:
        raise MissingRuntime(
            "the CUDA driver found no usable GPU (cuInit failed)",
            "check nvidia-smi / the driver, or use --print-trtexec",
        )
    count = ctypes.c_int(0)
    if lib.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value <= index:
        raise MissingRuntime(
            f"no CUDA device {index} (found {count.value})",
            "build on a machine with an NVIDIA GPU, or use --print-trtexec",
        )
    device = ctypes.c_int(0)
    lib.cuDeviceGet(ctypes.byref(device), index)
    name = ctypes.create_string_buffer(256)
    lib.cuDeviceGetName(name, 256, device)
    major, minor, version = ctypes.c_int(0), ctypes.c_int(0), ctypes.c_int(0)
    lib.cuDeviceGetAttribute(ctypes.byref(major), _CC_MAJOR, device)
    lib.cuDeviceGetAttribute(ctypes.byref(minor), _CC_MINOR, device)
    lib.cuDriverGetVersion(ctypes.byref(version))
    return GpuInfo(
        name=name.value.decode(errors="replace"),
        compute_capability=f"{major.value}.{minor.value}",
        driver_cuda_version=f"{version.value // 1000}.{(version.value % 1000) // 10}",
        index=index,
    )


def cuda_runtime_version() -> Optional[str]:
    """The CUDA runtime (libcudart) this process can load, "12.6", or None. Informational only."""
    for name in (
        "libcudart.so",
        "libcudart.so.13",
        "libcudart.so.12",
        "libcudart.so.11.0",
        ctypes.util.find_library("cudart"),
    ):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        version = ctypes.c_int(0)
        if lib.cudaRuntimeGetVersion(ctypes.byref(version)) == 0 and version.value:
            return f"{version.value // 1000}.{(version.value % 1000) // 10}"
    return None
