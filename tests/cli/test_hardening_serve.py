"""Issue 25 for package, serve and `reference --inputs`: the repository is written where it is
named and never into the artifact (§1), random weights stay loud in a packaged or served model
(§3), and the PyTorch pass of `reference --inputs` shows a bar with counts (§6).

Each test failed before the change it came with. One random-weight b0 export at 64x128 and one
tiny factory export are shared by the module; tests that change an artifact change a copy.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rich.console import Console
from typer.testing import CliRunner

from msla_deploy import console
from msla_deploy.artifact.files import sha256_file
from msla_deploy.artifact.names import META_WEIGHTS, RANDOM_WEIGHTS_WARNING, WEIGHTS_RANDOM
from msla_deploy.artifact.trust import TRUST_ENV
from msla_deploy.cli import app
from msla_deploy.serve import deps
from msla_deploy.serve.repository import PackageOptions, package_triton
from tests.fixtures import TINY_MODEL_FILE as TINY
from tests.fixtures import export_random_b0, one_error_line

runner = CliRunner()


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def b0(tmp_path_factory) -> Path:
    return export_random_b0(tmp_path_factory.mktemp("serve-b0"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple:
    """(the factory file, its export at 32x32 with batch 1): weights from the factory, not random."""
    root = tmp_path_factory.mktemp("serve-tiny")
    factory = root / "tiny_model.py"
    factory.write_text(TINY)
    out = root / "tiny"
    result = cli("export", "-m", f"{factory}:build", "--res", "32x32", "--out", out)
    assert result.exit_code == 0, result.output
    return factory, out


def snapshot(folder: Path) -> dict:
    """Every path under `folder` with its content hash (None for folders): what 'nothing written' compares."""
    return {
        p.relative_to(folder).as_posix(): (sha256_file(p) if p.is_file() else None) for p in sorted(folder.rglob("*"))
    }


def parameter(config_text: str, key: str):
    """A `parameters` value of config.pbtxt: through Triton's ModelConfig where tritonclient is
    installed, else read from the text (the line format repository.config_text writes)."""
    if deps.have_tritonclient():
        from msla_deploy.serve.repository import parse_config

        config = parse_config(config_text)
        return config.parameters[key].string_value if key in config.parameters else None
    found = re.findall(r'parameters \{ key: "%s" value: \{ string_value: "([^"]*)" \} \}' % re.escape(key), config_text)
    assert len(found) <= 1, config_text
    return found[0] if found else None


# --- §1: the repository is never written into the artifact -------------------------------------


@pytest.mark.parametrize(
    "where, name",
    [
        (".", []),  # the export directory itself as the repository
        ("triton-repo", []),  # a repository inside the export directory
        ("reference", ["--name", "x"]),  # inside the reference bundle
        ("..", ["--name", "b0"]),  # REPO/<name> is the export directory
        ("..", []),  # the default name is the export directory's name: the same place
    ],
)
def test_package_never_writes_into_the_artifact(b0, tmp_path, where, name):
    art = shutil.copytree(b0, tmp_path / "b0")
    before, around = snapshot(art), sorted(p.name for p in tmp_path.iterdir())
    result = cli("package", art, "--triton", art / where, *name, "--overwrite")
    assert result.exit_code == 2, result.output
    assert "--triton" in one_error_line(result)
    assert snapshot(art) == before and sorted(p.name for p in tmp_path.iterdir()) == around


def test_package_of_a_model_file_never_writes_into_its_export_or_onto_it(tmp_path, b0):
    art = shutil.copytree(b0, tmp_path / "b0")
    before = snapshot(art)
    inside = cli("package", art / "model.onnx", "--triton", art / "repo")
    assert inside.exit_code == 2 and "inside the export directory" in one_error_line(inside)
    # a bare .onnx (no manifest): the model file itself is never the target
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copyfile(art / "model.onnx", bare / "m.onnx")
    onto = cli("package", bare / "m.onnx", "--triton", bare, "--name", "m.onnx", "--overwrite")
    assert onto.exit_code == 2 and "the artifact being read" in one_error_line(onto)
    assert snapshot(art) == before and sorted(p.name for p in bare.iterdir()) == ["m.onnx"]


def test_package_beside_the_artifact_is_fine(b0, tmp_path):
    art = shutil.copytree(b0, tmp_path / "b0")
    result = cli("package", art, "--triton", tmp_path / "repo", "--name", "b0")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "repo" / "b0" / "1" / "model.onnx").is_file()


@pytest.mark.parametrize("overwrite", [False, True])
def test_package_refuses_a_model_folder_that_links_out_of_the_repository(b0, tmp_path, overwrite):
    repo, elsewhere = tmp_path / "repo", tmp_path / "elsewhere"
    assert cli("package", b0, "--triton", elsewhere, "--name", "b0").exit_code == 0  # a model folder msla-deploy wrote
    repo.mkdir()
    (repo / "b0").symlink_to(elsewhere / "b0", target_is_directory=True)
    before = snapshot(elsewhere)
    result = cli("package", b0, "--triton", repo, *(["--overwrite"] if overwrite else []))
    assert result.exit_code == 2
    assert "links out of the repository" in one_error_line(result)
    assert snapshot(elsewhere) == before
    assert sorted(p.name for p in repo.iterdir()) == ["b0"] and (repo / "b0").is_symlink()


# --- §3: random weights are loud in a packaged model --------------------------------------------


def test_package_carries_random_weights_into_config_json_and_header(b0, tmp_path):
    result = cli("package", b0, "--triton", tmp_path / "repo", "--json")
    assert result.exit_code == 0, result.output
    written = json.loads(result.stdout)
    assert written["weights_source"] == WEIGHTS_RANDOM and written["weights_warning"] == RANDOM_WEIGHTS_WARNING
    assert written["parameters"][META_WEIGHTS] == WEIGHTS_RANDOM
    assert parameter(Path(written["config"]).read_text(), META_WEIGHTS) == WEIGHTS_RANDOM
    shown = cli("package", b0, "--triton", tmp_path / "repo", "--overwrite")
    assert shown.exit_code == 0, shown.output
    assert RANDOM_WEIGHTS_WARNING in shown.stderr  # the warning line
    assert re.search(r"weights\s+random: RANDOM WEIGHTS", shown.stdout)  # and the header row


def test_package_of_factory_weights_says_so_without_a_warning(tiny, tmp_path):
    _, art = tiny
    package = package_triton(PackageOptions(artifact=art, repository=tmp_path / "repo"))
    assert package.weights_source == "factory" and package.weights_warning is None
    assert parameter(package.config_text, META_WEIGHTS) == "factory"
    assert package.config_path.read_text() == package.config_text
    shown = cli("package", art, "--triton", tmp_path / "repo2")
    assert shown.exit_code == 0 and "RANDOM" not in shown.output


# --- §3: random weights are loud in a served model ----------------------------------------------


class FakeTriton:
    """PyTriton's Triton without a server: binds, 'runs', and is dead at the first health poll."""

    def __init__(self, config, workspace):
        self.bound = None

    def bind(self, **kwargs):
        self.bound = kwargs

    def run(self):
        pass

    def is_alive(self):
        return False

    def stop(self):
        pass


def _options(**kwargs):
    return kwargs


@pytest.fixture
def fake_pytriton(monkeypatch):
    monkeypatch.setattr(deps, "pytriton", lambda: (FakeTriton, _options, _options, _options, _options))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_says_random_weights_in_its_description_and_header(b0, fake_pytriton):
    from msla_deploy.serve.server import start_server

    server = start_server(b0, host="127.0.0.1", port=free_port(), backend="ort-cpu")
    try:
        described = server.describe()
    finally:
        server.stop()
    assert described["weights_source"] == WEIGHTS_RANDOM and described["weights_warning"] == RANDOM_WEIGHTS_WARNING

    as_json = cli("serve", b0, "--port", free_port(), "--backend", "ort-cpu", "--json")
    assert as_json.exit_code == 3  # the fake server is gone at the first poll
    assert json.loads(as_json.stdout.splitlines()[0])["weights_warning"] == RANDOM_WEIGHTS_WARNING
    shown = cli("serve", b0, "--port", free_port(), "--backend", "ort-cpu")
    assert shown.exit_code == 3
    assert RANDOM_WEIGHTS_WARNING in shown.stderr and re.search(r"weights\s+random: RANDOM WEIGHTS", shown.stdout)


# --- §6: reference --inputs' PyTorch pass shows a bar with counts and ETA -------------------------


def write_pictures(folder: Path, count: int) -> Path:
    folder.mkdir()
    for i in range(count):
        Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(folder / f"p{i}.png")
    return folder


def test_reference_inputs_reports_counts_through_steps(tiny, tmp_path, monkeypatch):
    from msla_deploy.parity.reference_images import add_reference_images
    from msla_deploy.progress import Steps

    factory, art = tiny
    art = shutil.copytree(art, tmp_path / "tiny")
    monkeypatch.setenv(TRUST_ENV, f"{factory}:build")
    seen = []
    current = {"step": None}
    steps = Steps(
        on_start=lambda title: current.update(step=title),
        on_advance=lambda done, total: seen.append((current["step"], done, total)),
    )
    add_reference_images(art, write_pictures(tmp_path / "pics", 3), steps)
    torch_pass = [(done, total) for step, done, total in seen if step.startswith("Computing the PyTorch reference")]
    assert torch_pass == [(0, 3), (1, 3), (2, 3), (3, 3)]  # batch 1: one count per picture, 0 first


def test_reference_inputs_draws_a_bar_on_a_terminal(tiny, tmp_path, monkeypatch):
    factory, art = tiny
    art = shutil.copytree(art, tmp_path / "tiny")
    screen = io.StringIO()
    monkeypatch.setattr(console, "err", Console(file=screen, force_terminal=True, width=120))
    result = cli(
        "--trust-model-file", f"{factory}:build", "reference", "--inputs", write_pictures(tmp_path / "pics", 3), art
    )
    assert result.exit_code == 0, result.output
    drawn = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue())  # without the terminal's control sequences
    assert re.search(r"Computing the PyTorch reference outputs of 3 picture\(s\).*3/3.*100%.*ETA", drawn), drawn


def test_steps_advance_is_silent_off_a_terminal(monkeypatch):
    screen = io.StringIO()
    monkeypatch.setattr(console, "err", Console(file=screen, force_terminal=False))
    steps = console.steps_with_progress()
    with steps.step("count", "Counting"):
        for done in range(4):
            steps.advance(done, 3)
    assert screen.getvalue().startswith("Counting ... done") and "3/3" not in screen.getvalue()
