"""The one place that imports `tensorrt`, and the GPU probe (CUDA driver API through ctypes).

Neither import happens when the package is imported: `build --print-trtexec`, the plan and the
DLA preflight work on a machine with neither TensorRT nor a GPU.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Dict, List, Optional

from ..errors import MissingRuntime

INSTALL_HINT = (
    "on a Jetson: JetPack's python3-libnvinfer (sudo apt install python3-libnvinfer); on a desktop: "
    "pip install tensorrt (its wheels download from NVIDIA's index); or print the trtexec command "
    "with --print-trtexec --trt-version X.Y"
)
TENSORRT_DISTRIBUTIONS = ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-cu11", "tensorrt_cu13_bindings", "tensorrt_cu12_bindings", "tensorrt-lean", "tensorrt-dispatch")


def import_tensorrt():
    """`import tensorrt`, or MissingRuntime (exit 3) with what to install."""
    try:
        import tensorrt  # noqa: F401  (the only tensorrt import in msla_deploy)
    except ImportError as exc:
        raise MissingRuntime(f"TensorRT's Python package is not installed ({exc})", INSTALL_HINT) from None
    except OSError as exc:  # the wheel's stub, or libnvinfer missing
        raise MissingRuntime(f"TensorRT's Python package is installed but cannot load its libraries ({exc})", INSTALL_HINT) from None
    return tensorrt


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
        return {"index": self.index, "name": self.name, "compute_capability": self.compute_capability, "driver_cuda_version": self.driver_cuda_version}


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
        raise MissingRuntime("no CUDA driver found (libcuda): this machine has no usable NVIDIA GPU", "build on the target GPU or Jetson, or print the trtexec command with --print-trtexec")
    if lib.cuInit(0) != 0:
        raise MissingRuntime("the CUDA driver found no usable GPU (cuInit failed)", "check nvidia-smi / the driver, or use --print-trtexec")
    count = ctypes.c_int(0)
    if lib.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value <= index:
        raise MissingRuntime(f"no CUDA device {index} (found {count.value})", "build on a machine with an NVIDIA GPU, or use --print-trtexec")
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
    for name in ("libcudart.so", "libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0", ctypes.util.find_library("cudart")):
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

