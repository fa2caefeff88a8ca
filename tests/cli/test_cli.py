"""The command line itself: choices in --help, Typer refusing a wrong choice (exit 2, one line),
flags shown as flags, the next command printed after a success, and what start-up imports."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from msla_deploy import choices
from msla_deploy.cli import app
from msla_deploy.cli_options import TRITON_FORM, backend_check, backend_completion, command_line
from msla_deploy.export.command import next_after_export
from msla_deploy.inspect.command import _complete_target
from msla_deploy.parity.command import next_after_validate
from msla_deploy.serve.command import next_after_package
from msla_deploy.trt.command import next_after_build
from tests.fixtures import REPO, one_error_line
from tests.fixtures import TINY_MODEL_FILE as TINY

runner = CliRunner()


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def help_text(*command: str) -> str:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    return " ".join(result.stdout.split())  # one line: wrapping depends on the terminal


def click_commands():
    group = typer.main.get_command(app)
    return [("", group)] + sorted(group.commands.items())


# --- choices ------------------------------------------------------------------------------------

CLOSED = [
    ("export", "--precision", choices.Precision),
    ("export", "--exporter", choices.Exporter),
    ("export", "--attention-precision", choices.FloatPrecision),
    ("export", "--io-dtype", choices.FloatPrecision),
    ("export", "--upsample", choices.Upsample),
    ("export", "--head", choices.Head),
    ("export", "--calib-method", choices.CalibMethod),
    ("export", "--int8-policy", choices.Int8Policy),
    ("build", "--precision", choices.Precision),
    ("build", "--typing", choices.Typing),
    ("build", "--hardware-compat", choices.HardwareCompat),
    ("inspect", "--precision", choices.InspectPrecision),
    ("evaluate", "--dataset", choices.Dataset),
    ("package", "--platform", choices.Platform),
    ("serve", "--backend", choices.NonTorchBackend),
]


@pytest.mark.parametrize("command, option, enum", CLOSED)
def test_help_shows_the_choices(command, option, enum):
    shown = re.escape("|".join(enum.values()))
    assert re.search(rf"{option} [<\[]{shown}[>\]]", help_text(command)), (option, help_text(command))


@pytest.mark.parametrize(
    "command, names",
    [
        ("bench", choices.BACKENDS),
        ("evaluate", choices.BACKENDS),
        ("predict", choices.BACKENDS),
        ("validate", choices.NON_TORCH_BACKENDS),
    ],
)
def test_an_open_backend_shows_its_names_and_the_triton_form(command, names):
    assert "--backend [" + "|".join(names) + f"|{TRITON_FORM}]" in help_text(command)


@pytest.mark.parametrize(
    "args, option, bad",
    [
        (["export", "--precision", "fp8"], "--precision", "fp8"),
        (["export", "--exporter", "magic"], "--exporter", "magic"),
        (["export", "--attention-precision", "bf16"], "--attention-precision", "bf16"),
        (["export", "--upsample", "nearest"], "--upsample", "nearest"),
        (["export", "--head", "mask"], "--head", "mask"),
        (["export", "--calib-method", "kl"], "--calib-method", "kl"),
        (["build", "x.onnx", "--typing", "loose"], "--typing", "loose"),
        (["build", "x.onnx", "--hardware-compat", "turing+"], "--hardware-compat", "turing+"),
        (["inspect", "x.onnx", "--precision", "fp8"], "--precision", "fp8"),
        (["evaluate", "x", "--data", "d", "--dataset", "coco"], "--dataset", "coco"),
        (["package", "x", "--platform", "savedmodel"], "--platform", "savedmodel"),
        (["serve", "x", "--backend", "torch"], "--backend", "torch"),  # PyTorch does not serve
        (["validate", "x", "--backend", "torch"], "--backend", "torch"),  # the reference IS torch
        (["bench", "x", "--backend", "tpu"], "--backend", "tpu"),
        (["evaluate", "x", "--data", "d", "--backend", "ort-cpu", "--backend", "tpu"], "--backend", "tpu"),
        (["predict", "x", "p.png", "-o", "o", "--backend", "tpu"], "--backend", "tpu"),
    ],
)
def test_a_wrong_choice_is_typers_usage_error_on_one_line(tmp_path, monkeypatch, args, option, bad):
    monkeypatch.chdir(tmp_path)  # nothing may be written
    result = cli(*args)
    assert result.exit_code == 2, result.output
    line = one_error_line(result)
    assert f"Invalid value for '{option}'" in line and f"'{bad}'" in line, line
    assert f"{args[0]} --help" in line  # where the choices are
    assert result.stdout == "" and not any(tmp_path.iterdir())


def test_a_wrong_choice_names_the_choices():
    line = one_error_line(cli("export", "--head", "mask"))
    assert all(f"'{v}'" in line for v in choices.HEADS), line
    line = one_error_line(cli("bench", "x", "--backend", "tpu"))
    assert all(v in line for v in choices.BACKENDS) and TRITON_FORM in line, line


def test_other_usage_errors_are_one_line_too():
    for args, needle in (
        (["export", "--no-such-flag"], "No such option"),
        (["bench"], "Missing argument"),
        (["exprot"], "No such command"),
    ):
        result = cli(*args)
        assert result.exit_code == 2 and needle in one_error_line(result), result.output


def test_the_backend_check_passes_names_and_served_models():
    check = backend_check(choices.NON_TORCH_BACKENDS)
    assert check("ort-cpu") == "ort-cpu" and check("triton://127.0.0.1:8001/m") == "triton://127.0.0.1:8001/m"
    assert check(["trt", "triton://h"]) == ["trt", "triton://h"] and check(None) is None
    with pytest.raises(typer.BadParameter, match="'torch' is unknown"):
        check("torch")


def test_a_choice_is_its_string():
    """Records and manifests hold the same strings as before the enums."""
    p = choices.Precision.FP16
    assert p == "fp16" and str(p) == "fp16" and f"{p}" == "fp16" and repr(p) == "'fp16'" and hash(p) == hash("fp16")
    assert json.dumps({"precision": p, p: 1}) == '{"precision": "fp16", "fp16": 1}'
    assert {"fp16": "x"}[p] == "x" and p in choices.PRECISIONS


def test_one_owner_of_each_vocabulary():
    from msla_deploy import runtime
    from msla_deploy.artifact import names
    from msla_deploy.doctor import readiness
    from msla_deploy.inspect import TARGETS, precision, trt_support
    from msla_deploy.serve import repository, server
    from msla_deploy.trt import options

    assert runtime.BACKENDS is choices.BACKENDS and server.SERVE_BACKENDS is choices.NON_TORCH_BACKENDS
    assert [name for name, _ in readiness.ORT_BACKENDS] == list(choices.ORT_BACKENDS)
    assert (options.PRECISIONS, options.TYPINGS, options.HARDWARE_COMPAT) == (
        choices.PRECISIONS,
        choices.TYPINGS,
        choices.HARDWARE_COMPAT,
    )
    assert (
        precision.PRECISIONS is choices.INSPECT_PRECISIONS
        and TARGETS is trt_support.EXAMPLES is choices.TRT_TARGET_EXAMPLES
    )
    assert (
        names.TRITON_PLATFORMS is choices.TRITON_PLATFORMS and repository.PLATFORM_CHOICES == choices.PLATFORM_CHOICES
    )


# --- flags --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, command", click_commands(), ids=lambda v: v if isinstance(v, str) else "")
def test_flags_show_as_flags(name, command):
    ctx = command.context_class(command, info_name=name or "msla-deploy")
    flags = [p for p in command.get_params(ctx) if getattr(p, "is_flag", False)]
    assert flags and all(p.metavar == "" for p in flags), [(p.name, p.metavar) for p in flags]
    text = help_text(*([name] if name else []))
    assert "<bool>" not in text and "BOOLEAN" not in text, text


def test_completion_is_offered():
    text = help_text()
    assert "--install-completion" in text and "--show-completion" in text
    assert backend_completion(choices.BACKENDS)("ort-c") == ["ort-cpu", "ort-cuda"]
    assert backend_completion(choices.BACKENDS)("tri") == ["triton://"]
    assert _complete_target("10.") == ["10.3", "10.13"]


# --- the next command ---------------------------------------------------------------------------


def test_next_commands_are_pasteable():
    assert command_line("msla-deploy", "build", Path("my exports/b1")) == "msla-deploy build 'my exports/b1'"
    export = next_after_export(Path("artifacts/b1"))
    assert [c for c, _ in export] == ["msla-deploy build artifacts/b1", "msla-deploy bench artifacts/b1"]
    build = next_after_build(Path("artifacts/b1/model_fp16_trt10.13.engine"))
    assert build[0][0] == "msla-deploy validate artifacts/b1/model_fp16_trt10.13.engine --backend trt"
    assert [c for c, _ in next_after_validate(Path("b1"), "auto", "ort-cpu")] == [
        "msla-deploy build b1",
        "msla-deploy bench b1 --backend ort-cpu",
    ]
    assert [c for c, _ in next_after_validate(Path("b1"), "trt", "trt")] == [
        "msla-deploy bench b1 --backend trt",
        "msla-deploy package b1 --triton triton-repo",
    ]
    assert [c for c, _ in next_after_validate(Path("b1"), "triton://h:1/b1", "triton")] == [
        "msla-deploy bench b1 --backend triton://h:1/b1"
    ]


def test_next_after_package_runs_the_repository(tmp_path):
    plan = next_after_package(Path("b1"), tmp_path / "repo", "b1", "tensorrt_plan")
    docker, validate = plan[0][0], plan[-1][0]
    assert (
        docker.startswith("docker run")
        and f"{tmp_path / 'repo'}:/models" in docker
        and "tritonserver --model-repository=/models" in docker
    )
    assert validate == "msla-deploy validate b1 --backend triton://127.0.0.1:8001/b1" and len(plan) == 2
    onnx_plan = next_after_package(Path("b1"), tmp_path / "repo", "b1", "onnxruntime_onnx")
    assert [c for c, _ in onnx_plan][1] == "msla-deploy serve b1 --name b1"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny export, run as a user would (no --json): what it printed, and where it is."""
    pytest.importorskip("torch")
    root = tmp_path_factory.mktemp("cli")
    (root / "tiny_model.py").write_text(TINY)
    out = root / "tiny"
    result = cli(
        "export", "-m", f"{root / 'tiny_model.py'}:build", "--res", "64x64", "--exporter", "torchscript", "--out", out
    )
    assert result.exit_code == 0, result.output
    return result, out


def _next_block(stdout: str) -> list:
    lines = stdout.splitlines()
    assert "Next:" in lines, stdout
    return [line.split("#")[0].strip() for line in lines[lines.index("Next:") + 1 :]]


def test_export_validate_and_package_print_the_next_command(exported, tmp_path):
    result, out = exported
    assert _next_block(result.stdout)[0] == command_line("msla-deploy", "build", out)

    validated = cli("validate", out, "--backend", "ort-cpu", "--report-dir", tmp_path / "v")
    assert validated.exit_code == 0, validated.output
    assert _next_block(validated.stdout) == [
        command_line("msla-deploy", "build", out),
        command_line("msla-deploy", "bench", out, "--backend", "ort-cpu"),
    ]

    packaged = cli("package", out, "--triton", tmp_path / "repo")
    assert packaged.exit_code == 0, packaged.output
    steps = _next_block(packaged.stdout)
    assert steps[0].startswith("docker run") and steps[-1].endswith(f"--backend triton://127.0.0.1:8001/{out.name}")


def test_json_output_carries_no_next_command(exported, tmp_path):
    _, out = exported
    for args in (
        ["validate", out, "--backend", "ort-cpu", "--report-dir", tmp_path / "v", "--json"],
        ["package", out, "--triton", tmp_path / "repo", "--json"],
    ):
        result = cli(*args)
        assert result.exit_code == 0, result.output
        json.loads(result.stdout)  # the document and nothing else
        assert "Next" not in result.stdout and "msla-deploy build" not in result.output


# --- start-up -----------------------------------------------------------------------------------

# what start-up must not import: the runtimes, the array and image libraries, Typer's rich help
HEAVY = (
    "numpy",
    "onnx",
    "onnxruntime",
    "torch",
    "polygraphy",
    "tensorrt",
    "PIL",
    "markdown_it",
    "pygments",
    "rich.progress",
    "rich.syntax",
)


def imported_by(*args: str) -> set:
    """Top-level modules (and rich's parts) a fresh interpreter imported to run the CLI with args."""
    script = textwrap.dedent(f"""
        import json, sys
        from msla_deploy.cli import app
        try:
            app({list(args)!r})
        except SystemExit:
            pass
        print(json.dumps(sorted(sys.modules)), file=sys.stderr)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    return set(json.loads(proc.stderr.strip().splitlines()[-1]))


@pytest.mark.parametrize("args", [("--help",), ("doctor", "--help"), ("export", "--help"), ("models", "--json")])
def test_start_up_imports_nothing_heavy(args):
    modules = imported_by(*args)
    heavy = sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))
    assert not heavy, heavy


def test_doctor_imports_no_stage_it_does_not_ask_about():
    modules = imported_by("doctor", "--json")
    stages = (
        "msla_deploy.inspect.hazards",
        "msla_deploy.parity.metrics",
        "msla_deploy.bench.stats",
        "msla_deploy.export.pipeline",
        "msla_deploy.evaluate.run",
        "msla_deploy.trt.build",
        "msla_deploy.zoo.model",
    )
    assert not [m for m in stages if m in modules]
    assert "torch" not in modules
