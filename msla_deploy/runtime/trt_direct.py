"""TensorRT driven directly: named I/O tensors, execute_async_v3, CUDA events, like trtexec.

One `DirectTiming` holds an engine's execution context, one device buffer per I/O tensor, a stream
and two events. Each timed run records the start event, copies the inputs in (unless
--no-transfers), enqueues (execute_async_v3, or launches the CUDA graph captured once at load),
copies the outputs back (unless --no-transfers), records the stop event, waits for it and returns
cudaEventElapsedTime. `infer(feeds)` is the same run with the caller's inputs copied in and the
outputs copied back (what validate and the Session interface use). Uses TensorRT's name-based I/O
API (TensorRT >= 8.5: num_io_tensors, set_tensor_address, execute_async_v3); older TensorRT
(bindings, execute_async_v2) is refused with MissingRuntime rather than timed another way. `trt`
and `cudart` are passed in, so tests drive this with fakes; on this project's machines it has
never run on a real GPU.
"""

from __future__ import annotations

import ctypes
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..errors import BadInput, MissingRuntime
from .cudart import CAPTURE_MODE_THREAD_LOCAL, MEMCPY_DEVICE_TO_HOST, MEMCPY_HOST_TO_DEVICE, call
from .feeds import random_feeds


def require_name_api(trt, engine, context) -> None:
    if not hasattr(engine, "num_io_tensors") or not hasattr(context, "execute_async_v3"):
        raise MissingRuntime(
            f"timing TensorRT {getattr(trt, '__version__', '?')} needs TensorRT >= 8.5 (named I/O tensors, "
            "execute_async_v3)",
            "upgrade TensorRT (JetPack 5 or later), or time ONNX Runtime's TensorRT provider: --backend ort-trt",
        )


class DirectTiming:
    def __init__(
        self,
        trt,
        engine,
        context,
        cudart,
        *,
        transfers: bool,
        cuda_graph: bool,
        batch: Optional[int] = None,
        shapes: Optional[Dict[str, tuple]] = None,
    ) -> None:
        """`batch`: the first dimension of every dynamic input (a dynamic-batch export); `shapes`: the
        whole shape of each dynamic input (SAM's decoder: prompts and points); neither: the
        profile's optimum."""
        require_name_api(trt, engine, context)
        self.lib, self.context, self.transfers = cudart, context, transfers
        self.stream, self.start, self.stop = ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_void_p()
        self.graph, self.graph_exec = ctypes.c_void_p(), ctypes.c_void_p()
        self.buffers: List[ctypes.c_void_p] = []
        self.inputs: List[Tuple[np.ndarray, ctypes.c_void_p]] = []
        self.outputs: List[Tuple[np.ndarray, ctypes.c_void_p]] = []
        self.input_names: List[str] = []
        self.output_names: List[str] = []
        try:
            self._allocate(trt, engine, batch, shapes or {})
            call(cudart, "cudaStreamCreate", ctypes.byref(self.stream))
            call(cudart, "cudaEventCreate", ctypes.byref(self.start))
            call(cudart, "cudaEventCreate", ctypes.byref(self.stop))
            for host, device in self.inputs:  # the data is on the device even with --no-transfers
                self._copy(device, host, MEMCPY_HOST_TO_DEVICE)
            call(cudart, "cudaStreamSynchronize", self.stream)
            if cuda_graph:
                self._capture()
        except BaseException:
            self.close()
            raise

    def _allocate(self, trt, engine, batch, shapes: Dict[str, tuple]) -> None:
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        is_input = {n: engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self.input_shapes: Dict[str, tuple] = {}
        for name in (n for n in names if is_input[n]):
            shape = tuple(engine.get_tensor_shape(name))
            if any(d < 0 for d in shape):  # dynamic: the profile's optimum, with --batch as the first dimension
                shape = tuple(engine.get_tensor_profile_shape(name, 0)[1])
                shape = (batch, *shape[1:]) if batch is not None else shape
                shape = tuple(shapes.get(name, shape))
                if not self.context.set_input_shape(name, shape):
                    raise BadInput(
                        f"TensorRT refuses input shape {shape} for {name!r}",
                        "pass a --batch within the engine's optimisation profile",
                    )
            self.input_shapes[name] = shape
        for name in names:
            shape = self.input_shapes.get(name) or tuple(self.context.get_tensor_shape(name))
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            host = random_feeds({name: (shape, dtype)})[name] if is_input[name] else np.empty(shape, dtype)
            device = ctypes.c_void_p()
            call(self.lib, "cudaMalloc", ctypes.byref(device), max(host.nbytes, 1))
            self.buffers.append(device)
            if not self.context.set_tensor_address(name, device.value):
                raise MissingRuntime(
                    f"TensorRT refused the device address of {name!r}", "rebuild the engine on this machine"
                )
            (self.inputs if is_input[name] else self.outputs).append((host, device))
            (self.input_names if is_input[name] else self.output_names).append(name)

    def _copy(self, dst, src, kind) -> None:
        # pageable numpy buffers: the copy is staged by the driver (and a device-to-host copy returns
        # only when done); pinned memory would be faster, but this times what a numpy caller pays
        host, device = (dst, src) if kind == MEMCPY_DEVICE_TO_HOST else (src, dst)
        pointers = (host.ctypes.data, device) if kind == MEMCPY_DEVICE_TO_HOST else (device, host.ctypes.data)
        call(self.lib, "cudaMemcpyAsync", *pointers, host.nbytes, kind, self.stream)

    def _enqueue(self) -> None:
        if not self.context.execute_async_v3(self.stream.value):
            raise MissingRuntime(
                "TensorRT's execute_async_v3 failed", "see TensorRT's log above; rebuild the engine on this machine"
            )

    def _capture(self) -> None:
        """One enqueue outside capture first (TensorRT defers some set-up to it), then capture one."""
        self._enqueue()
        call(self.lib, "cudaStreamSynchronize", self.stream)
        call(self.lib, "cudaStreamBeginCapture", self.stream, CAPTURE_MODE_THREAD_LOCAL)
        try:
            self._enqueue()
        finally:
            call(self.lib, "cudaStreamEndCapture", self.stream, ctypes.byref(self.graph))
        call(self.lib, "cudaGraphInstantiateWithFlags", ctypes.byref(self.graph_exec), self.graph, 0)

    def infer(self, feeds: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """One run on these inputs (copied in, cast to the engine's dtypes); the outputs, copied back."""
        for name, (host, _) in zip(self.input_names, self.inputs):
            value = np.asarray(feeds[name])
            if value.shape != host.shape:
                raise BadInput(
                    f"input {name!r} has shape {list(value.shape)}, the engine takes {list(host.shape)}",
                    "feed the engine's own shapes",
                )
            np.copyto(host, value, casting="same_kind")
        self._run(transfers=True)
        return {name: host.copy() for name, (host, _) in zip(self.output_names, self.outputs)}

    def fetch_outputs(self) -> Dict[str, np.ndarray]:
        """The outputs of the last run, copied from the device (outside any timed run: bench counts
        their NaN/Inf values, with or without --no-transfers)."""
        for host, device in self.outputs:
            self._copy(host, device, MEMCPY_DEVICE_TO_HOST)
        call(self.lib, "cudaStreamSynchronize", self.stream)
        return {name: host.copy() for name, (host, _) in zip(self.output_names, self.outputs)}

    def timed(self) -> float:
        """One run; seconds between the two events on the GPU."""
        return self._run(self.transfers)

    def _run(self, transfers: bool) -> float:
        call(self.lib, "cudaEventRecord", self.start, self.stream)
        if transfers:
            for host, device in self.inputs:
                self._copy(device, host, MEMCPY_HOST_TO_DEVICE)
        if self.graph_exec.value:
            call(self.lib, "cudaGraphLaunch", self.graph_exec, self.stream)
        else:
            self._enqueue()
        if transfers:
            for host, device in self.outputs:
                self._copy(host, device, MEMCPY_DEVICE_TO_HOST)
        call(self.lib, "cudaEventRecord", self.stop, self.stream)
        call(self.lib, "cudaEventSynchronize", self.stop)
        ms = ctypes.c_float(0.0)
        call(self.lib, "cudaEventElapsedTime", ctypes.byref(ms), self.start, self.stop)
        return ms.value / 1e3

    def close(self) -> None:
        """Best effort, return codes ignored: a failure here must not hide the one that ended the run."""
        lib = self.lib
        if self.stream.value:
            lib.cudaStreamSynchronize(self.stream)
        for handle, release in (
            (self.graph_exec, "cudaGraphExecDestroy"),
            (self.graph, "cudaGraphDestroy"),
            (self.start, "cudaEventDestroy"),
            (self.stop, "cudaEventDestroy"),
            (self.stream, "cudaStreamDestroy"),
        ):
            if handle.value:
                getattr(lib, release)(handle)
                handle.value = None
        for device in self.buffers:
            if device.value:
                lib.cudaFree(device)
        self.buffers = []
