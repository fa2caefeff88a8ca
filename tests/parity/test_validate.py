"""`msla-deploy validate` and `msla-deploy reference`: verdicts, reports, localization, errors.

One small export (b0 at 64x128, random weights) is shared by the module; tests that change it
work on copies. Reports go to per-test folders so tests do not read each other's files.
"""

from __future__ import annotations

import json
import shutil
import struct
import textwrap
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from typer.testing import CliRunner

from msla_deploy.artifact.files import sha256_file
from msla_deploy.artifact.reference import read_reference
from msla_deploy.cli import app
from msla_deploy.errors import BadInput
from msla_deploy.parity.budgets import FP16, FP32
from msla_deploy.parity.config import parse_setting
from msla_deploy.parity.metrics import class_iou, compare_outputs
from msla_deploy.parity.pictures import disagreement_maps, error_heatmaps
from tests.fixtures import export_random_b0, one_error_line, run_without_torch

B0 = "efficientvit-seg-b0-cityscapes"
PERTURBED_BLOCK = "backbone.stages.2.op_list.1"
runner = CliRunner()


def cli(*args: str):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    return export_random_b0(tmp_path_factory.mktemp("validate"))


def copy_of(artifact: Path, where: Path) -> Path:
    target = where / artifact.name
    shutil.copytree(artifact, target, ignore=shutil.ignore_patterns("validation*"))
    return target


def scale_initializer(path: Path, contains: str, factor: float) -> str:
    model = onnx.load(path)
    for init in model.graph.initializer:
        if contains in init.name and init.name.endswith("conv.weight"):
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * np.float32(factor), init.name))
            onnx.save(model, path)
            return init.name
    raise AssertionError(f"no conv weight with {contains!r} in {path}")


@pytest.fixture(scope="module")
def perturbed(exported, tmp_path_factory) -> Path:
    """The export with one conv weight inside backbone.stages.2.op_list.1 scaled by 1.5."""
    target = copy_of(exported, tmp_path_factory.mktemp("perturbed"))
    scale_initializer(target / "model.onnx", f"{PERTURBED_BLOCK}.local_module", 1.5)
    # a different model on purpose: its hash re-recorded, or the strict tamper check stops validate first
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["artifacts"]["model.onnx"]["sha256"] = sha256_file(target / "model.onnx")
    (target / "manifest.json").write_text(json.dumps(manifest))
    return target


def validate_json(artifact: Path, report_dir: Path, *args):
    result = cli("validate", artifact, "--report-dir", report_dir, "--json", *args)
    report = json.loads(result.stdout) if result.stdout.strip().startswith("{") else None
    return result, report


# --- verdicts ---------------------------------------------------------------------------------


def test_a_faithful_artifact_passes(exported, tmp_path):
    result, report = validate_json(exported, tmp_path / "r")
    assert result.exit_code == 0, result.output
    assert report["passed"] is True
    assert report["backend"]["requested"] == "auto" and report["backend"]["ran_on"] == "CPUExecutionProvider"
    assert report["backend"]["fell_back"] is False
    assert report["artifact"]["precision"] == "fp32" and report["artifact"]["precision_source"].startswith(
        "ONNX metadata"
    )
    assert set(report["budget"]["sources"].values()) == {"default (fp32)"}
    (logits,) = report["outputs"]
    assert logits["argmax_agreement"] == 1.0 and logits["miou"] == 1.0 and logits["nan_count"] == 0
    assert logits["measured_by"]["max_abs"].startswith("polygraphy") and logits["measured_by"]["cosine"].startswith(
        "polygraphy"
    )
    assert [c["name"] for c in logits["checks"]] == ["finite", "max_abs", "cosine", "argmax_agreement"]
    assert all(c["passed"] for c in logits["checks"])
    assert {c["name"] for c in logits["class_iou"]} >= {"road", "sky"}  # Cityscapes names
    for name in ("report.json", "report.md", "junit.xml", "disagreement.png", "error_heatmap.png"):
        assert (tmp_path / "r" / name).is_file(), name
    assert "## msla-deploy validate: PASS" in (tmp_path / "r" / "report.md").read_text()


def test_polygraphy_numbers_agree_with_numpy(exported, tmp_path):
    """The statistics taken from Polygraphy are the ones numpy computes on the same arrays."""
    _, report = validate_json(exported, tmp_path / "r")
    bundle = read_reference(exported / "reference")
    import onnxruntime as ort

    actual = ort.InferenceSession(str(exported / "model.onnx"), providers=["CPUExecutionProvider"]).run(
        None, dict(bundle.inputs)
    )[0]
    numpy_side = compare_outputs("logits", bundle.outputs["logits"], actual, FP32)
    polygraphy_side = report["outputs"][0]
    for key in ("max_abs", "mean_abs", "p99_abs"):
        assert polygraphy_side[key] == pytest.approx(getattr(numpy_side, key), rel=1e-3, abs=1e-12), key
    assert polygraphy_side["cosine"] == pytest.approx(numpy_side.cosine, abs=1e-6)


def test_one_perturbed_weight_fails_and_localize_names_its_block(perturbed, tmp_path):
    result, report = validate_json(perturbed, tmp_path / "r", "--localize")
    assert result.exit_code == 1, result.output
    assert report["passed"] is False
    assert "max abs error" in one_error_line(result)
    loc = report["localization"]
    assert loc["first_offender"] == PERTURBED_BLOCK
    order = [p["module"] for p in loc["probes"]]
    first = order.index(PERTURBED_BLOCK)
    assert first > 0 and not any(p["offender"] for p in loc["probes"][:first])  # everything before it is clean
    assert f"`{PERTURBED_BLOCK}`" in (tmp_path / "r" / "report.md").read_text()
    assert loc["ranked"][0] in order[first:]
    assert loc["notes"] == []  # no TensorRT note on ONNX Runtime


def test_localize_on_request_for_a_passing_artifact(exported, tmp_path):
    result, report = validate_json(exported, tmp_path / "r", "--localize")
    assert result.exit_code == 0, result.output
    assert report["localization"]["first_offender"] is None
    assert len(report["localization"]["probes"]) >= 20


# --- bad input: one line, exit 2, nothing written -------------------------------------------


def test_truncated_onnx_is_bad_input(exported, tmp_path):
    art = copy_of(exported, tmp_path)
    data = (art / "model.onnx").read_bytes()
    (art / "model.onnx").write_bytes(data[: len(data) // 3])
    result = cli("validate", art)
    assert result.exit_code == 2, result.output
    assert "not a readable ONNX model" in one_error_line(result)
    assert not (art / "validation").exists()


def test_reference_of_the_wrong_shape_is_bad_input(exported, tmp_path):
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    np.savez(wrong / "inputs.npz", input=np.zeros((1, 3, 32, 64), np.float32))
    np.savez(wrong / "outputs.npz", logits=np.zeros((1, 19, 4, 8), np.float32))
    (wrong / "reference.json").write_text("{}")
    result = cli("validate", exported / "model.onnx", "--reference", wrong, "--report-dir", tmp_path / "r")
    assert result.exit_code == 2, result.output
    line = one_error_line(result)
    assert "[1, 3, 32, 64]" in line and "[1, 3, 64, 128]" in line
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--backend", "magic"], "--backend"),
        (["--min-argmax-agreement", "99.5"], "99.5%"),
        (["--atol", "tiny"], "--atol"),
        (["--min-cosine", "2"], "cosine"),
    ],
)
def test_bad_flags_are_one_line_exit_2(exported, tmp_path, args, needle):
    result = cli("validate", exported, "--report-dir", tmp_path / "r", *args)
    assert result.exit_code == 2, result.output
    assert needle in one_error_line(result)
    assert not (tmp_path / "r").exists()


def test_artifact_modified_after_export_is_a_warning_not_a_verdict(exported, tmp_path):
    result, report = validate_json(exported, tmp_path / "clean")
    assert report["artifact"]["modified_after_export"] == [] and report["warnings"] == []
    art = copy_of(exported, tmp_path)
    model = onnx.load(art / "model.onnx")
    model.doc_string = "edited by hand"  # other bytes, same numbers
    onnx.save(model, art / "model.onnx")
    # strict without it: tests/cli/test_abuse.py
    result, report = validate_json(art, tmp_path / "r", "--allow-modified")
    assert result.exit_code == 0, result.output
    assert "artifact modified after export: model.onnx" in result.stderr
    assert report["artifact"]["modified_after_export"] == ["model.onnx"]
    assert report["warnings"] and "artifact modified after export" in report["warnings"][0]
    assert "artifact modified after export" in (tmp_path / "r" / "report.md").read_text()


def test_missing_artifact_and_missing_reference(tmp_path, exported):
    assert cli("validate", tmp_path / "nothing").exit_code == 2
    lone = tmp_path / "lone.onnx"
    shutil.copy(exported / "model.onnx", lone)
    result = cli("validate", lone)
    assert result.exit_code == 2 and "--reference" in one_error_line(result)


# --- torch-free --------------------------------------------------------------------------------


def test_validate_runs_without_torch(exported, tmp_path):
    proc = run_without_torch("validate", exported, "--report-dir", tmp_path / "r", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["passed"] is True
    proc = run_without_torch("validate", exported, "--report-dir", tmp_path / "r2", "--localize", cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr
    assert "needs PyTorch" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "r2").exists()


# --- budgets: flags > pyproject.toml > defaults ------------------------------------------------


def test_pyproject_budget_changes_the_verdict(exported, perturbed, tmp_path, monkeypatch):
    project = tmp_path / "project"
    (project / "sub").mkdir(parents=True)
    (project / "pyproject.toml").write_text(
        textwrap.dedent(
            """
        [project]
        name = "someone-elses"

        [tool.msla-deploy.validate]
        min-cosine = 0.5

        [tool.msla-deploy.validate.fp32]
        atol = 0.0
        rtol = 0.0
        """
        )
    )
    monkeypatch.chdir(project / "sub")  # found from a subdirectory upward

    result, report = validate_json(exported, tmp_path / "a")  # zero tolerance: even fp32 noise fails
    assert result.exit_code == 1, result.output
    sources = report["budget"]["sources"]
    assert (
        "[tool.msla-deploy.validate.fp32]" in sources["max_abs_rel"]
        and "[tool.msla-deploy.validate]" in sources["min_cosine"]
    )
    assert sources["min_argmax_agreement"] == "default (fp32)"
    assert report["budget"]["pyproject"] == str(project / "pyproject.toml")

    result, report = validate_json(exported, tmp_path / "b", "--rtol", "1e-4")  # a flag beats the file
    assert result.exit_code == 0, result.output
    assert report["budget"]["sources"]["max_abs_rel"] == "flag --rtol"
    assert report["budget"]["values"]["max_abs_floor"] == 0.0

    (project / "pyproject.toml").write_text("[tool.msla-deploy.validate]\nrtol = 0.1\nmin-cosine = 0.999\n")
    result, _ = validate_json(perturbed, tmp_path / "c")  # a looser budget lets the perturbed one pass
    assert result.exit_code == 0, result.output

    (project / "pyproject.toml").write_text("[tool.msla-deploy.validate]\nrtoll = 0.1\n")
    result, _ = validate_json(exported, tmp_path / "d")
    assert result.exit_code == 2 and "rtoll" in one_error_line(result)


def test_settings_parse_fractions_without_guessing():
    assert parse_setting("min-argmax-agreement", "99.5%", "x") == pytest.approx(0.995)
    assert parse_setting("min-argmax-agreement", 0.995, "x") == pytest.approx(0.995)
    assert parse_setting("rtol", "1e-4", "x") == pytest.approx(1e-4)
    for key, value in (("min-argmax-agreement", "99.5"), ("atol", "1%"), ("rtol", "-1"), ("max-miou-drop", "nan")):
        with pytest.raises(BadInput):
            parse_setting(key, value, "x")
    with pytest.raises(BadInput, match=r"0\.995 or 99\.5%"):  # a percentage without its sign: say how to write it
        parse_setting("min-argmax-agreement", "99.5", "x")
    for value in ("150%", 150, "-5%", -0.5):  # out of range either way: no rescaled number is offered
        with pytest.raises(BadInput) as caught:
            parse_setting("min-argmax-agreement", value, "x")
        assert "within 0..1, or 0..100%" in caught.value.fix and "1.5" not in caught.value.one_line()


def test_pyproject_fraction_above_100_says_the_range(exported, tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text("[tool.msla-deploy.validate]\nmin-argmax-agreement = 150\n")
    monkeypatch.chdir(tmp_path)
    result = cli("validate", exported, "--report-dir", tmp_path / "r")
    assert result.exit_code == 2 and "within 0..1, or 0..100%" in one_error_line(result)


def test_fp16_default_budget_is_what_the_issue_says():
    assert FP16.max_abs_rel is None and not FP16.allow_nonfinite
    assert FP16.min_cosine == 0.999 and FP16.min_argmax_agreement == 0.995


def test_precision_comes_from_onnx_metadata(exported, tmp_path):
    """A bare ONNX stamped fp16 is judged by the fp16 budget (no max-abs criterion)."""
    model = onnx.load(exported / "model.onnx")
    for prop in model.metadata_props:
        if prop.key == "msla_deploy.precision":
            prop.value = "fp16"
    onnx.save(model, tmp_path / "stamped.onnx")
    result, report = validate_json(tmp_path / "stamped.onnx", tmp_path / "r", "--reference", exported / "reference")
    assert result.exit_code == 0, result.output
    assert report["budget"]["precision"] == "fp16"
    assert "max_abs" not in [c["name"] for c in report["outputs"][0]["checks"]]


# --- reports -----------------------------------------------------------------------------------


def test_junit_has_one_case_per_output_and_criterion(perturbed, tmp_path):
    extra = tmp_path / "ci" / "validate-junit.xml"
    result, _ = validate_json(perturbed, tmp_path / "r", "--junit", extra, "--max-miou-drop", "1%")
    assert result.exit_code == 1
    root = ET.parse(tmp_path / "r" / "junit.xml").getroot()
    cases = {c.get("name"): c for c in root.iter("testcase")}
    assert set(cases) == {
        "logits: NaN / Inf",
        "logits: max abs error",
        "logits: cosine similarity",
        "logits: argmax agreement",
        "logits: mIoU drop (prediction vs prediction)",
    }
    assert cases["logits: max abs error"].find("failure") is not None
    assert cases["logits: NaN / Inf"].find("failure") is None
    suite = root.find("testsuite")
    assert int(suite.get("tests")) == 5 and int(suite.get("failures")) == len(
        [c for c in cases.values() if c.find("failure") is not None]
    )
    assert extra.read_bytes() == (tmp_path / "r" / "junit.xml").read_bytes()


def png_size(path: Path):
    """Width and height of an 8-bit RGB PNG, checking its signature, chunk CRCs and pixel data."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        assert struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])[0] == zlib.crc32(kind + body)
        chunks.setdefault(kind, b"")
        chunks[kind] += body
        pos += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, colour) == (8, 2) and b"IEND" in chunks
    assert len(zlib.decompress(chunks[b"IDAT"])) == height * (1 + 3 * width)
    return width, height


def test_pictures_are_valid_pngs_at_the_input_resolution(perturbed, tmp_path):
    """The pictures are Pillow figures now (titles, legends, the input beside each map), so their
    size is no longer the map's: the map at the input resolution is checked on the maps, and the
    file holds the input and the map side by side, each at least that size."""
    _, report = validate_json(perturbed, tmp_path / "r")
    for name in ("disagreement.png", "error_heatmap.png"):
        width, height = png_size(tmp_path / "r" / name)
        assert width >= 2 * 128 and height >= 64
    entry = report["pictures"]["logits"]
    assert entry["samples_drawn"] == [0] and entry["samples"] == 1
    reference = read_reference(perturbed / "reference").outputs["logits"]
    assert disagreement_maps(reference, reference, (64, 128)).shape == (1, 64, 128, 3)
    assert error_heatmaps(reference, reference, 1.0, (64, 128)).shape == (1, 64, 128, 3)


def test_default_report_dir_is_next_to_the_artifact(exported, tmp_path):
    art = copy_of(exported, tmp_path)
    assert cli("validate", art).exit_code == 0
    assert (art / "validation" / "report.json").is_file()
    assert cli("validate", art / "model.onnx").exit_code == 0
    assert (art / "validation-model.onnx" / "junit.xml").is_file()


# --- backends ----------------------------------------------------------------------------------


def test_ort_cuda_without_cuda_is_a_missing_runtime(exported, tmp_path):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has the CUDA provider")
    result = cli("validate", exported, "--backend", "ort-cuda", "--report-dir", tmp_path / "r")
    assert result.exit_code == 3, result.output
    assert "CUDAExecutionProvider" in one_error_line(result)
    assert not (tmp_path / "r").exists()


def test_silent_provider_fallback_is_detected(exported, tmp_path, monkeypatch):
    """onnxruntime-gpu on a machine without a GPU lists CUDA, then runs on CPU: emulated by
    listing CUDA in this CPU build, which ONNX Runtime then drops at session creation."""
    import onnxruntime as ort

    real = ort.get_available_providers
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", *real()])
    result = cli("validate", exported, "--backend", "ort-cuda", "--report-dir", tmp_path / "named")
    assert result.exit_code == 3, result.output
    assert "fell back from CUDAExecutionProvider to CPUExecutionProvider" in one_error_line(result)
    assert not (tmp_path / "named").exists()

    result, report = validate_json(exported, tmp_path / "auto")  # auto: allowed, and said
    assert result.exit_code == 0, result.output
    assert report["backend"]["used"] == "ort-cuda" and report["backend"]["fell_back"] is True
    assert "fell back" in report["backend"]["note"]


def test_tensorrt_without_tensorrt_is_exit_3(exported, tmp_path):
    try:
        import tensorrt  # noqa: F401

        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    result = cli("validate", exported, "--backend", "trt", "--report-dir", tmp_path / "r")
    assert result.exit_code == 3 and "TensorRT" in one_error_line(result) and "not installed" in result.stderr
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"not really an engine")
    result = cli("validate", engine, "--reference", exported / "reference")
    line = one_error_line(result)
    assert result.exit_code == 3 and "TensorRT" in line
    assert "--backend ort-cpu" not in line and "model.onnx" in line  # ort-cpu is refused for an .engine (below)
    result = cli("validate", engine, "--reference", exported / "reference", "--backend", "ort-cpu")
    assert result.exit_code == 2  # an engine on ONNX Runtime is a usage error, whatever is installed


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_tensorrt_backend(exported, tmp_path):
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (it cannot be on this project's CPU machines)")
    result, report = validate_json(exported, tmp_path / "r", "--backend", "trt")
    assert result.exit_code == 0, result.output
    assert report["backend"]["runtime"] == "tensorrt"


# --- reference pictures --------------------------------------------------------------------------


def test_reference_adds_pictures_and_validate_uses_them(exported, tmp_path):
    art = copy_of(exported, tmp_path)
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    rng = np.random.default_rng(1)
    np.save(pictures / "a.npy", rng.integers(0, 256, size=(40, 70, 3), dtype=np.uint8))  # resized to 64x128
    np.save(pictures / "b.npy", rng.random((64, 128, 3), dtype=np.float32))
    result = cli("reference", art, "--inputs", pictures, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["samples"] == 3

    bundle = read_reference(art / "reference")
    assert bundle.inputs["input"].shape == (3, 3, 64, 128) and bundle.outputs["logits"].shape == (3, 19, 8, 16)
    assert [i["file"] for i in bundle.info["images"]] == ["a.npy", "b.npy"] and bundle.info["synthetic_samples"] == 1
    assert np.array_equal(bundle.inputs["input"][:1], read_reference(exported / "reference").inputs["input"])
    manifest = json.loads((art / "manifest.json").read_text())
    for rel, entry in manifest["artifacts"].items():
        assert sha256_file(art / rel) == entry["sha256"], rel

    assert "2 picture(s)" in bundle.info["inputs"] and "a.npy, b.npy" in bundle.info["inputs"]
    assert "synthetic" in bundle.info["inputs"]

    result = cli("reference", art, "--inputs", pictures)  # again: replaces, does not grow
    assert result.exit_code == 0 and "2 earlier pictures" in result.stdout
    assert read_reference(art / "reference").inputs["input"].shape[0] == 3
    assert read_reference(art / "reference").info["inputs"] == bundle.info["inputs"]

    result, report = validate_json(art, tmp_path / "r")
    assert result.exit_code == 0, result.output
    assert report["reference"]["samples"] == 3 and "2 real image(s)" in report["reference"]["source"]
    width, height = png_size(tmp_path / "r" / "disagreement.png")  # one row per sample, the input beside its map
    assert report["pictures"]["logits"]["samples_drawn"] == [0, 1, 2] and width >= 2 * 128 and height >= 3 * 64


def test_reference_refuses_what_it_cannot_read(exported, tmp_path):
    art = copy_of(exported, tmp_path)
    before = (art / "reference" / "inputs.npz").read_bytes()
    bad = tmp_path / "bad"
    bad.mkdir()
    np.save(bad / "x.npy", np.zeros((5,), np.uint8))
    result = cli("reference", art, "--inputs", bad)
    assert result.exit_code == 2 and "not a picture" in one_error_line(result)
    assert cli("reference", art, "--inputs", tmp_path / "nowhere").exit_code == 2
    try:
        import PIL  # noqa: F401
    except ImportError:
        png = tmp_path / "png"
        png.mkdir()
        (png / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n")
        result = cli("reference", art, "--inputs", png)
        assert result.exit_code == 3 and "Pillow" in one_error_line(result)
    assert (art / "reference" / "inputs.npz").read_bytes() == before


# --- metrics ---------------------------------------------------------------------------------


def test_class_iou_and_nan_labels():
    ref = np.array([[0, 0, 1, 1]])
    cand = np.array([[0, 1, 1, 1]])
    rows = class_iou(ref, cand, 3)
    assert rows[0]["iou"] == pytest.approx(0.5) and rows[1]["iou"] == pytest.approx(2 / 3) and rows[2]["iou"] is None
    logits = np.zeros((1, 3, 1, 4), np.float32)
    logits[0, 0, 0, :2] = logits[0, 1, 0, 2:] = 1.0
    broken = logits.copy()
    broken[0, :, 0, 0] = np.nan  # a NaN pixel has no label: it must count as a disagreement
    p = compare_outputs("logits", logits, broken, FP32)
    assert p.argmax_agreement == pytest.approx(0.75) and p.nan_count == 3 and not p.passed
