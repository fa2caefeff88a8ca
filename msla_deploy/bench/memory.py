"""Peak host memory (and, where a CUDA driver is present, device memory) of this process.

tracemalloc sees only Python's allocator, not the arenas of ONNX Runtime, PyTorch or TensorRT, so
the kernel's high-water mark of the resident set is read instead: psutil if installed, else
/proc/self/status VmHWM, else getrusage's ru_maxrss. On Linux the mark can be reset by writing
"5" to /proc/self/clear_refs, which lets each backend's peak be taken on its own.
"""

from __future__ import annotations

import ctypes
import resource
import sys
from pathlib import Path
from typing import Optional

from .report import HostMemory


def _status_kib(field: str) -> Optional[int]:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def current_rss() -> Optional[int]:
    try:
        import psutil  # optional

        return int(psutil.Process().memory_info().rss)
    except ImportError:
        kib = _status_kib("VmRSS")
        return None if kib is None else kib * 1024


def peak_rss() -> int:
    kib = _status_kib("VmHWM")
    if kib is not None:
        return kib * 1024
    # ru_maxrss is in KiB on Linux, bytes on macOS
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(maxrss if sys.platform == "darwin" else maxrss * 1024)


def reset_peak() -> bool:
    """Reset the high-water mark to the current RSS where the kernel allows it (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class HostPeak:
    """Peak resident memory above the level at start, over the `with` block."""

    def __enter__(self) -> "HostPeak":
        self.resettable = reset_peak()
        self.start = current_rss() or peak_rss()
        self.peak: Optional[int] = None
        return self

    def __exit__(self, *exc) -> None:
        self.peak = peak_rss()

    def result(self) -> HostMemory:
        return HostMemory(
            peak_rss_bytes=self.peak,
            start_rss_bytes=self.start,
            peak_delta_bytes=None if self.peak is None else max(0, self.peak - self.start),
            peak_is_per_block=self.resettable,
        )


def device_memory_used() -> Optional[int]:
    """Bytes in use on CUDA device 0 (all processes), via the driver API's cuMemGetInfo in the
    primary context (the one ONNX Runtime, TensorRT and PyTorch share); None without a GPU.
    On Jetson the GPU shares host memory, so this overlaps the host figure."""
    from ..trt.runtime import _load_libcuda  # the project's one libcuda loader

    lib = _load_libcuda()
    if lib is None or lib.cuInit(0) != 0:
        return None
    device, context = ctypes.c_int(0), ctypes.c_void_p()
    if (
        lib.cuDeviceGet(ctypes.byref(device), 0) != 0
        or lib.cuDevicePrimaryCtxRetain(ctypes.byref(context), device) != 0
    ):
        return None
    try:
        lib.cuCtxPushCurrent_v2(context)
        free, total = ctypes.c_size_t(), ctypes.c_size_t()
        ok = lib.cuMemGetInfo_v2(ctypes.byref(free), ctypes.byref(total)) == 0
        lib.cuCtxPopCurrent_v2(ctypes.byref(ctypes.c_void_p()))
        return int(total.value - free.value) if ok else None
    finally:
        lib.cuDevicePrimaryCtxRelease_v2(device)
