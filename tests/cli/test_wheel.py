"""The Jetson install path as the README gives it: build the wheel, install it with the base
dependencies and an ONNX Runtime into a fresh virtual environment that has no torch, and run
`doctor` and `validate` there on an export made here.

The environment uses Python 3.8 where one is found (JetPack 5's Python, with the last numpy,
onnx and onnxruntime that support it), else this interpreter. Needs PyPI (pip's cache makes a
second run quick).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional

import pytest

from tests.fixtures import REPO, export_random_b0

B0 = "efficientvit-seg-b0-cityscapes"


def python38() -> Optional[str]:
    """A Python 3.8 on this machine (on PATH, or pyenv's), or None."""
    candidates = [shutil.which("python3.8")]
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates += [str(p) for p in sorted(pyenv_root.glob("versions/3.8*/bin/python3.8"))]
    for candidate in filter(None, candidates):
        done = subprocess.run(
            [candidate, "-c", "import sys, venv; print(sys.version_info[:2] == (3, 8))"], capture_output=True, text=True
        )
        if done.returncode == 0 and done.stdout.strip() == "True":
            return candidate
    return None


def run(argv, **kwargs) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, env=env, **kwargs)


@pytest.mark.slow
def test_wheel_installs_without_torch_and_runs_doctor_and_validate(tmp_path):
    export = export_random_b0(tmp_path, "b0", must_pass=True)  # B0 at 64x128, seeded random weights

    # build from a copy: setuptools' build/ folder in the checkout could carry stale files
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "msla_deploy", source / "msla_deploy", ignore=shutil.ignore_patterns("__pycache__"))
    built = run([sys.executable, "-m", "pip", "wheel", "--no-deps", source, "-w", tmp_path / "dist"], timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("msla_deploy-*.whl")

    interpreter = python38() or sys.executable
    venv = tmp_path / "venv"
    made = run([interpreter, "-m", "venv", venv], timeout=120)
    assert made.returncode == 0, made.stderr
    python, cli = venv / "bin" / "python", venv / "bin" / "msla-deploy"
    installed = run([python, "-m", "pip", "install", "--quiet", f"{wheel}[cpu]"], timeout=600)
    assert installed.returncode == 0, installed.stderr[-3000:]
    no_torch = run(
        [python, "-c", "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is not None)"]
    )
    assert no_torch.returncode == 0, "torch is importable in the fresh venv: the test would prove nothing"

    doctor = run([cli, "doctor", "--json"], cwd=tmp_path, timeout=120)
    assert doctor.returncode == 0, doctor.stderr
    report = json.loads(doctor.stdout)
    assert str(venv) in report["components"]["msla-deploy"]["detail"]  # the wheel's copy, not the checkout
    version = run([python, "-c", "import platform; print(platform.python_version())"]).stdout.strip()
    assert report["components"]["python"]["version"] == version
    assert report["components"]["torch"]["ok"] is False
    cpu = [p for p in report["components"]["onnxruntime"]["providers"] if p["provider"] == "CPUExecutionProvider"]
    assert cpu and cpu[0]["started"] is True
    assert report["commands"]["validate"]["ready"] is True and report["commands"]["export"]["ready"] is False

    validated = run([cli, "validate", export, "--report-dir", tmp_path / "report", "--json"], cwd=tmp_path, timeout=300)
    assert validated.returncode == 0, validated.stderr
    assert json.loads(validated.stdout)["passed"] is True
    assert (tmp_path / "report" / "junit.xml").is_file()
