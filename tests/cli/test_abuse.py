"""The artifact directory under abuse (issue 15): nothing lost, nothing run, nothing wrong accepted.

Each case of the issue is a test here. Signals are sent from inside the run at a chosen step (a
monkeypatched step calls os.kill on its own process), never by timing a kill from outside.
Most directory cases export a tiny user model (one 1x1 convolution: seconds); the cases that
need the real thing share one b0 export at 64x128 and work on copies of it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from msla_deploy import cli as cli_module
from msla_deploy import limits
from msla_deploy.artifact import lock as lock_module
from msla_deploy.artifact.outputs import OutputGuard
from msla_deploy.cli import app
from msla_deploy.errors import BadInput
from msla_deploy.export import pipeline, torch_to_onnx
from msla_deploy.runtime.picture_files import load_rgb
from tests.fixtures import REPO, export_random_b0, one_error_line
from tests.fixtures import TINY_MODEL_FILE as TINY

B0 = "efficientvit-seg-b0-cityscapes"
runner = CliRunner()


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def tree_digest(root: Path) -> dict:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def hidden_beside(path: Path) -> list:
    """Staging, old copies, locks and temp files of `path` left in its parent folder."""
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}."))


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def subprocess_env(**extra) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tiny") / "tiny_model.py"
    path.write_text(TINY)
    return path


def export_tiny(tiny: Path, out: Path, *extra, factory: str = "build"):
    return cli("export", "-m", f"{tiny}:{factory}", "--res", "64x64", "--out", out, *extra)


@pytest.fixture(scope="module")
def b0(tmp_path_factory) -> Path:
    return export_random_b0(tmp_path_factory.mktemp("abuse-b0"))


def copy_of(artifact: Path, where: Path) -> Path:
    shutil.copytree(artifact, where)
    return where


# --- data loss ------------------------------------------------------------------------------------


def test_a_foreign_directory_holding_a_manifest_is_never_touched(tiny, tmp_path):
    w = tmp_path / "w"
    (w / "src").mkdir(parents=True)
    (w / "manifest.json").write_text("{}")
    (w / "src" / "main.js").write_text("x")
    before = tree_digest(w)
    for extra in ((), ("--overwrite",)):
        result = export_tiny(tiny, w, *extra)
        assert result.exit_code == 2, result.output
        assert "not an msla-deploy export directory" in one_error_line(result)
        assert tree_digest(w) == before
    assert hidden_beside(w) == []


def test_reexport_needs_overwrite_and_keeps_what_export_did_not_write(tiny, tmp_path):
    out = tmp_path / "out"
    assert export_tiny(tiny, out).exit_code == 0
    (out / "model.engine").write_bytes(b"hours of Jetson build time")
    (out / "validation").mkdir()
    (out / "validation" / "report.json").write_text("{}")
    (out / "notes.txt").write_text("mine")
    before = tree_digest(out)

    refused = export_tiny(tiny, out)
    assert refused.exit_code == 2
    line = one_error_line(refused)
    assert (
        "already holds an export" in line and "--overwrite" in line and "model.onnx" in line and "model.engine" in line
    )
    assert tree_digest(out) == before

    result = export_tiny(tiny, out, "--overwrite", factory="build_one_class")
    assert result.exit_code == 0, result.output
    after = tree_digest(out)
    for kept in ("model.engine", "validation/report.json", "notes.txt"):
        assert after[kept] == before[kept]
    assert after["model.onnx"] != before["model.onnx"]  # the new model replaced the export's own file
    assert "kept 3 file(s)" in result.stderr
    assert hidden_beside(out) == []


def test_a_second_writer_exits_2_naming_the_first(tiny, tmp_path, monkeypatch):
    out = tmp_path / "out"
    seen = {}
    original = pipeline._write_graph

    def write_graph_while_another_export_starts(*args, **kwargs):
        if not seen:  # a second, real process exports to the same --out while this one works
            seen["proc"] = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "msla_deploy",
                    "export",
                    "-m",
                    f"{tiny}:build",
                    "--res",
                    "64x64",
                    "--out",
                    str(out),
                ],
                capture_output=True,
                text=True,
                timeout=300,
                env=subprocess_env(),
            )
        return original(*args, **kwargs)

    monkeypatch.setattr(pipeline, "_write_graph", write_graph_while_another_export_starts)
    result = export_tiny(tiny, out)
    assert result.exit_code == 0, result.output
    second = seen["proc"]
    assert second.returncode == 2, second.stderr
    assert f"pid {os.getpid()} on {socket.gethostname()}" in second.stderr and "being written by" in second.stderr
    assert hidden_beside(out) == []  # the lock is gone once the first finished


def test_a_stale_lock_of_a_dead_pid_is_taken_over(tiny, tmp_path):
    out = tmp_path / "out"
    stale = {
        "pid": dead_pid(),
        "host": socket.gethostname(),
        "command": "msla-deploy export (killed)",
        "started_unix": 0,
    }
    lock_module.lock_path(out).write_text(json.dumps(stale))
    result = export_tiny(tiny, out)
    assert result.exit_code == 0, result.output
    assert hidden_beside(out) == []


def test_a_lock_held_elsewhere_is_respected(tiny, tmp_path):
    out = tmp_path / "out"
    other = {"pid": 1, "host": "jetson-7", "command": "msla-deploy export -m x", "started_unix": 0}
    lock_module.lock_path(out).write_text(json.dumps(other))
    result = export_tiny(tiny, out)
    assert result.exit_code == 2
    assert "pid 1 on jetson-7" in one_error_line(result)
    assert not out.exists()


def test_a_symlinked_out_is_followed_and_kept(tiny, tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    for extra in ((), ("--overwrite",)):
        result = export_tiny(tiny, link, *extra)
        assert result.exit_code == 0, result.output
        assert link.is_symlink() and os.readlink(link) == str(real)
        assert (real / "manifest.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]


def test_a_dangling_symlinked_out_exits_2_leaving_nothing(tiny, tmp_path):
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "gone", target_is_directory=True)
    result = export_tiny(tiny, link)
    assert result.exit_code == 2
    assert "does not exist" in one_error_line(result)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link"]


@pytest.mark.parametrize(
    "flag, where",
    [
        ("--junit", "manifest.json"),
        ("--junit", "model.onnx"),
        ("--junit", "reference/inputs.npz"),
        ("--report-dir", "."),
        ("--report-dir", "reference"),
        ("--report-dir", "reference/deeper"),
    ],
)
def test_validate_outputs_onto_the_artifact_are_refused(b0, tmp_path, flag, where):
    a = copy_of(b0, tmp_path / "a")
    before = tree_digest(a)
    result = cli("validate", a, flag, a / where)
    assert result.exit_code == 2, result.output
    assert "part of the artifact" in one_error_line(result)
    assert tree_digest(a) == before


def test_validate_reports_beside_the_artifact_still_work(b0, tmp_path):
    a = copy_of(b0, tmp_path / "a")
    result = cli("validate", a, "--junit", a / "validation" / "junit.xml")
    assert result.exit_code == 0, result.output
    assert (a / "validation" / "junit.xml").read_text().startswith("<?xml")
    with pytest.raises(BadInput):
        OutputGuard(artifact_dir=a).check(a / "reference" / "new.json", "--junit")
    OutputGuard(artifact_dir=a).check(a / "validation", "--report-dir")  # no error


def _picture_folder(where: Path, count: int = 1) -> Path:
    from PIL import Image

    where.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (64, 128, 3), dtype=np.uint8)).save(where / f"p{i}.png")
    return where


def test_reference_inputs_interrupted_between_files_leaves_the_bundle_whole(b0, tmp_path, monkeypatch):
    a = copy_of(b0, tmp_path / "a")
    pictures = _picture_folder(tmp_path / "pics")
    before = tree_digest(a)
    from msla_deploy.artifact import reference as reference_module

    original = reference_module.write_json_atomic

    def terminated_after_the_npz_files(path, data):
        os.kill(os.getpid(), signal.SIGTERM)  # inputs.npz and outputs.npz are written by now
        return original(path, data)

    monkeypatch.setattr(reference_module, "write_json_atomic", terminated_after_the_npz_files)
    result = cli("reference", a, "--inputs", pictures)
    assert result.exit_code == 143, result.output
    assert "terminated" in one_error_line(result)
    assert tree_digest(a) == before  # nothing of the interrupted update is visible
    assert hidden_beside(a) == []

    monkeypatch.setattr(reference_module, "write_json_atomic", original)
    result = cli("reference", a, "--inputs", pictures)
    assert result.exit_code == 0, result.output
    manifest = json.loads((a / "manifest.json").read_text())
    for rel, entry in manifest["artifacts"].items():  # bundle and manifest changed together
        assert hashlib.sha256((a / rel).read_bytes()).hexdigest() == entry["sha256"], rel
    assert cli("validate", a).exit_code == 0


def test_sigterm_during_export_exits_143_and_leaves_nothing(tiny, tmp_path, monkeypatch):
    out = tmp_path / "deep" / "out"
    original = pipeline._write_graph

    def terminated(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        return original(*args, **kwargs)

    monkeypatch.setattr(pipeline, "_write_graph", terminated)
    result = export_tiny(tiny, out)
    assert result.exit_code == 143, result.output
    assert "terminated" in one_error_line(result)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no staging, no lock, no created parents
    assert signal.getsignal(signal.SIGTERM) is not cli_module._raise_terminated  # the CLI's handler is gone again


def test_leftovers_of_killed_runs_are_removed_by_the_next_run(tiny, tmp_path):
    out = tmp_path / "out"
    assert export_tiny(tiny, out).exit_code == 0
    pid = dead_pid()
    partial = tmp_path / f".out.partial-{pid}"
    (partial / "reference").mkdir(parents=True)
    (partial / "model.onnx").write_bytes(b"\0" * 1000)
    (tmp_path / f".out.old-{pid}").mkdir()
    (tmp_path / f".out.lock.new-{pid}").write_text("{}")
    (out / "reference" / f".inputs.npz.tmp-{pid}").write_bytes(b"half")
    alive = tmp_path / f".out.partial-{os.getppid()}"  # a live process's staging is not ours to delete
    alive.mkdir()
    result = export_tiny(tiny, out, "--overwrite")
    assert result.exit_code == 0, result.output
    assert hidden_beside(out) == [alive.name]
    assert not (out / "reference" / f".inputs.npz.tmp-{pid}").exists()
    assert "leftover of an interrupted run" in result.stderr


def test_a_swap_killed_between_its_two_renames_is_restored(tiny, tmp_path):
    out = tmp_path / "out"
    assert export_tiny(tiny, out).exit_code == 0
    before = tree_digest(out)
    pid = dead_pid()
    os.replace(out, tmp_path / f".out.old-{pid}")  # the state after the first rename
    shutil.copytree(tmp_path / f".out.old-{pid}", tmp_path / f".out.partial-{pid}")
    result = export_tiny(tiny, out)
    assert result.exit_code == 2  # restored, and then protected like any export
    assert "already holds an export" in one_error_line(result)
    assert tree_digest(out) == before
    assert hidden_beside(out) == []


# --- wrong input accepted -----------------------------------------------------------------------


def test_a_sixteen_bit_grey_png_is_scaled_not_white(tmp_path):
    from PIL import Image

    grey = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)
    path = tmp_path / "g16.png"
    Image.fromarray(grey).save(path)
    pixels = load_rgb(path)
    assert pixels.shape == (64, 64, 3)
    np.testing.assert_allclose(pixels[:, :, 1], grey / 65535.0, atol=1e-6)
    assert pixels.mean() < 0.5  # 8-bit clipping made it nearly all white (mean ~1.0)


class _Recorder:
    def __init__(self):
        self.calls = 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        raise AssertionError("the torchscript fallback ran after an interrupt")


def _interrupting_dynamo(how: str):
    def export(*args, **kwargs):
        if how == "raised":
            os.kill(os.getpid(), signal.SIGINT)
        elif how == "wrapped":  # torch re-raising what happened inside traced code as its own error
            try:
                os.kill(os.getpid(), signal.SIGINT)
            except KeyboardInterrupt as exc:
                raise RuntimeError("torch.export failed") from exc
        else:  # swallowed: no trace of the interrupt left in the exception
            try:
                os.kill(os.getpid(), signal.SIGINT)
            except KeyboardInterrupt:
                pass
            raise RuntimeError("torch.export failed")
        raise AssertionError("SIGINT did not interrupt")

    return export


@pytest.fixture
def ctrl_c_interrupts():
    """SIGINT raises KeyboardInterrupt, as in a user's terminal: a pytest-xdist worker runs with
    SIGINT ignored (its controller takes Ctrl-C), where the interrupt would never arrive."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("how", ["raised", "wrapped", "swallowed"])
def test_ctrl_c_during_the_dynamo_export_is_never_a_fallback(tiny, tmp_path, monkeypatch, how, ctrl_c_interrupts):
    fallback = _Recorder()
    monkeypatch.setattr(torch_to_onnx, "dynamo_available", lambda: True)
    monkeypatch.setattr(torch_to_onnx, "_export_dynamo", _interrupting_dynamo(how))
    monkeypatch.setattr(torch_to_onnx, "_export_torchscript", fallback)
    out = tmp_path / "out"
    result = export_tiny(tiny, out)
    assert result.exit_code == 130, result.output
    assert "interrupted" in one_error_line(result)
    assert fallback.calls == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_sigterm_swallowed_by_the_exporter_still_terminates(tiny, tmp_path, monkeypatch):
    def swallowing(*args, **kwargs):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
        except KeyboardInterrupt:
            pass
        raise RuntimeError("torch.export failed")

    fallback = _Recorder()
    monkeypatch.setattr(torch_to_onnx, "dynamo_available", lambda: True)
    monkeypatch.setattr(torch_to_onnx, "_export_dynamo", swallowing)
    monkeypatch.setattr(torch_to_onnx, "_export_torchscript", fallback)
    result = export_tiny(tiny, tmp_path / "out")
    assert result.exit_code == 143, result.output
    assert fallback.calls == 0


def test_a_factory_that_prints_does_not_break_json(tiny, tmp_path):
    result = export_tiny(tiny, tmp_path / "out", "--json", factory="build_printing")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["passed"] is True
    assert "hello from the factory" in result.stderr


def test_vacuous_parity_is_said_next_to_the_verdict(tiny, b0, tmp_path):
    result = export_tiny(tiny, tmp_path / "one", factory="build_one_class")
    assert result.exit_code == 0, result.output
    assert "class 0 on 100.00%" in result.stdout and "vacuous" in result.stdout
    parity = json.loads((tmp_path / "one" / "parity.json").read_text())
    output = parity["outputs"][0]
    assert (
        output["dominant_class"] == 0 and output["dominant_class_share"] == 1.0 and "vacuous" in output["vacuous_note"]
    )

    # b0 with random weights predicts one class everywhere on the synthetic inputs: validate says so
    a = copy_of(b0, tmp_path / "a")
    result = cli("validate", a)
    assert result.exit_code == 0, result.output
    assert "vacuous" in result.stdout
    report = json.loads((a / "validation" / "report.json").read_text())
    assert report["outputs"][0]["dominant_class_share"] >= 0.99 and report["outputs"][0]["vacuous_note"]
    assert "vacuous" in (a / "validation" / "report.md").read_text()

    mixed = export_tiny(tiny, tmp_path / "mixed", "--json")  # a 1x1 conv of noise: several classes
    assert json.loads(mixed.stdout)["parity"]["outputs"][0]["vacuous_note"] is None


# --- limits and exit codes ------------------------------------------------------------------------


def test_a_zip_bomb_checkpoint_is_refused_before_loading(tmp_path, monkeypatch):
    import torch

    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("archive/data/0", "w") as member:
            block = bytes(1 << 20)
            for _ in range(200):
                member.write(block)
    assert bomb.stat().st_size < 1 << 20
    monkeypatch.setattr(torch, "load", _Recorder())
    result = cli("export", "-m", B0, "--res", "64x64", "--weights", bomb, "--out", tmp_path / "out")
    assert result.exit_code == 2, result.output
    line = one_error_line(result)
    assert "200 MiB" in line and "limit" in line and "state_dict()" in line
    assert not (tmp_path / "out").exists()


def test_a_huge_picture_is_refused_by_its_declared_size(b0, tmp_path):
    from PIL import Image

    folder = tmp_path / "pics"
    folder.mkdir()
    Image.new("1", (10000, 10000)).save(folder / "huge.png")  # 1-bit: small to write, 1.2 GB as float RGB
    a = copy_of(b0, tmp_path / "a")
    result = cli("reference", a, "--inputs", folder)
    assert result.exit_code == 2, result.output
    assert "10000x10000 = 100.0 megapixels" in one_error_line(result)


@pytest.mark.parametrize("side", [40, 64])  # Pillow's warning (1600 > 1000 px) and its error (> 2x)
def test_a_pillow_decompression_bomb_is_exit_2(tmp_path, monkeypatch, side):
    from PIL import Image

    from msla_deploy.runtime import picture_files as images

    path = tmp_path / "bomb.png"
    Image.new("RGB", (side, side)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    monkeypatch.setattr(images, "check_picture_pixels", lambda *a, **k: None)  # Pillow's own guard alone
    with pytest.raises(BadInput, match="decompression bomb"):
        load_rgb(path)


def test_a_batch_that_cannot_fit_is_refused_before_the_export(tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "available_memory", lambda: 8 * 2**30)
    result = cli("export", "-m", B0, "--res", "1024x2048", "--batch", "64", "--out", tmp_path / "out")
    assert result.exit_code == 2, result.output
    line = one_error_line(result)
    assert (
        "batch 64 at 1024x2048" in line
        and "GiB" in line
        and f"--batch {(8 * 2**30 - 512 * 2**20) // (10 * 3 * 1024 * 2048 * 4)} or less" in line
    )
    assert not (tmp_path / "out").exists()
    warnings = []
    limits.check_export_memory(64, 1024, 2048, warnings.append, available=24 * 2**30)
    assert warnings and "more than half" in warnings[0]
    warnings.clear()
    limits.check_export_memory(1, 1024, 2048, warnings.append, available=24 * 2**30)
    assert warnings == []


def test_a_factory_whose_forward_raises_is_exit_2(tiny, tmp_path):
    result = export_tiny(tiny, tmp_path / "out", factory="build_broken")
    assert result.exit_code == 2, result.output
    line = one_error_line(result)
    assert "ValueError" in line and "forward is broken" in line and "tiny_model.py line" in line


def test_a_string_array_in_the_reference_is_exit_2(b0, tmp_path):
    a = copy_of(b0, tmp_path / "a")
    np.savez(a / "reference" / "inputs.npz", input=np.array(["a", "b"]))
    assert cli("validate", a).exit_code == 1  # the tamper check sees the change first; allowed, the reader judges it
    result = cli("validate", a, "--allow-modified")
    assert result.exit_code == 2, result.output
    assert "not numbers" in one_error_line(result)


@pytest.mark.parametrize(
    "field, value", [("images", 5), ("synthetic_samples", "three"), ("source", ["x"]), (None, [1, 2])]
)
def test_wrong_typed_reference_json_is_exit_2(b0, tmp_path, field, value):
    a = copy_of(b0, tmp_path / "a")
    path = a / "reference" / "reference.json"
    info = json.loads(path.read_text())
    path.write_text(json.dumps(value if field is None else {**info, field: value}))
    for args in (("validate", a, "--allow-modified"), ("reference", a, "--inputs", _picture_folder(tmp_path / "pics"))):
        result = cli(*args)
        assert result.exit_code == 2, result.output
        assert "reference.json" in one_error_line(result)


def test_bench_of_a_graph_with_a_huge_declared_shape_is_exit_2(tmp_path):
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 100000, 100000])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3, 100000, 100000])
    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["logits"])], "huge", [x], [y])
    path = tmp_path / "huge.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    result = cli("bench", path, "--backend", "ort-cpu", "-n", "1")
    assert result.exit_code == 2, result.output
    line = one_error_line(result)
    assert "223.5 GiB" in line and "[1, 3, 100000, 100000]" in line


def test_a_broken_torch_install_is_exit_3(tmp_path):
    fake = tmp_path / "fake" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        "raise OSError('libtorch_cpu.so: cannot open shared object file: No such file or directory')\n"
    )
    env = subprocess_env(PYTHONPATH=os.pathsep.join([str(tmp_path / "fake"), str(REPO)]))
    proc = subprocess.run(
        [sys.executable, "-m", "msla_deploy", "export", "-m", B0, "--res", "64x64", "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 3, proc.stderr
    assert "installed but does not import" in proc.stderr and "libtorch_cpu.so" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_non_ascii_paths_on_an_ascii_console(b0, tmp_path):
    a = copy_of(b0, tmp_path / "caf\u00e9-artifact")
    env = subprocess_env(PYTHONIOENCODING="ascii", LC_ALL="C", LANG="C")
    proc = subprocess.run(
        [sys.executable, "-m", "msla_deploy", "validate", str(a)], capture_output=True, timeout=300, env=env
    )
    assert proc.returncode == 0, proc.stderr.decode("ascii", "replace")
    assert b"caf\\xe9-artifact" in proc.stdout
    proc = subprocess.run(
        [sys.executable, "-m", "msla_deploy", "validate", str(tmp_path / "\u00fcber.onnx")],
        capture_output=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 2, proc.stderr.decode("ascii", "replace")
    assert b"\\xfcber.onnx" in proc.stderr and b"Traceback" not in proc.stderr


# --- code run from data -------------------------------------------------------------------------


def test_model_code_named_only_by_a_manifest_is_never_imported(tiny, tmp_path):
    out = tmp_path / "out"
    assert export_tiny(tiny, out).exit_code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"]["file_sha256"] == hashlib.sha256(tiny.read_bytes()).hexdigest()  # recorded at export
    pictures = _picture_folder(tmp_path / "pics")

    refused = cli("reference", out, "--inputs", pictures)
    assert refused.exit_code == 2
    line = one_error_line(refused)
    assert "named only by the manifest" in line and f"--trust-model-file {tiny}:build" in line

    trusted = cli("--trust-model-file", f"{tiny}:build", "reference", out, "--inputs", pictures)
    assert trusted.exit_code == 0, trusted.output

    # a manifest edited to name other code: that code never runs, whatever else is trusted
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.py"
    evil.write_text(f"open({str(marker)!r}, 'w').write('x')\ndef build():\n    return None\n")
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["options"]["model"] = f"{evil}:build"
    (out / "manifest.json").write_text(json.dumps(manifest))
    for args in (
        ("reference", out, "--inputs", pictures),
        ("--trust-model-file", f"{tiny}:build", "reference", out, "--inputs", pictures),
        ("bench", out, "--backend", "torch", "-n", "1"),
    ):
        result = cli(*args)
        assert result.exit_code == 2, (args, result.output)
        assert "named only by the manifest" in one_error_line(result)
    assert not marker.exists()


def test_localize_never_imports_a_model_file_the_manifest_names(b0, tmp_path):
    a = copy_of(b0, tmp_path / "a")
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.py"
    evil.write_text(f"open({str(marker)!r}, 'w').write('x')\ndef build():\n    return None\n")
    manifest = json.loads((a / "manifest.json").read_text())
    manifest["options"]["model"] = f"{evil}:build"
    (a / "manifest.json").write_text(json.dumps(manifest))
    result = cli("validate", a, "--localize")
    assert result.exit_code == 2, result.output
    assert "named only by the manifest" in one_error_line(result)
    assert not marker.exists() and not (a / "validation").exists()


def test_a_trusted_model_file_must_still_match_the_export(tiny, tmp_path):
    model_file = tmp_path / "mine.py"
    model_file.write_text(TINY)
    out = tmp_path / "out"
    assert cli("export", "-m", f"{model_file}:build", "--res", "64x64", "--out", out).exit_code == 0
    model_file.write_text(TINY + "\nprint('changed')\n")
    result = cli(
        "--trust-model-file", f"{model_file}:build", "reference", out, "--inputs", _picture_folder(tmp_path / "pics")
    )
    assert result.exit_code == 2
    assert "changed since the export" in one_error_line(result)


@pytest.mark.parametrize(
    "where, value",
    [
        (("precision", "onnx_files", "fp32"), "/etc/passwd.onnx"),
        (("precision", "onnx_files", "fp32"), "../elsewhere/model.onnx"),
        (("parity", "file"), "/tmp/parity.json"),
    ],
)
def test_manifest_paths_must_stay_inside_the_directory(b0, tmp_path, where, value):
    a = copy_of(b0, tmp_path / "a")
    manifest = json.loads((a / "manifest.json").read_text())
    node = manifest
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    (a / "manifest.json").write_text(json.dumps(manifest))
    for args in (("build", a, "--print-trtexec"), ("validate", a)):
        result = cli(*args)
        assert result.exit_code == 2, (args, result.output)
        line = one_error_line(result)
        assert "not a path inside the artifact directory" in line and repr(value) in line


def test_an_absolute_artifacts_key_is_refused(b0, tmp_path):
    a = copy_of(b0, tmp_path / "a")
    manifest = json.loads((a / "manifest.json").read_text())
    manifest["artifacts"]["/etc/hostname"] = {"sha256": "0" * 64, "bytes": 1}
    (a / "manifest.json").write_text(json.dumps(manifest))
    result = cli("validate", a)
    assert result.exit_code == 2
    assert "'/etc/hostname'" in one_error_line(result)


# --- the tamper check is strict ---------------------------------------------------------------------


def test_a_manifest_without_its_hashes_fails_validate_unless_allowed(b0, tmp_path):
    a = copy_of(b0, tmp_path / "a")
    manifest = json.loads((a / "manifest.json").read_text())
    del manifest["artifacts"]
    (a / "manifest.json").write_text(json.dumps(manifest))
    result = cli("validate", a)
    assert result.exit_code == 1
    assert "records no 'artifacts' hashes" in one_error_line(result) and "--allow-modified" in one_error_line(result)
    assert not (a / "validation").exists()
    allowed = cli("validate", a, "--allow-modified")
    assert allowed.exit_code == 0, allowed.output
    assert "artifact modified after export" in allowed.stderr


def test_a_model_and_reference_swapped_together_fail_validate(b0, tiny, tmp_path):
    a = copy_of(b0, tmp_path / "a")
    other = tmp_path / "other"
    assert (
        cli(
            "export", "-m", B0, "--res", "64x128", "--out", other, "--models-dir", tmp_path / "none", "--stress-weights"
        ).exit_code
        == 0
    )
    shutil.copy(other / "model.onnx", a / "model.onnx")
    shutil.copytree(other / "reference", a / "reference", dirs_exist_ok=True)
    result = cli("validate", a)
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "artifact modified after export" in line and "model.onnx" in line and "reference/" in line
    assert cli("validate", a, "--allow-modified").exit_code == 0


def test_build_refuses_while_another_writer_holds_the_directory(b0, tmp_path):
    a = copy_of(b0, tmp_path / "a")
    holder = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": "msla-deploy export --overwrite (still running)",
        "started_unix": 0,
    }
    lock_module.lock_path(a).write_text(json.dumps(holder))
    result = cli("build", a)
    assert result.exit_code == 2, result.output
    assert f"pid {os.getpid()}" in one_error_line(result) and "still running" in one_error_line(result)
    lock_module.lock_path(a).unlink()
    released = cli("build", a)
    assert "being written" not in released.stderr  # the lock was the only obstacle (no TensorRT here: exit 3)


def test_every_picture_reader_refuses_a_huge_picture_by_its_header(tmp_path):
    """One guarded opener (limits.open_picture) for reference, calibration, evaluate and predict:
    the Segmenter and evaluate's dataset reader refuse by the declared size, before decoding."""
    from PIL import Image

    from msla_deploy.evaluate.datasets import read_image
    from msla_deploy.runtime.segmenter import to_rgb

    huge = tmp_path / "huge.png"
    Image.new("1", (10000, 10000)).save(huge)
    for read in (to_rgb, read_image):
        with pytest.raises(BadInput, match="10000x10000 = 100.0 megapixels"):
            read(huge)
