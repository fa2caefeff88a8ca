"""Issue 25: every malformed file is exit 2 with one line, judged by what it declares.

Each test names the class of input it guards; each failed (internal error, exit 1, or a wrong
acceptance) before the fix it came with. One b0 export at 64x128 is shared by the module and
copied by the tests that change it.
"""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from msla_deploy.artifact.npfiles import load_npy, load_npz
from msla_deploy.cli import app
from msla_deploy.errors import BadInput
from tests.fixtures import REPO, export_random_b0, one_error_line
from tests.fixtures import TINY_MODEL_FILE as TINY

runner = CliRunner()


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def b0(tmp_path_factory) -> Path:
    return export_random_b0(tmp_path_factory.mktemp("hardening-b0"))


def copy_of(artifact: Path, where: Path) -> Path:
    shutil.copytree(artifact, where)
    return where


def forged_npy(shape, descr: str = "<f4", payload: bytes = b"") -> bytes:
    """A .npy whose header declares `shape` but which stores only `payload`."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue() + payload


def forged_npz(path: Path, **members: bytes) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(f"{name}.npy", data)
    return path


# --- numpy files: refused from their headers ---------------------------------------------------


def test_an_npz_declaring_a_huge_array_is_refused_before_allocation(tmp_path):
    path = forged_npz(tmp_path / "bomb.npz", input=forged_npy((100000, 100000, 6)))
    assert path.stat().st_size < 400  # a few hundred bytes that declare 223 GiB
    with pytest.raises(BadInput, match=r"declares \[100000, 100000, 6\] float32 .* truncated or forged"):
        load_npz(path, "fix")


def test_an_honest_array_larger_than_memory_is_refused_from_its_header(tmp_path, monkeypatch):
    from msla_deploy import limits

    np.save(tmp_path / "a.npy", np.zeros((64, 64), np.float32))
    monkeypatch.setattr(limits, "available_memory", lambda: 1000)  # less than the 16 KiB it declares
    with pytest.raises(BadInput, match="needs about"):
        load_npy(tmp_path / "a.npy", "fix")


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_complex_arrays_are_refused_not_truncated_to_their_real_part(tmp_path, dtype):
    np.save(tmp_path / "c.npy", np.zeros((2, 2), dtype))
    with pytest.raises(BadInput, match="complex values"):
        load_npy(tmp_path / "c.npy", "fix")


def test_the_reference_bundle_refuses_forged_truncated_empty_and_complex_arrays(b0, tmp_path):
    cases = {
        "forged": lambda p: forged_npz(p, input=forged_npy((100000, 100000, 6))),
        "truncated": lambda p: p.write_bytes((b0 / "reference" / "inputs.npz").read_bytes()[:300]),
        "zero samples": lambda p: np.savez(p, input=np.zeros((0, 3, 64, 128), np.float32)),
        "no arrays": lambda p: np.savez(p),
        "complex": lambda p: np.savez(p, input=np.zeros((1, 3, 64, 128), np.complex64)),
    }
    expected = {
        "forged": "truncated or forged",
        "truncated": "not a readable .npz",
        "zero samples": "holds no samples",
        "no arrays": "holds no arrays",
        "complex": "complex values",
    }
    for case, write in cases.items():
        a = copy_of(b0, tmp_path / case.replace(" ", "-"))
        write(a / "reference" / "inputs.npz")
        result = cli("validate", a, "--allow-modified")
        assert result.exit_code == 2, (case, result.output)
        assert expected[case] in one_error_line(result), case


def test_an_npy_picture_is_judged_by_every_dimension_it_declares(tmp_path, monkeypatch):
    from msla_deploy import limits
    from msla_deploy.runtime.picture_files import load_rgb

    path = tmp_path / "wide.npy"
    path.write_bytes(forged_npy((100, 100, 10**9), "|u1"))  # 100x100 "pixels" of a billion channels
    with pytest.raises(BadInput, match="truncated or forged"):
        load_rgb(path)
    np.save(path, np.zeros((4, 4, 7), np.uint8))  # an honest file of a shape no picture has
    with pytest.raises(BadInput, match="is not a picture"):
        load_rgb(path)
    np.save(path, np.zeros((300, 300, 3), np.uint8))
    monkeypatch.setattr(limits, "MAX_PICTURE_PIXELS", 50000)
    with pytest.raises(BadInput, match="megapixels"):
        load_rgb(path)


# --- JSON that is data, not a crash ------------------------------------------------------------


def test_deeply_nested_json_in_a_manifest_or_reference_is_exit_2(b0, tmp_path):
    for target in ("manifest.json", "reference/reference.json"):
        a = copy_of(b0, tmp_path / target.replace("/", "-"))
        (a / target).write_text("[" * 100000 + "]" * 100000)
        result = cli("validate", a, "--allow-modified")
        assert result.exit_code == 2, (target, result.output)
        assert "nested too deeply" in one_error_line(result)


@pytest.mark.parametrize(
    "key, value, problem",
    [
        ("batch", 0, "--batch 0"),
        ("resolution", [-5, 128], "-5x128"),
        ("resolution", [100000000, 100000000], "megapixels"),
        ("head", "foo", "--head 'foo'"),
        ("opset", 3, "--opset 3"),
    ],
)
def test_manifest_option_values_out_of_range_are_exit_2(b0, tmp_path, key, value, problem):
    a = copy_of(b0, tmp_path / "a")
    manifest = json.loads((a / "manifest.json").read_text())
    manifest["options"][key] = value
    (a / "manifest.json").write_text(json.dumps(manifest))
    result = cli("validate", a, "--allow-modified")
    assert result.exit_code == 2, result.output
    line = one_error_line(result)
    assert "manifest options" in line and problem in line


# --- pictures and labels -----------------------------------------------------------------------


def _folder_dataset(root: Path, label: np.ndarray, mode: str = "L") -> Path:
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    Image.fromarray(np.full((64, 128, 3), 90, np.uint8)).save(root / "images" / "a.png")
    # a 32-bit label cannot be a PNG; Pillow reads by content, so a TIFF under the label's name is one
    Image.fromarray(label, mode).save(root / "labels" / "a.png", format="TIFF" if mode == "I" else "PNG")
    return root


def test_a_negative_id_in_a_32_bit_label_is_exit_2_not_a_wrapped_class(b0, tmp_path):
    label = np.zeros((64, 128), np.int32)
    label[0, 0] = -255  # as uint8 this would be class 1
    data = _folder_dataset(tmp_path / "d", label, "I")
    result = cli("evaluate", b0, "--data", data, "--dataset", "folder", "--backend", "ort-cpu")
    assert result.exit_code == 2, result.output
    assert "label id -255 is negative" in one_error_line(result)


def test_a_label_decompression_bomb_is_refused_even_with_skip_bad(b0, tmp_path, monkeypatch):
    from msla_deploy import limits

    data = _folder_dataset(tmp_path / "d", np.zeros((64, 128), np.uint8))
    Image.fromarray(np.full((64, 128, 3), 90, np.uint8)).save(data / "images" / "b.png")
    Image.fromarray(np.zeros((300, 300), np.uint8)).save(data / "labels" / "b.png")  # 90000 pixels
    monkeypatch.setattr(limits, "MAX_PICTURE_PIXELS", 50000)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20000)  # Pillow's own guard: an error above twice this
    result = cli("evaluate", b0, "--data", data, "--dataset", "folder", "--backend", "ort-cpu", "--skip-bad", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [s["image"] for s in report["skipped"]] == ["b"] or len(report["skipped"]) == 1, report["skipped"]


def test_a_grey_photo_among_the_calibration_pictures_is_calibrated_on(tmp_path):
    from msla_deploy.export.calibration import load_calibration

    folder = tmp_path / "calib"
    folder.mkdir()
    Image.fromarray(np.full((40, 60, 3), 120, np.uint8)).save(folder / "colour.png")
    Image.fromarray(np.full((40, 60), 200, np.uint8)).save(folder / "grey.png")  # a black-and-white photo
    calibration = load_calibration(folder, 64, 128, count=2)
    assert calibration.inputs.shape == (2, 3, 64, 128)
    grey = calibration.inputs[1]
    assert np.allclose(
        grey * np.array([0.229, 0.224, 0.225])[:, None, None] + np.array([0.485, 0.456, 0.406])[:, None, None],
        200 / 255,
        atol=1e-3,
    )


def test_a_calibration_picture_bomb_is_exit_2(tmp_path, monkeypatch):
    from msla_deploy import limits
    from msla_deploy.export.calibration import load_calibration

    folder = tmp_path / "calib"
    folder.mkdir()
    Image.fromarray(np.zeros((300, 300, 3), np.uint8)).save(folder / "big.png")  # 90000 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20000)  # Pillow's own guard: an error above 40000
    with pytest.raises(BadInput, match="decompression bomb"):
        load_calibration(folder, 64, 128, count=1)
    monkeypatch.setattr(limits, "MAX_PICTURE_PIXELS", 50000)  # ours, checked first
    with pytest.raises(BadInput, match="megapixels"):
        load_calibration(folder, 64, 128, count=1)


# --- things that do not do what they say ------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tiny") / "tiny_model.py"
    path.write_text(TINY)
    return path


def test_the_trust_variable_can_name_file_py_factory_specs(monkeypatch):
    from msla_deploy.artifact.trust import TRUST_ENV, trusted_specs

    monkeypatch.setenv(TRUST_ENV, "/models/a.py:build:nets/b.py:make")
    assert trusted_specs() == ["/models/a.py:build", "nets/b.py:make"]
    monkeypatch.setenv(TRUST_ENV, "/models/a.py:build:nets/b.py")
    with pytest.raises(BadInput, match="not a list of FILE.py:FACTORY"):
        trusted_specs()


def test_reference_inputs_puts_back_a_directory_a_killed_swap_left_aside(tiny, tmp_path):
    import os
    import subprocess
    import sys

    out = tmp_path / "out"
    assert cli("export", "-m", f"{tiny}:build", "--res", "64x64", "--out", out).exit_code == 0
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(child.stdout)  # a process that is gone: its leftovers are fair game
    os.replace(out, tmp_path / f".out.old-{pid}")  # the state after the first rename of a swap
    pictures = tmp_path / "pics"
    pictures.mkdir()
    Image.fromarray(np.full((64, 64, 3), 30, np.uint8)).save(pictures / "p.png")
    result = cli("--trust-model-file", f"{tiny}:build", "reference", "--inputs", pictures, out)
    assert result.exit_code == 0, result.output
    assert (out / "manifest.json").is_file()
    assert not list(tmp_path.glob(".out.*"))


@pytest.mark.parametrize("spelling", [".", "sub/.."])
def test_out_dot_keeps_the_lock_and_staging_beside_the_target(tiny, tmp_path, monkeypatch, spelling):
    target = tmp_path / "target"
    (target / "sub").mkdir(parents=True)
    monkeypatch.chdir(target)
    result = cli("export", "-m", f"{tiny}:build", "--res", "64x64", "--out", spelling, "--overwrite")
    assert result.exit_code == 2, result.output  # it holds a folder that is not an export: protected
    assert sorted(p.name for p in target.iterdir()) == ["sub"]  # no lock, no staging inside
    (target / "sub").rmdir()
    result = cli(
        "export", "-m", f"{tiny}:build", "--res", "64x64", "--out", "." if spelling == "." else str(tmp_path / "target")
    )
    assert result.exit_code == 0, result.output
    assert not [p.name for p in target.iterdir() if p.name.startswith(".")]


def test_install_hints_name_what_a_checkout_or_wheel_install_takes():
    """msla-deploy is not on PyPI: no message may send a user to `pip install 'msla-deploy[...]'`."""
    import re

    from msla_deploy.runtime.triton import INSTALL_FIX

    package = REPO / "msla_deploy"
    offenders = [
        f"{p.relative_to(package)}:{n}"
        for p in package.rglob("*.py")
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if re.search(r"install '?msla-deploy\[", line)
    ]
    assert offenders == []
    assert "pip install -e '.[serve]'" in INSTALL_FIX and "numpy" in INSTALL_FIX


@pytest.mark.parametrize(
    "url, problem",
    [
        ("triton://[::1", "IPv6"),
        ("triton://host name:8001", "not a host name"),
        ("triton://127.0.0.1:8001/a b", "not usable by Triton"),
        ("triton://127.0.0.1:8001/m\n", "not usable by Triton"),
        ("triton://-bad:8001", "not a host name"),
    ],
)
def test_a_malformed_triton_url_is_bad_input_not_an_unreachable_server(b0, url, problem):
    result = cli("validate", b0, "--backend", url)
    assert result.exit_code == 2, result.output
    assert problem in one_error_line(result)


def test_a_newline_in_a_triton_model_name_is_refused(b0, tmp_path):
    result = cli("package", b0, "--triton", tmp_path / "repo", "--name", "b0\n")
    assert result.exit_code == 2, result.output
    assert "not usable by Triton" in one_error_line(result)
    assert not (tmp_path / "repo").exists() or not any((tmp_path / "repo").iterdir())


def test_inspect_of_a_directory_checks_the_graph_build_parses_for_that_version(tmp_path):
    """TensorRT 10.3 (JetPack 6) builds an fp16 export's fp32 graph weakly typed with the FP16
    flag; 10.13 and 11 build its mixed-precision model.onnx strongly typed."""
    art = export_random_b0(tmp_path, "f16", precision="fp16")
    for target, graph, typing in (
        ("10.3", "model_fp32.onnx", "weak"),
        ("10.13", "model.onnx", "strong"),
        ("11", "model.onnx", "strong"),
    ):
        result = cli("inspect", art, "--target-trt", target, "--json")
        info = json.loads(result.stdout)["info"]
        assert Path(info["model"]).name == graph, target
        assert info["precision"]["typing"] == typing, target


# --- tampering through a symlink ---------------------------------------------------------------


@pytest.mark.parametrize("what", ["model.onnx", "reference"])
def test_a_symlink_to_a_changed_copy_is_tampering(b0, tmp_path, what):
    a = copy_of(b0, tmp_path / "a")
    elsewhere = tmp_path / "elsewhere"
    if what == "model.onnx":
        import onnx

        model = onnx.load(str(a / what))
        model.producer_version = "changed"
        elsewhere.mkdir()
        onnx.save(model, str(elsewhere / what))
    else:
        shutil.copytree(a / what, elsewhere / what)
        data = dict(np.load(elsewhere / what / "inputs.npz"))
        data["input"] = data["input"] + 0.5
        np.savez(elsewhere / what / "inputs.npz", **data)
    target = a / what
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    target.symlink_to(elsewhere / what, target_is_directory=what == "reference")
    result = cli("validate", a)
    assert result.exit_code == 1, result.output
    assert "modified after export" in one_error_line(result)
    assert cli("validate", a, "--allow-modified").exit_code in (0, 1)  # allowed: judged as it is now


# --- doctor tells the truth, and always exits 0 ------------------------------------------------


def _doctor_json(monkeypatch=None):
    result = cli("doctor", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_doctor_says_serve_needs_pytriton_not_only_tritonclient(monkeypatch):
    from msla_deploy.doctor import probes

    real = probes.importable
    monkeypatch.setattr(
        probes, "importable", lambda module: module == "tritonclient" or (module != "pytriton" and real(module))
    )
    report = _doctor_json()
    serve = report["commands"]["serve"]
    assert serve["ready"] is False and "nvidia-pytriton" in serve["reason"]
    assert "pip install -e '.[serve]'" in serve["fix"]


def test_a_tensorrt_that_exits_on_import_is_reported_and_doctor_exits_0(monkeypatch, tmp_path):
    import sys

    broken = tmp_path / "site" / "tensorrt"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("import sys\nsys.exit(7)\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "tensorrt", raising=False)
    report = _doctor_json()
    trt = report["components"]["tensorrt"]
    assert trt["ok"] is False and "SystemExit" in trt["detail"]
    assert report["backends"]["trt"]["ready"] is False


def test_tensorrt_and_a_gpu_without_libcudart_is_not_a_trt_backend(monkeypatch):
    import sys
    import types

    from msla_deploy.trt import runtime as trt_runtime
    from msla_deploy.trt.runtime import GpuInfo

    module = types.ModuleType("tensorrt")
    module.__version__ = "10.7.0"
    monkeypatch.setitem(sys.modules, "tensorrt", module)
    monkeypatch.setattr(
        trt_runtime,
        "probe_gpu",
        lambda index=0: GpuInfo(name="fake", compute_capability="8.7", driver_cuda_version="12.6"),
    )

    def no_cudart():
        raise trt_runtime.MissingRuntime("libcudart cannot be loaded: faked", "install the CUDA runtime")

    monkeypatch.setattr(trt_runtime, "cuda_runtime_version", no_cudart)
    report = _doctor_json()
    assert report["components"]["cuda-runtime"]["ok"] is False
    assert report["backends"]["trt"]["ready"] is False and "cuda-runtime" in report["backends"]["trt"]["reason"]
    assert "trt" not in (report["commands"]["validate"]["backends"] or [])


def test_a_full_disk_names_the_file_and_says_the_disk_is_full(b0, tmp_path, monkeypatch):
    import errno

    from msla_deploy import atomic

    real_open = open

    def full(path, mode="r", *args, **kwargs):
        if "w" in mode and ".tmp-" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device")  # as a write to a full disk: no file name
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(atomic, "open", full, raising=False)
    result = cli("validate", b0, "--report-dir", tmp_path / "reports")
    assert result.exit_code == 2, result.output
    line = one_error_line(result)
    assert "No space left on device" in line and str(tmp_path / "reports") in line
    assert "free space on that disk" in line and "permissions" not in line


# --- an int8 target out of reach is a verdict, not bad input -----------------------------------

TWO_CONVS = """
import torch
from torch import nn


def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 1))
"""


def test_keeping_every_module_in_fp32_is_never_a_solution():
    from msla_deploy.export.int8_sensitivity import choose_fp32_modules

    measured = {("b", "c"): 0.95, ("c",): 0.97}  # agreement by the modules left in int8

    def measure(int8):
        assert int8, "every module kept in fp32 was measured"
        return measured[tuple(int8)]

    assert choose_fp32_modules(["a", "b", "c"], 0.9, 0.96, measure) == (["a", "b"], 0.97)
    kept, achieved = choose_fp32_modules(["a", "b", "c"], 0.9, 0.999, measure)  # only all-fp32 would reach it
    assert kept == ["a", "b"] and achieved == 0.97  # the best mix with something in int8
    assert choose_fp32_modules(["a"], 0.9, 0.999, measure) == ([], 0.9)


def test_an_unreachable_int8_target_writes_what_was_measured_and_exits_1(tmp_path):
    factory = tmp_path / "two.py"
    factory.write_text(TWO_CONVS)
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    for i in range(4):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(
            pictures / f"{i}.png"
        )
    out = tmp_path / "out"
    result = cli(
        "export",
        "-m",
        f"{factory}:build",
        "--res",
        "64x64",
        "--precision",
        "int8",
        "--calib-images",
        pictures,
        "--sensitivity",
        "--min-argmax-agreement",
        "1",
        "--out",
        out,
    )
    assert result.exit_code == 1, result.output
    line = one_error_line(result)
    assert "--min-argmax-agreement 1 is out of reach" in line and "the best mix found keeps 1 module(s) in fp32" in line
    assert "/tmp" not in line.split("details in")[0]  # no temporary path
    assert (out / "int8_sensitivity.json").is_file() and (out / "int8_sensitivity.png").is_file()
    import onnx

    # the best mix, int8
    assert any(n.op_type == "QuantizeLinear" for n in onnx.load(str(out / "model.onnx")).graph.node)
    sweep = json.loads((out / "manifest.json").read_text())["precision"]["int8"]["sensitivity"]
    assert sweep["met"] is False and sweep["min_argmax_agreement"] == 1 and len(sweep["keep_fp32"]) == 1


def test_calibration_reports_its_batches_as_they_are_fed():
    from msla_deploy.export.int8 import _Reader

    seen = []
    reader = _Reader([np.zeros((1, 3, 4, 4), np.float32)] * 3, progress=lambda done, total: seen.append((done, total)))
    while reader.get_next() is not None:
        pass
    assert seen == [(1, 3), (2, 3), (3, 3)]


def test_the_int8_export_shows_calibration_and_sweep_progress(tmp_path, monkeypatch):
    from msla_deploy.artifact.options import ExportOptions
    from msla_deploy.export.pipeline import run_export
    from msla_deploy.progress import Steps

    factory = tmp_path / "two.py"
    factory.write_text(TWO_CONVS)
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    for i in range(2):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(
            pictures / f"{i}.png"
        )
    advances = []
    steps = Steps(
        on_start=lambda title: advances.append(title), on_advance=lambda done, total: advances.append((done, total))
    )
    run_export(
        ExportOptions(
            model=f"{factory}:build",
            resolution=(64, 64),
            precision="int8",
            calib_images=pictures,
            sensitivity=True,
            out=tmp_path / "out",
        ),
        steps,
    )
    calibrating = advances.index(next(a for a in advances if isinstance(a, str) and a.startswith("Calibrating")))
    sweeping = advances.index(next(a for a in advances if isinstance(a, str) and a.startswith("Quantizing")))
    assert (2, 2) in advances[calibrating:sweeping]  # every picture fed
    assert advances[sweeping + 1] == (0, 2) and (2, 2) in advances[sweeping:]  # both modules measured
