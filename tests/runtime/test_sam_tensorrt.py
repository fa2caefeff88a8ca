"""SAM's two engines through the TensorRT runtime: the decoder engine's prompts AND points are set
per call (every dynamic input's whole shape from the feed), so one engine answers 1 box, 3 boxes,
clicks and box-with-click prompts, as ONNX Runtime does. Against the fake `tensorrt` (the real API
of 10.3 and 11.4) whose execute_async_v3 runs each engine's ONNX in ONNX Runtime at the shapes the
context was given (tests/runtime/test_runtime_tensorrt.py's fake device memory)."""

from __future__ import annotations

import ctypes
import shutil

import numpy as np
import pytest

from msla_deploy.artifact.manifest import read_manifest
from msla_deploy.runtime import cudart
from msla_deploy.runtime.sam_predictor import SamPredictor
from msla_deploy.trt.build import run_graph_builds
from msla_deploy.trt.options import BuildOptions
from tests.runtime.test_runtime_tensorrt import _DTYPES, DeviceMemory
from tests.trt_fake import install_fake_tensorrt

PROMPTS = [
    {"boxes": [[40, 30, 260, 200]]},
    {"boxes": [[40, 30, 260, 200], [100, 100, 320, 280], [10, 150, 90, 330]]},  # B = 3, P = 2
    {"points": [[[120, 90], [300, 250]]], "labels": [[1, 0]]},  # P = 3 with the pad point
    {"points": [[[150, 100]]], "labels": [[1]], "boxes": [[40, 30, 260, 200]]},  # P = 3
]


def _execute_each_graph(directory):
    """execute_async_v3: the engine whose inputs are the encoder's runs encoder.onnx, else decoder.onnx."""
    import onnxruntime as ort

    sessions = {
        graph.role: ort.InferenceSession(str(directory / graph.file), providers=["CPUExecutionProvider"])
        for graph in read_manifest(directory).graphs
    }

    def execute(context, stream):
        addresses = context._state["addresses"]
        io = context._state["engine"]._state["desc"]["io"]
        inputs = [t for t in io if t["mode"] == "INPUT"]
        session = sessions["encoder" if any(t["name"] == "image" for t in inputs) else "decoder"]
        feeds = {}
        for t in inputs:
            dtype, shape = _DTYPES[t["dtype"]], tuple(context.get_tensor_shape(t["name"]))
            size = int(np.prod(shape)) * np.dtype(dtype).itemsize
            feeds[t["name"]] = np.frombuffer(ctypes.string_at(addresses[t["name"]], size), dtype).reshape(shape)
        outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
        for t in (t for t in io if t["mode"] == "OUTPUT"):
            value = np.ascontiguousarray(outputs[t["name"]].astype(_DTYPES[t["dtype"]]))
            assert value.shape == tuple(context.get_tensor_shape(t["name"])), (t["name"], value.shape)
            ctypes.memmove(addresses[t["name"]], value.ctypes.data, value.nbytes)

    return execute


@pytest.mark.slow
@pytest.mark.parametrize("version", ["10.3.0", "11.4.0.106"])
def test_sam_predictor_on_the_engines_answers_every_prompt_shape(sam_artifact, tmp_path, monkeypatch, version):
    directory = tmp_path / "sam"
    shutil.copytree(sam_artifact, directory)
    trt = install_fake_tensorrt(monkeypatch, version, execute=_execute_each_graph(directory))
    monkeypatch.setattr(cudart, "load_cudart", lambda: DeviceMemory())
    run_graph_builds(BuildOptions(source=directory), trt=trt)
    picture = np.random.default_rng(0).integers(0, 256, size=(333, 401, 3), dtype=np.uint8)
    with SamPredictor(directory, backend="trt") as engines, SamPredictor(directory, backend="ort-cpu") as ort:
        assert engines.describe()["runtime"] == "tensorrt" == engines.describe()["decoder"]["runtime"]
        engines.set_image(picture)
        ort.set_image(picture)
        for prompt in PROMPTS:
            masks, scores, low_res = engines.predict(**prompt)
            expected_masks, expected_scores, expected_low_res = ort.predict(**prompt)
            assert masks.shape == expected_masks.shape and (masks == expected_masks).all(), prompt
            assert np.abs(scores - expected_scores).max() <= 1e-6
            assert np.abs(low_res - expected_low_res).max() <= 1e-5
        # one execution context per (prompts, points) shape the decoder engine was fed
        assert len(engines.decoder._runners) == 3
    setting = [c for c in trt.fake.calls_to("IExecutionContext.set_input_shape") if c["name"] == "point_coords"]
    # boxes: two corners; clicks: two and a pad point; a click with a box: three
    assert {tuple(c["shape"]) for c in setting} == {(1, 2, 2), (3, 2, 2), (1, 3, 2)}


@pytest.mark.slow
def test_validate_and_bench_run_both_engines(sam_artifact, tmp_path, monkeypatch):
    import json

    from typer.testing import CliRunner

    from msla_deploy.cli import app

    directory = tmp_path / "sam"
    shutil.copytree(sam_artifact, directory)
    trt = install_fake_tensorrt(monkeypatch, "10.3.0", execute=_execute_each_graph(directory))
    monkeypatch.setattr(cudart, "load_cudart", lambda: DeviceMemory())
    run_graph_builds(BuildOptions(source=directory), trt=trt)
    runner = CliRunner()
    result = runner.invoke(app, ["validate", str(directory), "--backend", "trt", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["passed"] and report["backend"]["runtime"] == "tensorrt"
    result = runner.invoke(app, ["bench", str(directory), "--backend", "trt", "--iterations", "2", "--warmup", "1"])
    assert result.exit_code == 0, result.output
    assert "decoder" in result.stdout and "encoder" in result.stdout


def test_the_decoder_needs_its_built_engine_on_tensorrt(sam_artifact, monkeypatch):
    from msla_deploy.errors import BadInput

    install_fake_tensorrt(monkeypatch, "10.3.0")
    with pytest.raises(BadInput) as raised:
        SamPredictor(sam_artifact, backend="trt")
    assert "no TensorRT engine of its decoder graph" in raised.value.problem
    assert "msla-deploy build" in raised.value.fix
