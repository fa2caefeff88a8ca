"""The few CUDA runtime calls that TensorRT timing needs, through ctypes on libcudart.

Loaded lazily (first use), so the package imports on machines without CUDA; a missing library
is MissingRuntime (exit 3). `call` checks every return code: a non-zero one raises
MissingRuntime naming the call and the CUDA error. Any object with the same method names (a
test's fake) can stand in for the library.
"""

from __future__ import annotations

import ctypes
from typing import Optional

from ..errors import MissingRuntime

LIBRARY_NAMES = ("libcudart.so", "libcudart.so.12", "libcudart.so.13", "libcudart.so.11.0")
MEMCPY_HOST_TO_DEVICE, MEMCPY_DEVICE_TO_HOST = 1, 2  # cudaMemcpyKind
CAPTURE_MODE_THREAD_LOCAL = 1  # cudaStreamCaptureModeThreadLocal, as trtexec captures
NO_CUDART_FIX = "install the CUDA runtime (libcudart, part of the CUDA toolkit / JetPack), or use --backend ort-cuda"

_P = ctypes.POINTER
_ARGTYPES = {
    "cudaMalloc": [_P(ctypes.c_void_p), ctypes.c_size_t],
    "cudaFree": [ctypes.c_void_p],
    "cudaMemcpyAsync": [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_void_p],
    "cudaStreamCreate": [_P(ctypes.c_void_p)],
    "cudaStreamDestroy": [ctypes.c_void_p],
    "cudaStreamSynchronize": [ctypes.c_void_p],
    "cudaEventCreate": [_P(ctypes.c_void_p)],
    "cudaEventRecord": [ctypes.c_void_p, ctypes.c_void_p],
    "cudaEventSynchronize": [ctypes.c_void_p],
    "cudaEventElapsedTime": [_P(ctypes.c_float), ctypes.c_void_p, ctypes.c_void_p],
    "cudaEventDestroy": [ctypes.c_void_p],
    "cudaStreamBeginCapture": [ctypes.c_void_p, ctypes.c_int],
    "cudaStreamEndCapture": [ctypes.c_void_p, _P(ctypes.c_void_p)],
    # WithFlags: the same three arguments on CUDA 11.4 to 13 (plain cudaGraphInstantiate changed them in 12)
    "cudaGraphInstantiateWithFlags": [_P(ctypes.c_void_p), ctypes.c_void_p, ctypes.c_ulonglong],
    "cudaGraphLaunch": [ctypes.c_void_p, ctypes.c_void_p],
    "cudaGraphExecDestroy": [ctypes.c_void_p],
    "cudaGraphDestroy": [ctypes.c_void_p],
}

_library: Optional[ctypes.CDLL] = None


def load_cudart():
    """libcudart with argument types set (handles are pointers: plain ints would be truncated)."""
    global _library
    if _library is not None:
        return _library
    for name in LIBRARY_NAMES:
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        for function, argtypes in _ARGTYPES.items():
            try:
                getattr(lib, function).argtypes = argtypes
            except AttributeError:  # an old runtime without graphs: found out when called
                continue
        _library = lib
        return lib
    raise MissingRuntime(f"the CUDA runtime library is not loadable (tried {', '.join(LIBRARY_NAMES)})", NO_CUDART_FIX)


def call(lib, name: str, *args) -> None:
    """lib.name(*args), or MissingRuntime naming the call and the CUDA error."""
    try:
        function = getattr(lib, name)
    except AttributeError:
        raise MissingRuntime(f"this CUDA runtime has no {name}", "use a CUDA runtime >= 11.4") from None
    rc = function(*args)
    if rc != 0:
        raise MissingRuntime(
            f"{name} failed with CUDA error {rc}{_error_name(lib, rc)}",
            "check the GPU with nvidia-smi (or tegrastats on a Jetson) and that no other process holds its memory",
        )


def _error_name(lib, rc: int) -> str:
    describe = getattr(lib, "cudaGetErrorName", None)
    if describe is None:
        return ""
    try:
        describe.restype = ctypes.c_char_p
        text = describe(rc)
    except Exception:
        return ""
    return f" ({text.decode(errors='replace')})" if text else ""
