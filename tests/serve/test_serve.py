"""Serving: a Triton model repository (package --triton), the triton:// session and a real Triton
server started through `serve` (PyTriton). All traffic stays on 127.0.0.1; ports are picked free
by binding port 0; every test stops the server it starts."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from msla_deploy.artifact.files import sha256_file
from msla_deploy.artifact.names import REFERENCE_DIR
from msla_deploy.artifact.reference import read_reference
from msla_deploy.cli import app
from msla_deploy.errors import BadInput, MissingRuntime
from msla_deploy.parity.budgets import FP32
from msla_deploy.parity.metrics import compare_outputs
from msla_deploy.runtime.triton import TritonSession, parse_target
from msla_deploy.serve.repository import PackageOptions, package_triton, parse_config
from tests.fixtures import REPO, export_random_b0, one_error_line

B0 = "efficientvit-seg-b0-cityscapes"
LOOPBACK = "127.0.0.1"
# nvidia-pytriton pins numpy<2 (every release up to 0.7.0), so it lives in the optional `serve`
# extra; where it is absent the server tests say so instead of failing.
NO_PYTRITON = "nvidia-pytriton is not installed (pip install -e '.[serve]'; note it requires numpy<2)"
NO_TRITONCLIENT = "tritonclient[grpc] is not installed (pip install -e '.[serve]')"
runner = CliRunner()


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def model_config():
    pytest.importorskip("tritonclient.grpc.model_config_pb2", reason=NO_TRITONCLIENT)
    return parse_config


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    return export_random_b0(tmp_path_factory.mktemp("serve"))


def ort_outputs(onnx_path: Path, feeds):
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


# --- the model repository ---------------------------------------------------------------------


@pytest.mark.serve
def test_onnx_repository_parses_with_model_config(exported, tmp_path):
    parse = model_config()
    result = cli("package", exported, "--triton", tmp_path / "repo", "--instances", "2", "--json")
    assert result.exit_code == 0, result.output
    written = json.loads(result.stdout)
    model_dir = tmp_path / "repo" / "b0"
    assert written["model_dir"] == str(model_dir) and written["checked_with_model_config"] is True
    config = parse((model_dir / "config.pbtxt").read_text())
    assert config.name == "b0" and config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 0  # static batch: the batch is in the dims
    assert [(t.name, list(t.dims)) for t in config.input] == [("input", [1, 3, 64, 128])]
    assert [(t.name, list(t.dims)) for t in config.output] == [("logits", [1, 19, 8, 16])]
    type_names = (
        config.DESCRIPTOR.fields_by_name["input"].message_type.fields_by_name["data_type"].enum_type.values_by_number
    )
    assert type_names[config.input[0].data_type].name == "TYPE_FP32" == type_names[config.output[0].data_type].name
    group = config.instance_group[0]
    assert group.kind == group.KIND_CPU and group.count == 2 and list(group.gpus) == []
    assert (
        config.parameters["msla_deploy.recipe_sha256"].string_value
        == json.loads((exported / "manifest.json").read_text())["recipe_sha256"]
    )
    assert sha256_file(model_dir / "1" / "model.onnx") == sha256_file(exported / "model.onnx")
    assert sorted(p.name for p in (tmp_path / "repo").iterdir()) == ["b0"]  # no staging folder left


@pytest.mark.serve
def test_engine_repository_parses_with_model_config(exported, tmp_path):
    parse = model_config()
    art = tmp_path / "built"
    shutil.copytree(exported, art)
    engine_bytes = os.urandom(4096)  # packaging copies an engine, never opens it: any bytes do
    (art / "model.engine").write_bytes(engine_bytes)
    package = package_triton(
        PackageOptions(artifact=art, repository=tmp_path / "repo", name="b0-trt", instances=2, gpus=[0, 1])
    )
    assert package.platform == "tensorrt_plan"  # auto: the engine, where one was built
    config = parse(package.config_path.read_text())
    assert config.platform == "tensorrt_plan" and config.max_batch_size == 0
    assert [list(t.dims) for t in config.input] == [[1, 3, 64, 128]] and [t.name for t in config.output] == ["logits"]
    group = config.instance_group[0]
    assert group.kind == group.KIND_GPU and group.count == 2 and list(group.gpus) == [0, 1]
    assert (tmp_path / "repo" / "b0-trt" / "1" / "model.plan").read_bytes() == engine_bytes

    # an engine with no ONNX beside it: the I/O comes from the manifest's record of the export
    (art / "model.onnx").unlink()
    package = package_triton(PackageOptions(artifact=art / "model.engine", repository=tmp_path / "repo2"))
    config = parse(package.config_path.read_text())
    assert package.io_source == "manifest.json" and [list(t.dims) for t in config.output] == [[1, 19, 8, 16]]
    assert config.name == "built"


def test_package_never_overwrites_without_asking(exported, tmp_path):
    repo = tmp_path / "repo"
    assert cli("package", exported, "--triton", repo).exit_code == 0
    config = repo / "b0" / "config.pbtxt"
    before = config.read_text()
    again = cli("package", exported, "--triton", repo)
    assert again.exit_code == 2 and "already exists" in one_error_line(again) and "--overwrite" in one_error_line(again)
    assert config.read_text() == before
    assert cli("package", exported, "--triton", repo, "--overwrite", "--instances", "3").exit_code == 0
    assert "count: 3" in config.read_text()
    # a folder we did not write is never replaced, even with --overwrite
    (repo / "theirs").mkdir()
    (repo / "theirs" / "config.pbtxt").write_text('name: "theirs"\n')
    refused = cli("package", exported, "--triton", repo, "--name", "theirs", "--overwrite")
    assert refused.exit_code == 2 and "not written by msla-deploy" in one_error_line(refused)
    assert (repo / "theirs" / "config.pbtxt").read_text() == 'name: "theirs"\n'


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--gpus", "0,x"], "--gpus"),
        (["--name", "bad/name"], "not usable by Triton"),
        (["--platform", "tensorrt_plan"], "holds no TensorRT engine"),
        (["--platform", "savedmodel"], "'--platform': 'savedmodel' is not one of"),
        (["--instances", "0"], "--instances 0"),
    ],
)
def test_package_bad_options_exit_2(exported, tmp_path, args, expected):
    result = cli("package", exported, "--triton", tmp_path / "repo", *args)
    assert result.exit_code == 2 and expected in one_error_line(result)
    assert not (tmp_path / "repo" / "b0").exists()


# --- the triton:// address ----------------------------------------------------------------------


def test_parse_target():
    assert parse_target("triton://127.0.0.1:9001/seg") == ("127.0.0.1", 9001, "seg")
    assert parse_target("triton://localhost") == ("localhost", 8001, None)
    assert parse_target("triton://[::1]:9001/") == ("::1", 9001, None)
    for bad in ("http://127.0.0.1:8001", "triton://:8001", "triton://h:port", "triton://h:1/a/b"):
        with pytest.raises(BadInput):
            parse_target(bad)


@pytest.mark.serve
def test_server_down_is_missing_runtime_fast():
    pytest.importorskip("tritonclient.grpc", reason=NO_TRITONCLIENT)
    port = free_port()  # nobody listens there now
    start = time.perf_counter()
    with pytest.raises(MissingRuntime) as caught:
        TritonSession(f"triton://{LOOPBACK}:{port}/m", timeout_s=3)
    assert time.perf_counter() - start < 10
    assert f"{LOOPBACK}:{port}" in str(caught.value) and "\n" not in str(caught.value)


# --- a real server ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(exported):
    pytest.importorskip("pytriton", reason=NO_PYTRITON)
    from msla_deploy.serve.server import start_server

    server = start_server(exported, host=LOOPBACK, port=free_port())
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.slow
@pytest.mark.serve
def test_served_model_matches_onnxruntime(served, exported):
    assert served.url.startswith(f"triton://{LOOPBACK}:") and served.url.endswith("/b0")
    assert served.batching.dynamic is False and served.batching.max_batch_size == 0  # static batch 1
    reference = read_reference(exported / REFERENCE_DIR)
    with TritonSession(served.url, timeout_s=30) as session:
        assert session.backend == "triton" and session.batch == 1
        assert {n: (s.shape, s.dtype) for n, s in session.inputs.items()} == {"input": ((1, 3, 64, 128), "float32")}
        got = session.run(reference.inputs)
        described = session.describe()
    local = ort_outputs(exported / "model.onnx", reference.inputs)
    # the same ONNX Runtime session behind the server: the same numbers up to fp32 noise
    np.testing.assert_allclose(got["logits"], local["logits"], rtol=0, atol=1e-5)
    parity = compare_outputs("logits", reference.outputs["logits"], got["logits"], FP32)
    assert parity.passed, parity
    assert described["model_version"] == "1" and described["platform"] == "python"
    assert described["version"] and served.url in described["ran_on"]


@pytest.mark.slow
@pytest.mark.serve
def test_validate_and_bench_through_triton(served, exported, tmp_path):
    local = cli("validate", exported, "--backend", "ort-cpu", "--report-dir", tmp_path / "local", "--json")
    remote = cli("validate", exported, "--backend", served.url, "--report-dir", tmp_path / "remote", "--json")
    assert local.exit_code == 0 and remote.exit_code == 0, remote.output
    here, there = json.loads(local.stdout), json.loads(remote.stdout)
    assert there["passed"] is True and served.url in json.dumps(there["backend"])
    # the same numbers as ort-cpu: the server runs the same ONNX Runtime session on the same inputs
    for mine, theirs in zip(here["outputs"], there["outputs"]):
        assert theirs["cosine"] == pytest.approx(mine["cosine"], abs=1e-9)
        assert theirs["max_abs"] == pytest.approx(mine["max_abs"], abs=1e-6)
        assert theirs["argmax_agreement"] == mine["argmax_agreement"]
    bench = cli("bench", exported, "--backend", "ort-cpu", "--compare", served.url, "--iterations", "10", "--json")
    assert bench.exit_code == 0, bench.output
    runs = json.loads(bench.stdout)["results"]
    assert [r["backend"] for r in runs] == ["ort-cpu", "triton"] and all(r["stats"]["p50_ms"] > 0 for r in runs)
    assert runs[1]["stats"]["iterations"] == 10


@pytest.mark.slow
@pytest.mark.serve
def test_triton_backend_refuses_another_model(served, tmp_path):
    import onnx
    from onnx import TensorProto, helper

    # another model (other input size) named like ours: its answers must not be judged as ours
    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["logits"])],
        "other",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 64, 96])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3, 64, 96])],
    )
    other = tmp_path / "other.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), other)
    result = cli("bench", other, "--backend", served.url, "--iterations", "3")
    assert result.exit_code == 2 and f"the model at {served.url} is not" in one_error_line(result)


@pytest.mark.slow
@pytest.mark.serve
def test_concurrent_clients_all_answered(served, exported):
    clients, requests = 8, 20
    rng = np.random.default_rng(7)
    pictures = [rng.standard_normal((1, 3, 64, 128)).astype(np.float32) for _ in range(clients * 2)]
    expected = [ort_outputs(exported / "model.onnx", {"input": p})["logits"] for p in pictures]
    answers, failures = [], []
    lock = threading.Lock()

    def client(index: int) -> None:
        try:
            with TritonSession(served.url, timeout_s=60) as session:
                for r in range(requests):
                    k = (index * 2 + r) % len(pictures)  # clients interleave different pictures
                    got = session.run({"input": pictures[k]})["logits"]
                    with lock:
                        answers.append((index, r, float(np.abs(got - expected[k]).max())))
        except Exception as exc:  # collected, so one failing client is reported, not a hung join
            with lock:
                failures.append(f"client {index}: {type(exc).__name__}: {exc}")

    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    elapsed = time.perf_counter() - start
    assert not failures, failures
    assert not any(t.is_alive() for t in threads)
    # none lost
    assert sorted((i, r) for i, r, _ in answers) == [(i, r) for i in range(clients) for r in range(requests)]
    assert max(err for _, _, err in answers) <= 1e-5  # each answer is its own picture's
    assert elapsed < 120, f"{clients}x{requests} requests took {elapsed:.1f} s"


@pytest.fixture
def short_tmp():
    """A short temporary folder: PyTriton's IPC socket paths must fit Unix's 108 characters,
    which pytest's tmp_path can exceed."""
    folder = Path(tempfile.mkdtemp(prefix="ms-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _start_cli_server(exported: Path, port: int, tmp: Path) -> tuple:
    """`msla-deploy serve --json` in its own process group; returns (process, its description).
    Its temporary files go under `tmp`: a server killed with SIGKILL cannot clean up after itself."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), TMPDIR=str(tmp))
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "msla_deploy",
            "serve",
            str(exported),
            "--host",
            LOOPBACK,
            "--port",
            str(port),
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    lines = []
    reader = threading.Thread(target=lambda: lines.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout=120)
    if not lines or not lines[0].strip():
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        raise AssertionError(f"serve did not come up: {process.stderr.read()[-2000:]}")
    return process, json.loads(lines[0])


@pytest.mark.slow
@pytest.mark.serve
def test_cli_serve_stops_cleanly_on_sigterm(exported, short_tmp):
    pytest.importorskip("pytriton", reason=NO_PYTRITON)
    port = free_port()
    process, described = _start_cli_server(exported, port, short_tmp)
    try:
        assert described["url"] == f"triton://{LOOPBACK}:{port}/b0" and described["batching"]["dynamic"] is False
        with TritonSession(described["url"], timeout_s=30) as session:
            assert session.run({"input": np.zeros((1, 3, 64, 128), np.float32)})["logits"].shape == (1, 19, 8, 16)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
    with socket.socket() as s:  # the port is free again: nothing left listening
        s.bind((LOOPBACK, port))
    assert not any(short_tmp.glob("msla-serve-*"))  # a clean stop leaves no temporary files


@pytest.mark.slow
@pytest.mark.serve
def test_server_killed_mid_run_is_missing_runtime(exported, tmp_path, short_tmp):
    pytest.importorskip("pytriton", reason=NO_PYTRITON)
    process, described = _start_cli_server(exported, free_port(), short_tmp)
    try:
        picture = {"input": np.zeros((1, 3, 64, 128), np.float32)}
        with TritonSession(described["url"], timeout_s=5) as session:
            for _ in range(3):
                session.run(picture)
            os.killpg(process.pid, signal.SIGKILL)  # the server and the process around it, no goodbye
            process.wait(timeout=30)
            start = time.perf_counter()
            with pytest.raises(MissingRuntime) as caught:
                for _ in range(50):
                    session.run(picture)
            assert time.perf_counter() - start < 15
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
    message = str(caught.value)
    assert "\n" not in message and described["url"] in message and caught.value.exit_code == 3
    # the CLI says the same in one line, exit 3, and writes no report
    validate = cli("validate", exported, "--backend", described["url"], "--report-dir", tmp_path / "report")
    assert validate.exit_code == 3 and described["url"] in one_error_line(validate)
    assert not (tmp_path / "report").exists()


def concurrent_errors(url: str, jobs, repeats: int):
    """One client thread per (input, expected logits) job, each sending it `repeats` times; the
    max abs error of every answer (inf for a wrong shape; a lost answer is a missing entry)."""
    errors, lock = [], threading.Lock()

    def client(feed, expected) -> None:
        with TritonSession(url, timeout_s=60) as session:
            for _ in range(repeats):
                got = session.run({"input": feed})["logits"]
                with lock:
                    errors.append(float(np.abs(got - expected).max()) if got.shape == expected.shape else float("inf"))

    threads = [threading.Thread(target=client, args=job) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return errors


@pytest.mark.slow
@pytest.mark.serve
def test_batch_n_export_is_served_with_dynamic_batching(tmp_path_factory):
    pytest.importorskip("pytriton", reason=NO_PYTRITON)
    from msla_deploy.artifact.options import ExportOptions
    from msla_deploy.export.pipeline import run_export
    from msla_deploy.serve.server import start_server

    root = tmp_path_factory.mktemp("serve-b2")
    run_export(ExportOptions(model=B0, resolution=(64, 128), batch=2, out=root / "b2", models_dir=root / "no-models"))
    rng = np.random.default_rng(3)
    pictures = [rng.standard_normal((1, 3, 64, 128)).astype(np.float32) for _ in range(6)]
    # what the static batch-2 graph gives for each picture, computed locally two at a time
    local = ort_outputs(root / "b2" / "model.onnx", {"input": np.concatenate(pictures[:2])})["logits"]
    expected = [None] * len(pictures)
    for k in range(0, len(pictures), 2):
        out = ort_outputs(root / "b2" / "model.onnx", {"input": np.concatenate(pictures[k : k + 2])})["logits"]
        expected[k], expected[k + 1] = out[:1], out[1:]
    with start_server(root / "b2", host=LOOPBACK, port=free_port()) as server:
        assert server.batching.dynamic and server.batching.max_batch_size == 2
        # batch 1 into a batch-2 model, one client per picture
        errors = concurrent_errors(server.url, [(pictures[k], expected[k]) for k in range(len(pictures))], repeats=5)
        with TritonSession(server.url, timeout_s=60) as session:
            assert session.batch == 2 and session.max_batch_size == 2
            pair = session.run({"input": np.concatenate(pictures[:2])})["logits"]
    assert len(errors) == 5 * len(pictures) and max(errors) <= 1e-4, errors
    np.testing.assert_allclose(pair, local, rtol=0, atol=1e-5)


@pytest.fixture(scope="module")
def exported_dynamic(tmp_path_factory) -> Path:
    return export_random_b0(tmp_path_factory.mktemp("serve-dyn"), "dyn", batch=3, dynamic_batch=True)


@pytest.mark.serve
def test_dynamic_batch_repository_turns_the_batcher_on(exported_dynamic, tmp_path):
    parse = model_config()
    package = package_triton(PackageOptions(artifact=exported_dynamic, repository=tmp_path / "repo"))
    config = parse(package.config_path.read_text())
    assert config.max_batch_size == 3 and config.HasField("dynamic_batching")
    assert config.dynamic_batching.max_queue_delay_microseconds > 0
    # dims without the batch: Triton adds it, 1..max_batch_size
    assert [list(t.dims) for t in config.input] == [[3, 64, 128]] and [list(t.dims) for t in config.output] == [
        [19, 8, 16]
    ]
    assert package.to_dict()["max_batch_size"] == 3 and package.to_dict()["dynamic_batch"] is True
    # the engine of it (built with the profile 1..3): the same batching, platform tensorrt_plan
    art = tmp_path / "built"
    shutil.copytree(exported_dynamic, art)
    (art / "model.engine").write_bytes(os.urandom(1024))
    engine = parse(
        package_triton(PackageOptions(artifact=art, repository=tmp_path / "repo-trt")).config_path.read_text()
    )
    assert engine.platform == "tensorrt_plan" and engine.max_batch_size == 3 and engine.HasField("dynamic_batching")
    assert [list(t.dims) for t in engine.input] == [[3, 64, 128]]


@pytest.mark.slow
@pytest.mark.serve
def test_dynamic_batch_export_is_served_unpadded(exported_dynamic):
    pytest.importorskip("pytriton", reason=NO_PYTRITON)
    from msla_deploy.serve.server import start_server

    rng = np.random.default_rng(5)
    pictures = rng.standard_normal((5, 3, 64, 128)).astype(np.float32)
    expected = ort_outputs(exported_dynamic / "model.onnx", {"input": pictures[:3]})["logits"]
    expected = np.concatenate(
        [expected, ort_outputs(exported_dynamic / "model.onnx", {"input": pictures[3:]})["logits"]]
    )
    with start_server(exported_dynamic, host=LOOPBACK, port=free_port()) as server:
        assert server.batching.dynamic and server.batching.max_batch_size == 3 and not server.batching.pad
        rows = [slice(k, k + 1 + k % 2) for k in range(4)]  # requests of one and of two pictures
        errors = concurrent_errors(server.url, [(pictures[r], expected[r]) for r in rows], repeats=4)
        with TritonSession(server.url, timeout_s=60) as session:
            assert session.max_batch == 3 and session.group == 3
    assert len(errors) == 16 and max(errors) <= 1e-4, errors


@pytest.mark.slow
@pytest.mark.serve
def test_evaluate_and_predict_through_triton_match_local(served, exported, tmp_path):
    from msla_deploy.evaluate.synthetic import write_dataset
    from msla_deploy.runtime.segmenter import Segmenter

    write_dataset(tmp_path / "data", "folder", 6, (80, 150), 19, seed=7)  # another size: resized on the way in
    scores = {}
    for name, backend in (("local", "ort-cpu"), ("served", served.url)):
        result = cli(
            "evaluate",
            exported,
            "--data",
            tmp_path / "data",
            "--backend",
            backend,
            "--report-dir",
            tmp_path / name,
            "--json",
        )
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert report["images"] == 6
        (scores[name],) = report["backends"]
    assert served.url in json.dumps(scores["served"]["ran"])
    assert abs(scores["served"]["miou"] - scores["local"]["miou"]) <= 1e-6
    assert abs(scores["served"]["pixel_accuracy"] - scores["local"]["pixel_accuracy"]) <= 1e-6
    pictures = [(np.random.default_rng(k).random((70, 110, 3)) * 255).astype(np.uint8) for k in range(3)]
    with Segmenter(exported, served.url) as remote, Segmenter(exported, "ort-cpu") as local:
        for a, b in zip(remote.batch(pictures), local.batch(pictures)):
            assert (a.labels == b.labels).all()


@pytest.mark.slow
@pytest.mark.serve
def test_server_killed_mid_evaluation_is_exit_3_without_a_report(exported, tmp_path, short_tmp, monkeypatch):
    pytest.importorskip("pytriton", reason=NO_PYTRITON)
    from msla_deploy.evaluate.synthetic import write_dataset

    write_dataset(tmp_path / "data", "folder", 12, (64, 128), 19)
    process, described = _start_cli_server(exported, free_port(), short_tmp)
    answered = []
    original = TritonSession._run

    def run_then_kill(self, feeds):  # the server dies after its third answer, while pictures remain
        out = original(self, feeds)
        answered.append(1)
        if len(answered) == 3:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        return out

    monkeypatch.setattr(TritonSession, "_run", run_then_kill)
    try:
        start = time.perf_counter()
        result = cli(
            "evaluate",
            exported,
            "--data",
            tmp_path / "data",
            "--backend",
            described["url"],
            "--report-dir",
            tmp_path / "report",
        )
        elapsed = time.perf_counter() - start
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
    assert len(answered) == 3 and result.exit_code == 3, result.output
    assert described["url"] in one_error_line(result) and elapsed < 60
    assert not (tmp_path / "report").exists()  # nothing half-written


@pytest.mark.slow
@pytest.mark.serve
def test_a_served_classifier_answers_as_the_local_one(tmp_path_factory):
    """A classifier of each head kind, dynamic batch 1..3, served: the Classifier and predict
    through triton:// give the classes and probabilities they give locally."""
    pytest.importorskip("pytriton", reason=NO_PYTRITON)
    from PIL import Image

    from msla_deploy.artifact.options import ExportOptions
    from msla_deploy.export.pipeline import run_export
    from msla_deploy.runtime.classifier import Classifier
    from msla_deploy.serve.server import start_server
    from tests.runtime.test_classifier import PICTURES, calibrated_cls_checkpoint

    root = tmp_path_factory.mktemp("serve-cls")
    weights = calibrated_cls_checkpoint(root / "b0-cls.pt")  # decisive classes: no near-ties to flip
    picture = root / "p.png"
    Image.fromarray(PICTURES[0]).save(picture)
    for head in ("probs", "topk"):
        art = root / head
        options = ExportOptions(
            model="efficientvit-b0",
            weights=weights,
            resolution=(64, 64),
            head=head,
            batch=3,
            dynamic_batch=True,
            out=art,
            models_dir=root / "no-models",
            exporter="torchscript",  # ~6x faster than dynamo on b0 (tests/fixtures.export_random_classifier)
        )
        assert run_export(options).passed
        with start_server(art, host=LOOPBACK, port=free_port()) as server:
            assert server.batching.dynamic and server.batching.max_batch_size == 3
            with Classifier(art, server.url) as remote, Classifier(art, "ort-cpu") as local:
                assert remote.head == head and remote.names_from == "imagenet-1k" and remote.batch_size == 3
                served, here = remote.batch(PICTURES, top_k=4), local.batch(PICTURES, top_k=4)
            for a, b in zip(served, here):
                assert [(s.index, s.name) for s in a.top] == [(s.index, s.name) for s in b.top]
                np.testing.assert_allclose(
                    [s.probability for s in a.top], [s.probability for s in b.top], rtol=0, atol=1e-5
                )
            result = cli("predict", art, picture, "--backend", server.url, "--json", "-k", 3)
            assert result.exit_code == 0, result.output
            report = json.loads(result.stdout)
            assert server.url in json.dumps(report["runtime"])
            assert [c["index"] for c in report["pictures"][0]["top"]] == [s.index for s in here[0].top[:3]]
