"""`validate --backend trt` and `bench --backend trt` end to end, per TensorRT version, on the fake
generated from the real API (tests/trt_fake.py) and a libcudart stand-in that really moves bytes.

What this proves: the runtime layer plans the in-memory engine the way `build` does for each
version (weak typing from model_fp32.onnx with pins on 8.x-10.11, strong typing from the
mixed-precision graph on 10.12+/11), drives it through named I/O tensors, device buffers,
execute_async_v3 and copies, and hands the outputs to validate's verdict. The engine's
"execution" is ONNX Runtime on the export's own graph (the fake has no kernels), so the numbers
are ONNX Runtime's: this checks plumbing and version rules, not TensorRT's numerics.
"""

from __future__ import annotations

import ctypes
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from msla_deploy.cli import app
from msla_deploy.runtime import cudart
from tests.fixtures import export_random_b0
from tests.trt_fake import FAKE_VERSIONS, install_fake_tensorrt

B0 = "efficientvit-seg-b0-cityscapes"
_DTYPES = {"FLOAT": np.float32, "HALF": np.float16, "INT32": np.int32}


class DeviceMemory:
    """libcudart's calls that runtime.trt_direct makes, with "device" buffers in host memory."""

    def __init__(self):
        self.blocks, self.handles, self.calls = {}, 0x100, []

    def _handle(self, ref):
        self.handles += 1
        ref._obj.value = self.handles
        return 0

    def cudaMalloc(self, ref, size):
        block = ctypes.create_string_buffer(int(size))
        self.blocks[ctypes.addressof(block)] = block
        ref._obj.value = ctypes.addressof(block)
        return 0

    def cudaMemcpyAsync(self, dst, src, count, kind, stream):
        self.calls.append(("memcpy", kind))
        ctypes.memmove(dst, src, count)
        return 0

    def cudaEventElapsedTime(self, ms, start, stop):
        ms._obj.value = 1.5
        return 0

    def cudaFree(self, pointer):
        self.blocks.pop(pointer.value if hasattr(pointer, "value") else pointer, None)
        return 0

    def __getattr__(self, name):  # streams, events, synchronisation: handles and success
        if name in ("cudaStreamCreate", "cudaEventCreate"):
            return self._handle
        if name.startswith("cuda"):
            return lambda *args: 0
        raise AttributeError(name)


def _execute_with_onnxruntime(onnx_path):
    """execute_async_v3 of the fake: read the inputs at their device addresses, run the graph in
    ONNX Runtime, write the outputs at theirs."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])

    def execute(context, stream):
        addresses = context._state["addresses"]
        io = context._state["engine"]._state["desc"]["io"]
        feeds = {}
        for t in (t for t in io if t["mode"] == "INPUT"):
            dtype, shape = _DTYPES[t["dtype"]], tuple(context.get_tensor_shape(t["name"]))  # a dynamic batch: as set
            size = int(np.prod(shape)) * np.dtype(dtype).itemsize
            feeds[t["name"]] = np.frombuffer(ctypes.string_at(addresses[t["name"]], size), dtype).reshape(shape)
        wanted = {i.name: i for i in session.get_inputs()}
        feeds = {
            n: v.astype(np.float16 if wanted[n].type == "tensor(float16)" else np.float32)
            for n, v in feeds.items()
            if n in wanted
        }
        outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
        for t in (t for t in io if t["mode"] == "OUTPUT"):
            value = np.ascontiguousarray(outputs[t["name"]].astype(_DTYPES[t["dtype"]]))
            assert value.shape == tuple(context.get_tensor_shape(t["name"])), (t["name"], value.shape)
            ctypes.memmove(addresses[t["name"]], value.ctypes.data, value.nbytes)

    return execute


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    root = tmp_path_factory.mktemp("trt-runtime")
    # B0 at 64x128, seeded random weights
    return {
        precision: export_random_b0(root, precision, must_pass=True, precision=precision, models_dir=root / "none")
        for precision in ("fp32", "fp16")
    }


def _install(monkeypatch, version, onnx_path):
    memory = DeviceMemory()
    monkeypatch.setattr(cudart, "load_cudart", lambda: memory)
    return install_fake_tensorrt(monkeypatch, version, execute=_execute_with_onnxruntime(onnx_path)), memory


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("version", FAKE_VERSIONS)
def test_validate_on_tensorrt_builds_the_fp32_export_and_passes(exports, version, monkeypatch, tmp_path):
    trt, memory = _install(monkeypatch, version, exports["fp32"] / "model.onnx")
    result = cli("validate", exports["fp32"], "--backend", "trt", "--report-dir", tmp_path / "r", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    backend = report["backend"]
    assert backend["runtime"] == "tensorrt" and backend["version"] == trt.__version__
    assert "model.onnx" in backend["engine"] and "fp32" in backend["engine"]
    assert (
        report["passed"] and report["outputs"][0]["max_abs"] < 1e-4 * report["outputs"][0]["max_abs_reference"] + 1e-6
    )
    assert ("memcpy", cudart.MEMCPY_HOST_TO_DEVICE) in memory.calls and (
        "memcpy",
        cudart.MEMCPY_DEVICE_TO_HOST,
    ) in memory.calls
    assert not trt.fake.flag_names() or "FP16" not in trt.fake.flag_names()  # an fp32 build never asks for fp16


@pytest.mark.parametrize("version", FAKE_VERSIONS)
def test_validate_on_tensorrt_types_the_fp16_export_as_build_would(exports, version, monkeypatch, tmp_path):
    """8.6-10.11: weakly typed from model_fp32.onnx, FP16 flag, attention pinned; 10.12+/11: strongly
    typed from the mixed-precision model.onnx. Before, 8.x asked Polygraphy for strong typing."""
    trt, _ = _install(monkeypatch, version, exports["fp16"] / "model.onnx")
    result = cli("validate", exports["fp16"], "--backend", "trt", "--report-dir", tmp_path / "r", "--json")
    assert result.exit_code == 0, result.output
    engine = json.loads(result.stdout)["backend"]["engine"]
    major_minor = tuple(int(p) for p in version.split(".")[:2])
    if major_minor < (10, 12):
        assert "model_fp32.onnx" in engine and "weakly typed" in engine
        assert "FP16" in trt.fake.flag_names()
    else:
        assert "from model.onnx" in engine and "strongly typed" in engine
        assert "BuilderFlag.FP16" not in trt.fake.lookups


@pytest.mark.parametrize("version", FAKE_VERSIONS)
def test_bench_on_tensorrt_times_with_cuda_events(exports, version, monkeypatch):
    _install(monkeypatch, version, exports["fp32"] / "model.onnx")
    result = cli(
        "bench", exports["fp32"], "--backend", "trt", "--iterations", 3, "--warmup", 0, "--no-transfers", "--json"
    )
    assert result.exit_code == 0, result.output
    (run,) = json.loads(result.stdout)["results"]
    assert run["timer"] == "cuda-events" and run["stats"]["p50_ms"] == pytest.approx(1.5)
    assert run["runtime"]["transfers"] is False and run["batch"] == 1
