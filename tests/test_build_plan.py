"""The build plan for TensorRT 8.5, 8.6, 10.3, 10.13 and 11.4, its error cases, and what a plan does
to the TensorRT API (against a recording fake `tensorrt`, and against the real one where present).

Everything here runs without TensorRT, without a GPU and without torch: the export directories
are small hand-made ONNX graphs with the manifest contract of `export`.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Dict, List

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from msla_deploy.errors import BadInput, CheckFailed, MissingRuntime
from msla_deploy.artifact.files import sha256_file
from tests.fixtures import manifest_json as read_manifest
from msla_deploy.artifact.names import MANIFEST_FORMAT
from msla_deploy.trt import engine as engine_mod
from msla_deploy.trt.build import run_build
from msla_deploy.trt.inputs import load_model_input
from msla_deploy.trt.options import DEFAULT_WORKSPACE, BuildOptions, parse_size
from msla_deploy.trt.plan import make_plan
from msla_deploy.trt.versions import parse_version

VERSIONS = ("8.5", "8.6", "10.3", "10.13", "11.4")
FP32_NODES = ["node_transpose", "node_matmul", "node_sum", "node_add", "node_div", "node_matmul_1"]


# --- small export directories with the manifest contract ------------------------------------------

def tiny_graph(mixed: bool, dynamic: bool = False) -> onnx.ModelProto:
    """conv -> hswish -> linear attention (MatMul of two activations, ReduceSum, Div) -> cubic resize.

    mixed=True is the mixed-precision ONNX of an fp16 export: fp16 everywhere, attention in fp32
    between explicit Casts, fp32 graph input and output.
    """
    F16, F32 = TensorProto.FLOAT16, TensorProto.FLOAT
    np_t = np.float16 if mixed else np.float32
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array((rng.standard_normal((8, 3, 3, 3)) * 0.1).astype(np_t), "W"),
        numpy_helper.from_array(np.array([1, 8, 1024], np.int64), "shape_tokens"),
        numpy_helper.from_array(np.array([1, 8, 32, 32], np.int64), "shape_image"),
        numpy_helper.from_array(np.array([2], np.int64), "axes"),
        numpy_helper.from_array(np.array(1e-5, np.float32), "eps"),
        numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
    ]
    nodes = []
    x = "input"
    if mixed:
        nodes.append(helper.make_node("Cast", ["input"], ["x16"], name="node_cast_in", to=F16))
        x = "x16"
    nodes += [
        helper.make_node("Conv", [x, "W"], ["c"], name="node_conv", pads=[1, 1, 1, 1]),
        helper.make_node("HardSwish", ["c"], ["h"], name="node_hswish"),
        helper.make_node("Reshape", ["h", "shape_tokens"], ["r"], name="node_view"),
    ]
    r = "r"
    if mixed:
        nodes.append(helper.make_node("Cast", ["r"], ["r32"], name="node_cast_attn", to=F32))
        r = "r32"
    nodes += [
        helper.make_node("Transpose", [r], ["tr"], name="node_transpose", perm=[0, 2, 1]),
        helper.make_node("MatMul", [r, "tr"], ["m"], name="node_matmul"),
        helper.make_node("ReduceSum", ["m", "axes"], ["s"], name="node_sum", keepdims=1),
        helper.make_node("Add", ["s", "eps"], ["a"], name="node_add"),
        helper.make_node("Div", ["m", "a"], ["d"], name="node_div"),
        helper.make_node("MatMul", ["d", r], ["o"], name="node_matmul_1"),
    ]
    o = "o"
    if mixed:
        nodes.append(helper.make_node("Cast", ["o"], ["o16"], name="node_cast_back", to=F16))
        o = "o16"
    nodes += [
        helper.make_node("Reshape", [o, "shape_image"], ["b"], name="node_view_1"),
        helper.make_node("Add", ["b", "h"], ["y"], name="node_add_1"),
        helper.make_node("Resize", ["y", "", "scales"], ["up"], name="node_resize", mode="cubic"),
    ]
    if mixed:
        nodes.append(helper.make_node("Cast", ["up"], ["logits"], name="node_cast_out", to=F32))
    else:
        nodes[-1].output[0] = "logits"
    batch = "N" if dynamic else 1
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("input", F32, [batch, 3, 32, 32])],
        [helper.make_tensor_value_info("logits", F32, [batch, 8, 64, 64])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="test")
    model.ir_version = 8
    return model


def _save(model: onnx.ModelProto, path: Path, precision: str, fp32_nodes) -> None:
    helper.set_model_props(model, {"msla_deploy.precision": precision, "msla_deploy.fp32_nodes": ",".join(fp32_nodes)})
    onnx.save(model, str(path))


def make_export_dir(root: Path, kind: str = "fp16", dynamic: bool = False, fp32_nodes=FP32_NODES) -> Path:
    """kind: fp16 (model.onnx mixed + model_fp32.onnx), fp32 (model.onnx + contract), legacy (no precision section)."""
    root.mkdir(parents=True, exist_ok=True)
    manifest: Dict = {"format": MANIFEST_FORMAT, "stage": "export", "model": {"name": "tiny"}}
    if kind == "fp16":
        _save(tiny_graph(True, dynamic), root / "model.onnx", "fp16", fp32_nodes)
        _save(tiny_graph(False, dynamic), root / "model_fp32.onnx", "fp16", fp32_nodes)
        files = {"fp32": "model_fp32.onnx", "fp16": "model.onnx"}
    else:
        _save(tiny_graph(False, dynamic), root / "model.onnx", "fp32", fp32_nodes if kind == "fp32" else [])
        files = {"fp32": "model.onnx"}
    if kind != "legacy":
        manifest["precision"] = {
            "precision": "fp16" if kind == "fp16" else "fp32", "attention_precision": "fp32", "io_dtype": "fp32",
            "onnx_files": files, "fp32_nodes": list(fp32_nodes),
        }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return root


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    base = tmp_path_factory.mktemp("exports")
    return {kind: make_export_dir(base / kind, kind) for kind in ("fp16", "fp32", "legacy")}


def plan_for(directory: Path, version: str, **options):
    model = load_model_input(directory)
    return make_plan(BuildOptions(source=directory, **options), model, parse_version(version))


def test_tiny_graphs_are_valid_onnx():
    for mixed in (False, True):
        onnx.checker.check_model(tiny_graph(mixed), full_check=True)


# --- options --------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("1G", 1 << 30), ("512M", 512 << 20), ("2048", 2048 << 20), ("1536MiB", 1536 << 20), ("0.5GiB", 512 << 20), ("4096k", 4 << 20),
])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["banana", "", "12 parsecs", "-1G", "0.1"])
def test_parse_size_rejects(text):
    with pytest.raises(BadInput):
        parse_size(text)


@pytest.mark.parametrize("changes, needle", [
    ({"opt_level": 9}, "0..5"),
    ({"opt_level": -1}, "0..5"),
    ({"workspace": "banana"}, "not a size"),
    ({"dla_core": 0, "precision": "fp32"}, "fp16 and int8 only"),
    ({"dla_core": -1, "precision": "fp16"}, "negative"),
    ({"gpu_fallback": True}, "only to DLA"),
    ({"typing": "loose"}, "--typing"),
    ({"precision": "int8"}, "--precision"),
    ({"hardware_compat": "turing+"}, "--hardware-compat"),
    ({"trt_version": "ten"}, "X.Y"),
    ({"trt_version": "7.2"}, "older"),
])
def test_options_rejected_before_anything_is_read(changes, needle):
    options = BuildOptions(source=Path("/nonexistent"), **changes)
    with pytest.raises(BadInput) as info:
        options.check()
    assert needle in str(info.value)
    assert info.value.exit_code == 2


# --- plans per version ----------------------------------------------------------------------------

def test_fp16_on_jetpack5_and_6_is_weakly_typed_from_the_fp32_graph(dirs):
    for version in ("8.5", "8.6", "10.3"):
        plan = plan_for(dirs["fp16"], version)
        assert plan.precision == "fp16" and plan.typing == "weak"
        assert plan.onnx.name == "model_fp32.onnx" and plan.onnx_role == "fp32"
        assert plan.fp16_flag and plan.obey_precision_constraints and not plan.strongly_typed_flag
        assert [name for name, _ in plan.layer_precisions] == FP32_NODES
        assert {p for _, p in plan.layer_precisions} == {"fp32"}
        assert [name for name, _ in plan.layer_output_types] == FP32_NODES  # all single-output nodes
        assert plan.explicit_batch_flag == (version != "10.3")  # EXPLICIT_BATCH is required before 10.0
        assert plan.tf32 is False
        assert plan.workspace_bytes == DEFAULT_WORKSPACE
        assert plan.profiles == ()  # static shapes need no optimization profile


def test_fp16_on_10_13_is_strongly_typed_from_the_mixed_precision_onnx(dirs):
    plan = plan_for(dirs["fp16"], "10.13")
    assert plan.typing == "strong" and plan.onnx.name == "model.onnx" and plan.onnx_role == "fp16"
    assert plan.strongly_typed_flag and not plan.fp16_flag
    assert not plan.obey_precision_constraints and plan.layer_precisions == () and plan.layer_output_types == ()
    assert not plan.explicit_batch_flag


def test_fp16_on_11_4_is_strongly_typed_without_the_deprecated_flag(dirs):
    plan = plan_for(dirs["fp16"], "11.4")
    assert plan.typing == "strong" and plan.onnx_role == "fp16"
    assert not plan.strongly_typed_flag  # 11.x: always strongly typed, the creation flag is ignored
    assert not plan.fp16_flag and not plan.explicit_batch_flag and plan.layer_precisions == ()


def test_precision_defaults_to_the_exports(dirs):
    assert plan_for(dirs["fp16"], "8.6").precision == "fp16"
    assert plan_for(dirs["fp32"], "8.6").precision == "fp32"
    assert plan_for(dirs["legacy"], "8.6").precision == "fp32"


@pytest.mark.parametrize("version", VERSIONS)
def test_fp32_builds_never_set_fp16_and_parse_the_fp32_graph(dirs, version):
    for kind in ("fp16", "fp32", "legacy"):
        plan = plan_for(dirs[kind], version, precision="fp32")
        assert plan.onnx_role == "fp32" and not plan.fp16_flag and plan.layer_precisions == ()
        assert plan.tf32 is False  # --no-tf32 is the default (comparable to PyTorch)
        assert plan.typing == ("strong" if version in ("10.13", "11.4") else "weak")


def test_tf32_can_be_asked_for(dirs):
    assert plan_for(dirs["fp32"], "10.3", tf32=True).tf32 is True


def test_weak_typing_on_10_13_is_allowed_with_a_deprecation_warning(dirs):
    plan = plan_for(dirs["fp16"], "10.13", typing="weak")
    assert plan.typing == "weak" and plan.fp16_flag and plan.onnx_role == "fp32"
    assert any("deprecated" in w for w in plan.warnings)


def test_strong_typing_on_10_3_uses_the_flag(dirs):
    plan = plan_for(dirs["fp16"], "10.3", typing="strong")
    assert plan.typing == "strong" and plan.strongly_typed_flag and not plan.fp16_flag and plan.onnx_role == "fp16"


def test_legacy_directory_is_fp32_with_model_onnx(dirs):
    model = load_model_input(dirs["legacy"])
    assert model.export_precision == "fp32" and set(model.onnx_files) == {"fp32"} and model.fp32_nodes == ()
    assert model.onnx_files["fp32"].name == "model.onnx"


def test_fp16_from_an_fp32_export_on_8_6_warns_when_nothing_is_pinned(dirs):
    plan = plan_for(dirs["legacy"], "8.6", precision="fp16")
    assert plan.fp16_flag and plan.layer_precisions == () and not plan.obey_precision_constraints
    assert any("#3893" in w for w in plan.warnings)
    pinned = plan_for(dirs["fp32"], "8.6", precision="fp16")  # an fp32 export still records fp32_nodes
    assert [n for n, _ in pinned.layer_precisions] == FP32_NODES and not pinned.warnings


def test_cubic_resize_warns_on_8_5_only(dirs):
    assert any("cubic" in w for w in plan_for(dirs["fp16"], "8.5").warnings)
    assert not any("cubic" in w for w in plan_for(dirs["fp16"], "8.6").warnings)


def test_default_paths_carry_precision_and_version(dirs):
    plan = plan_for(dirs["fp16"], "10.3")
    assert plan.engine == dirs["fp16"].resolve() / "model_fp16_trt10.3.engine"
    assert plan.layer_info.name == "model_fp16_trt10.3.layers.json"
    assert plan.timing_cache.name == "timing_trt10.3.cache"
    dla = plan_for(dirs["fp16"], "10.3", dla_core=1)
    assert dla.engine.name == "model_fp16_trt10.3_dla1.engine"
    out = plan_for(dirs["fp16"], "10.3", out=Path("/tmp/elsewhere/x.plan"))
    assert out.engine == Path("/tmp/elsewhere/x.plan") and out.layer_info == Path("/tmp/elsewhere/x.layers.json")


def test_plan_is_frozen_and_serializable(dirs):
    plan = plan_for(dirs["fp16"], "8.6")
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.fp16_flag = False
    data = json.loads(json.dumps(plan.to_dict()))
    assert data["builder_flags"]["fp16"] is True and data["layer_precisions"][0] == ["node_transpose", "fp32"]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("typing", ["auto", "strong", "weak"])
def test_no_plan_ever_mixes_strong_typing_with_weak_settings(dirs, version, precision, typing):
    try:
        plan = plan_for(dirs["fp16"], version, precision=precision, typing=typing)
    except BadInput:
        return
    weak = plan.fp16_flag or plan.obey_precision_constraints or plan.layer_precisions or plan.layer_output_types
    assert not (plan.typing == "strong" and weak)
    if version == "11.4":
        assert plan.typing == "strong" and not weak
    if precision == "fp16":  # never an fp32 engine for an fp16 request
        assert plan.fp16_flag or plan.onnx_role == "fp16"


# --- error cases (BadInput, exit 2, with a fix) ------------------------------------------------------

def _bad(directory, version, **options) -> BadInput:
    with pytest.raises(BadInput) as info:
        plan_for(directory, version, **options)
    assert info.value.exit_code == 2 and info.value.fix
    return info.value


def test_weak_typing_on_11_is_an_error(dirs):
    error = _bad(dirs["fp16"], "11.4", typing="weak", precision="fp16")
    assert "removed in TensorRT 11.0" in error.problem and "--typing strong" in error.fix
    _bad(dirs["fp16"], "11.4", typing="weak", precision="fp32")


def test_strong_typing_before_9_is_an_error(dirs):
    for version in ("8.5", "8.6"):
        error = _bad(dirs["fp16"], version, typing="strong")
        assert "9.0" in error.problem and "--typing weak" in error.fix


def test_fp16_from_fp32_only_export_where_strong_typing_is_needed(dirs):
    error = _bad(dirs["fp32"], "11.4", precision="fp16")
    assert "mixed-precision fp16 ONNX" in error.problem and "export --precision fp16" in error.fix
    assert "--typing weak" not in error.fix  # 11.x has no weak typing to offer
    error = _bad(dirs["legacy"], "10.13", precision="fp16")
    assert "export --precision fp16" in error.fix and "--typing weak" in error.fix
    _bad(dirs["fp32"], "10.3", precision="fp16", typing="strong")


def test_bare_fp16_onnx_cannot_be_built_weakly(dirs):
    model_path = dirs["fp16"] / "model.onnx"
    model = load_model_input(model_path)
    assert set(model.onnx_files) == {"fp16"} and model.fp32_nodes == tuple(FP32_NODES)
    with pytest.raises(BadInput, match="mixed-precision fp16 ONNX"):
        make_plan(BuildOptions(source=model_path, precision="fp16"), model, parse_version("8.6"))
    with pytest.raises(BadInput, match="fp32 build needs the fp32 ONNX"):
        make_plan(BuildOptions(source=model_path, precision="fp32"), model, parse_version("10.13"))
    plan = make_plan(BuildOptions(source=model_path), model, parse_version("10.13"))
    assert plan.typing == "strong" and plan.engine.name == "model_fp16_trt10.13.engine"


def test_bare_fp32_onnx_reads_fp32_nodes_from_metadata(dirs):
    path = dirs["fp16"] / "model_fp32.onnx"
    model = load_model_input(path)
    assert set(model.onnx_files) == {"fp32"} and model.fp32_nodes == tuple(FP32_NODES)
    plan = make_plan(BuildOptions(source=path, precision="fp16"), model, parse_version("8.6"))
    assert [n for n, _ in plan.layer_precisions] == FP32_NODES


def test_dla_needs_a_version_with_dla(dirs):
    for version in ("10.8", "10.13", "11.0", "11.3"):
        error = _bad(dirs["fp16"], version, dla_core=0)
        assert "no DLA" in error.problem and "10.7" in error.problem
    plan = plan_for(dirs["fp16"], "10.3", dla_core=1)
    assert plan.dla_core == 1 and plan.gpu_fallback and plan.typing == "weak" and plan.fp16_flag
    assert plan.layer_device_types == tuple((n, "GPU") for n in FP32_NODES)  # DLA has no fp32: pinned layers on the GPU
    assert plan_for(dirs["fp16"], "10.3").layer_device_types == ()
    plan = plan_for(dirs["fp16"], "11.4", dla_core=0)
    assert plan.typing == "strong" and any("11.4.1" in w for w in plan.warnings)
    plan = plan_for(dirs["fp16"], "8.6", dla_core=0, gpu_fallback=False)
    assert not plan.gpu_fallback and any("fallback is off" in w for w in plan.warnings)


def test_dla_in_fp32_is_an_error(dirs):
    error = _bad(dirs["fp32"], "10.3", dla_core=0)  # the export's precision, fp32
    assert "fp16 and int8 only" in error.problem


def test_dynamic_shapes_are_an_error(tmp_path):
    directory = make_export_dir(tmp_path / "dyn", "fp16", dynamic=True)
    error = _bad(directory, "10.3")
    assert "dynamic" in error.problem


def test_version_gated_options(dirs):
    assert "8.6" in _bad(dirs["fp16"], "8.5", opt_level=3).problem
    assert "8.6" in _bad(dirs["fp16"], "8.5", hardware_compat="ampere+").problem
    assert "10.9" in _bad(dirs["fp16"], "10.3", hardware_compat="same-cc").problem
    assert "8.6" in _bad(dirs["fp16"], "8.5", version_compatible=True).problem
    plan = plan_for(dirs["fp16"], "10.13", opt_level=5, hardware_compat="same-cc", version_compatible=True)
    assert (plan.opt_level, plan.hardware_compat, plan.version_compatible) == (5, "same-cc", True)
    assert plan_for(dirs["fp16"], "8.6", hardware_compat="ampere+").hardware_compat == "ampere+"


def test_fp32_nodes_missing_from_the_graph_are_an_error(tmp_path):
    directory = make_export_dir(tmp_path / "bad", "fp16", fp32_nodes=FP32_NODES + ["node_not_there"])
    error = _bad(directory, "8.6")
    assert "node_not_there" in error.problem


def test_inputs_that_are_not_exports(tmp_path):
    with pytest.raises(BadInput, match="no such file"):
        load_model_input(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInput, match="not an export directory"):
        load_model_input(tmp_path / "empty")
    (tmp_path / "x.onnx").write_bytes(b"not onnx")
    with pytest.raises(BadInput, match="not a readable ONNX"):
        load_model_input(tmp_path / "x.onnx")
    directory = make_export_dir(tmp_path / "gone", "fp16")
    (directory / "model_fp32.onnx").unlink()
    with pytest.raises(BadInput, match="missing"):
        load_model_input(directory)


def test_opset_above_the_parser_warns(tmp_path):
    directory = make_export_dir(tmp_path / "o", "fp16")
    for name in ("model.onnx", "model_fp32.onnx"):
        model = onnx.load(str(directory / name))
        model.opset_import[0].version = 18
        onnx.save(model, str(directory / name))
    assert any("opset 18" in w for w in plan_for(directory, "8.6").warnings)
    assert not any("opset" in w for w in plan_for(directory, "10.13").warnings)


# --- applying a plan to the TensorRT API: a recording fake ---------------------------------------------

class FlagSet:
    """An enum namespace that records every member looked up and has only this version's members."""

    def __init__(self, log: List[str], kind: str, members: Dict[str, int]):
        self._log, self._kind, self._members = log, kind, members

    def __getattr__(self, name):
        self._log.append(f"{self._kind}.{name}")
        if name not in self._members:
            raise AttributeError(f"{self._kind} has no {name} in this TensorRT")
        return self._members[name]


class FakeLayer:
    def __init__(self, fake, name: str, outputs: int = 1):
        object.__setattr__(self, "_fake", fake)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "num_outputs", outputs)
        object.__setattr__(self, "output_types", {})

    def __setattr__(self, key, value):
        if key == "precision" and self._fake.major >= 11:
            raise AttributeError("ILayer.precision was removed in TensorRT 11")
        self._fake.calls.append(("layer.precision", self.name, value))
        object.__setattr__(self, key, value)

    def get_output(self, i):
        return SimpleNamespace(dtype="FLOAT")

    def set_output_type(self, i, dtype):
        if self._fake.major >= 11:
            raise AttributeError("ILayer.set_output_type was removed in TensorRT 11")
        self._fake.calls.append(("layer.set_output_type", self.name, i, dtype))
        self.output_types[i] = dtype


class FakeConfig:
    def __init__(self, fake):
        object.__setattr__(self, "_fake", fake)
        object.__setattr__(self, "cache", None)

    def __setattr__(self, key, value):
        self._fake.calls.append((f"config.{key}", value))
        object.__setattr__(self, key, value)

    def set_flag(self, flag):
        self._fake.calls.append(("config.set_flag", flag))

    def clear_flag(self, flag):
        self._fake.calls.append(("config.clear_flag", flag))

    def set_memory_pool_limit(self, pool, size):
        self._fake.calls.append(("config.set_memory_pool_limit", pool, size))

    def create_timing_cache(self, data):
        self._fake.calls.append(("config.create_timing_cache", bytes(data)))
        return SimpleNamespace(data=bytes(data), serialize=lambda: b"CACHE:" + bytes(data))

    def set_timing_cache(self, cache, ignore_mismatch):
        self._fake.calls.append(("config.set_timing_cache", cache.data, ignore_mismatch))
        if cache.data and cache.data == b"foreign":
            return False
        object.__setattr__(self, "cache", cache)
        return True

    def get_timing_cache(self):
        return self.cache

    def set_device_type(self, layer, device):
        self._fake.calls.append(("config.set_device_type", layer.name, device))

    def can_run_on_DLA(self, layer):
        return layer.name not in self._fake.not_on_dla


class FakeTensorRT:
    """Just enough of `tensorrt` to build: records calls; members differ by version like the real one."""

    def __init__(self, version: str, layers=("node_conv", "node_hswish", "node_view", "node_transpose", "node_matmul",
                                            "node_matmul_17", "node_sum", "node_add", "node_div", "node_matmul_1",
                                            "node_view_1", "node_add_1", "node_resize"),
                 dla_cores: int = 0, not_on_dla=("node_hswish",), parse_ok: bool = True, build_ok: bool = True):
        self.__version__ = version
        self.major, self.minor = (int(x) for x in version.split(".")[:2])
        self.calls: List = []
        self.lookups: List[str] = []
        self.layer_names, self.dla_cores, self.not_on_dla = list(layers), dla_cores, set(not_on_dla)
        self.parse_ok, self.build_ok = parse_ok, build_ok
        v = (self.major, self.minor)
        builder_flags = {"TF32": 6, "GPU_FALLBACK": 3, "VERSION_COMPATIBLE": 12}
        if v < (11, 0):
            builder_flags.update(FP16=0, INT8=1, OBEY_PRECISION_CONSTRAINTS=9, PREFER_PRECISION_CONSTRAINTS=10)
        self.BuilderFlag = FlagSet(self.lookups, "BuilderFlag", builder_flags)
        creation = {}
        if v < (11, 0):
            creation["EXPLICIT_BATCH"] = 0
        if v >= (9, 0):
            creation["STRONGLY_TYPED"] = 1 if v < (11, 0) else 0
        self.NetworkDefinitionCreationFlag = FlagSet(self.lookups, "NetworkDefinitionCreationFlag", creation)
        hw = {"NONE": 0, "AMPERE_PLUS": 1}
        if v >= (10, 9):
            hw["SAME_COMPUTE_CAPABILITY"] = 2
        self.HardwareCompatibilityLevel = FlagSet(self.lookups, "HardwareCompatibilityLevel", hw)
        self.DataType = SimpleNamespace(FLOAT="FLOAT", HALF="HALF")
        self.MemoryPoolType = SimpleNamespace(WORKSPACE="WORKSPACE")
        self.ProfilingVerbosity = SimpleNamespace(DETAILED="DETAILED")
        self.DeviceType = SimpleNamespace(GPU="GPU", DLA="DLA")
        self.LayerInformationFormat = SimpleNamespace(JSON="JSON")
        fake = self

        class Logger:
            WARNING = 2

            def __init__(self, severity=None):
                pass

        class Builder:
            def __init__(self, logger):
                self.num_DLA_cores = fake.dla_cores

            def create_network(self, flags):
                fake.calls.append(("builder.create_network", flags))
                return SimpleNamespace(layers=[], num_layers=0, get_layer=None)

            def create_builder_config(self):
                return FakeConfig(fake)

            def build_serialized_network(self, network, config):
                fake.calls.append(("builder.build_serialized_network",))
                return b"ENGINE-" + fake.__version__.encode() if fake.build_ok else None

        class OnnxParser:
            def __init__(self, network, logger):
                self.network = network
                self.num_errors = 0 if fake.parse_ok else 1

            def parse_from_file(self, path):
                fake.calls.append(("parser.parse_from_file", Path(path).name))
                layers = [FakeLayer(fake, n) for n in fake.layer_names]
                self.network.layers = layers
                self.network.num_layers = len(layers)
                self.network.get_layer = layers.__getitem__
                return fake.parse_ok

            def get_error(self, i):
                return "In node 3 (importResize): UNSUPPORTED_NODE: cubic"

        class Runtime:
            def __init__(self, logger):
                pass

            def deserialize_cuda_engine(self, data):
                inspector = SimpleNamespace(get_engine_information=lambda fmt: json.dumps({"Layers": ["a", "b"], "format": fmt}))
                return SimpleNamespace(create_engine_inspector=lambda: inspector)

        self.Logger, self.Builder, self.OnnxParser, self.Runtime = Logger, Builder, OnnxParser, Runtime

    def flags_set(self):
        return [c[1] for c in self.calls if c[0] == "config.set_flag"]


def _fake_build(plan, fake, node_names=()):
    return engine_mod.build_engine(fake, plan, onnx_node_names=node_names)


def test_api_8_6_weak_fp16(dirs):
    plan = plan_for(dirs["fp16"], "8.6")
    fake = FakeTensorRT("8.6.1")
    built = _fake_build(plan, fake, load_model_input(dirs["fp16"]).graphs["fp32"].node_names)
    assert ("builder.create_network", 1 << 0) in fake.calls  # EXPLICIT_BATCH, no STRONGLY_TYPED
    assert ("parser.parse_from_file", "model_fp32.onnx") in fake.calls
    assert fake.flags_set() == [0, 9]  # FP16, OBEY_PRECISION_CONSTRAINTS
    assert ("config.clear_flag", 6) in fake.calls  # TF32 off
    assert ("config.set_memory_pool_limit", "WORKSPACE", DEFAULT_WORKSPACE) in fake.calls
    assert ("config.profiling_verbosity", "DETAILED") in fake.calls
    pinned = {c[1] for c in fake.calls if c[0] == "layer.precision"}
    assert pinned == set(FP32_NODES) | {"node_matmul_17"}  # a node's extra layer '<node>_<n>' is pinned too
    assert ("layer.set_output_type", "node_matmul", 0, "FLOAT") in fake.calls
    assert "NetworkDefinitionCreationFlag.STRONGLY_TYPED" not in fake.lookups
    assert built.engine == b"ENGINE-8.6.1" and built.unmatched_fp32_nodes == []
    assert json.loads(built.layer_info)["Layers"] == ["a", "b"]
    assert built.timing_cache == b"CACHE:" and built.timing_cache_loaded is False


def test_api_10_13_strong_fp16_touches_no_weak_typing_api(dirs):
    plan = plan_for(dirs["fp16"], "10.13")
    fake = FakeTensorRT("10.13.0")
    _fake_build(plan, fake)
    assert ("builder.create_network", 1 << 1) in fake.calls  # STRONGLY_TYPED only
    assert ("parser.parse_from_file", "model.onnx") in fake.calls
    for name in ("BuilderFlag.FP16", "BuilderFlag.OBEY_PRECISION_CONSTRAINTS", "NetworkDefinitionCreationFlag.EXPLICIT_BATCH"):
        assert name not in fake.lookups
    assert not any(c[0].startswith("layer.") for c in fake.calls)
    assert fake.flags_set() == []


def test_api_11_strong_fp16_uses_no_removed_api(dirs):
    plan = plan_for(dirs["fp16"], "11.4")
    fake = FakeTensorRT("11.4.1")
    built = _fake_build(plan, fake)  # any removed member raises AttributeError in the fake
    assert ("builder.create_network", 0) in fake.calls
    assert not [name for name in fake.lookups if name.startswith("NetworkDefinitionCreationFlag.")]
    assert "BuilderFlag.FP16" not in fake.lookups and built.engine == b"ENGINE-11.4.1"


def test_fake_11_really_lacks_the_weak_api():
    """The fake is only a proof if it fails where TensorRT 11 fails."""
    fake = FakeTensorRT("11.0.0")
    with pytest.raises(AttributeError):
        fake.BuilderFlag.FP16
    with pytest.raises(AttributeError):
        fake.NetworkDefinitionCreationFlag.EXPLICIT_BATCH
    with pytest.raises(AttributeError):
        FakeLayer(fake, "x").precision = "FLOAT"


def test_api_options_and_timing_cache(dirs, tmp_path):
    cache = tmp_path / "t.cache"
    cache.write_bytes(b"previous")
    plan = plan_for(dirs["fp32"], "10.13", opt_level=4, hardware_compat="same-cc", version_compatible=True,
                    tf32=True, workspace="2G", timing_cache=cache)
    fake = FakeTensorRT("10.13.0")
    built = _fake_build(plan, fake)
    assert ("config.builder_optimization_level", 4) in fake.calls
    assert ("config.hardware_compatibility_level", 2) in fake.calls  # SAME_COMPUTE_CAPABILITY
    assert set(fake.flags_set()) == {12, 6}  # VERSION_COMPATIBLE, TF32
    assert ("config.set_memory_pool_limit", "WORKSPACE", 2 << 30) in fake.calls
    assert ("config.create_timing_cache", b"previous") in fake.calls
    assert built.timing_cache_loaded and built.timing_cache == b"CACHE:previous"


def test_api_foreign_timing_cache_starts_empty(dirs, tmp_path):
    cache = tmp_path / "foreign.cache"
    cache.write_bytes(b"foreign")
    plan = plan_for(dirs["fp32"], "10.3", timing_cache=cache)
    built = _fake_build(plan, FakeTensorRT("10.3.0"))
    assert not built.timing_cache_loaded and built.notes and built.timing_cache == b"CACHE:"


def test_api_dla(dirs):
    plan = plan_for(dirs["fp16"], "10.3", dla_core=1)
    fake = FakeTensorRT("10.3.0", dla_cores=2)
    built = _fake_build(plan, fake, load_model_input(dirs["fp16"]).graphs["fp32"].node_names)
    assert ("config.default_device_type", "DLA") in fake.calls and ("config.DLA_core", 1) in fake.calls
    assert 3 in fake.flags_set()  # GPU_FALLBACK
    placed = {c[1] for c in fake.calls if c[0] == "config.set_device_type" and c[2] == "GPU"}
    assert placed == set(FP32_NODES) | {"node_matmul_17"}
    assert built.dla_fallback_layers == ["node_hswish"]
    with pytest.raises(MissingRuntime, match="no DLA cores"):
        _fake_build(plan, FakeTensorRT("10.3.0", dla_cores=0))
    with pytest.raises(BadInput, match="1 DLA core"):
        _fake_build(plan, FakeTensorRT("10.3.0", dla_cores=1))
    strict = plan_for(dirs["fp16"], "10.3", dla_core=0, gpu_fallback=False)
    with pytest.raises(BadInput, match="--gpu-fallback"):
        _fake_build(strict, FakeTensorRT("10.3.0", dla_cores=2))


def test_api_failures(dirs):
    plan = plan_for(dirs["fp16"], "8.6")
    with pytest.raises(BadInput, match="could not parse.*cubic"):
        _fake_build(plan, FakeTensorRT("8.6.1", parse_ok=False))
    with pytest.raises(CheckFailed, match="could not build"):
        _fake_build(plan, FakeTensorRT("8.6.1", build_ok=False))
    with pytest.raises(CheckFailed, match="none of the"):
        _fake_build(plan, FakeTensorRT("8.6.1", layers=("a", "b")))


def test_suffix_pinning_skips_layers_named_after_other_nodes(dirs):
    plan = dataclasses.replace(plan_for(dirs["fp16"], "8.6"), layer_precisions=(("n0", "fp32"),), layer_output_types=())
    fake = FakeTensorRT("8.6.1", layers=("n0", "n0_2", "n0_9", "n0_2_5"))
    pinned, unmatched = engine_mod.pin_layers(fake, _network(fake), plan, onnx_node_names={"n0", "n0_2"})
    assert pinned == ["n0", "n0_9"] and unmatched == []
    pinned, _ = engine_mod.pin_layers(fake, _network(fake), plan)  # no node names: exact names only
    assert pinned == ["n0"]


def _network(fake):
    layers = [FakeLayer(fake, n) for n in fake.layer_names]
    return SimpleNamespace(num_layers=len(layers), get_layer=layers.__getitem__)


# --- the whole build, with the fake TensorRT and a fake GPU ------------------------------------------------

GPU = SimpleNamespace(name="Orin (fake)", compute_capability="8.7", driver_cuda_version="12.6",
                      to_dict=lambda: {"name": "Orin (fake)", "compute_capability": "8.7", "driver_cuda_version": "12.6"})


def test_run_build_writes_engine_layer_info_cache_and_manifest(tmp_path):
    directory = make_export_dir(tmp_path / "e", "fp16")
    seen = []
    run_build(BuildOptions(source=directory), on_plan=seen.append, trt=FakeTensorRT("10.3.0"), gpu_probe=lambda: GPU)
    assert seen and seen[0].plan.typing == "weak"
    engine = directory / "model_fp16_trt10.3.engine"
    assert engine.read_bytes() == b"ENGINE-10.3.0"
    assert json.loads((directory / "model_fp16_trt10.3.layers.json").read_text())["Layers"] == ["a", "b"]
    assert (directory / "timing_trt10.3.cache").read_bytes() == b"CACHE:"
    manifest = read_manifest(directory)
    assert manifest["model"] == {"name": "tiny"}  # the export's content is kept
    record = manifest["builds"][0]
    assert record["engine"] == {"file": "model_fp16_trt10.3.engine", "sha256": sha256_file(engine), "bytes": engine.stat().st_size}
    assert record["tensorrt"]["version"] == "10.3.0" and record["gpu"]["compute_capability"] == "8.7"
    assert record["plan"]["builder_flags"]["fp16"] and record["plan"]["onnx"] == "model_fp32.onnx"
    assert record["timing_cache"]["sha256"] == sha256_file(directory / "timing_trt10.3.cache")
    assert record["trtexec_equivalent"].startswith("trtexec --onnx=model_fp32.onnx")
    assert set(record["fp32_layers"]["pinned"]) >= set(FP32_NODES)
    # a second build loads the cache and appends
    run_build(BuildOptions(source=directory), trt=FakeTensorRT("10.3.0"), gpu_probe=lambda: GPU)
    builds = read_manifest(directory)["builds"]
    assert len(builds) == 2 and builds[1]["timing_cache"]["loaded"] is True


def test_run_build_bare_onnx_writes_build_json(tmp_path):
    directory = make_export_dir(tmp_path / "b", "fp16")
    result = run_build(BuildOptions(source=directory / "model.onnx"), trt=FakeTensorRT("10.13.0"), gpu_probe=lambda: GPU)
    assert result.record_path == directory / "build.json"
    data = json.loads(result.record_path.read_text())
    assert data["builds"][0]["plan"]["typing"] == "strong"
    assert "builds" not in read_manifest(directory)


def test_run_build_checks_before_needing_tensorrt(dirs, tmp_path):
    def no_trt():
        raise AssertionError("TensorRT must not be needed to reject this")

    # an impossible plan for an explicit version is exit 2 even without TensorRT
    with pytest.raises(BadInput, match="removed in TensorRT 11.0"):
        run_build(BuildOptions(source=dirs["fp16"], trt_version="11.4", typing="weak", precision="fp16"), gpu_probe=no_trt)
    with pytest.raises(BadInput, match="0..5"):
        run_build(BuildOptions(source=dirs["fp16"], opt_level=9), gpu_probe=no_trt)
    # an engine only runs on the TensorRT that built it
    with pytest.raises(BadInput, match="is installed"):
        run_build(BuildOptions(source=dirs["fp16"], trt_version="8.6"), trt=FakeTensorRT("10.3.0"), gpu_probe=no_trt)


def test_run_build_without_tensorrt_is_missing_runtime(dirs):
    try:
        import tensorrt  # noqa: F401

        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    with pytest.raises(MissingRuntime) as info:
        run_build(BuildOptions(source=dirs["fp16"]))
    assert info.value.exit_code == 3 and "tensorrt" in info.value.fix.lower()


# --- torch-free --------------------------------------------------------------------------------------

BLOCK_TORCH = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")
sys.meta_path.insert(0, _Block())
"""


def test_trt_package_imports_no_torch_and_no_tensorrt(dirs):
    code = BLOCK_TORCH + f"""
from pathlib import Path
import msla_deploy.trt, msla_deploy.trt.command, msla_deploy.trt.engine, msla_deploy.trt.dla
from msla_deploy.trt import BuildOptions, load_model_input, make_plan, parse_version, trtexec_argv
from msla_deploy.trt.dla import preflight
d = Path({str(dirs['fp16'])!r})
plan = make_plan(BuildOptions(source=d, dla_core=0), load_model_input(d), parse_version("10.3"))
print(" ".join(trtexec_argv(plan)))
print(preflight(plan.onnx).counts())
assert "torch" not in sys.modules and "tensorrt" not in sys.modules, sorted(m for m in sys.modules if "torch" in m or "tensorrt" in m)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "--useDLACore=0" in proc.stdout


# --- real TensorRT (only where TensorRT and a GPU exist) ------------------------------------------------

def _gpu_or_skip():
    from msla_deploy.trt.runtime import probe_gpu

    try:
        return probe_gpu()
    except MissingRuntime as exc:
        pytest.skip(f"no GPU: {exc.problem}")


@pytest.mark.parametrize("kind, precision", [("fp32", "fp32"), ("fp16", "fp16")])
def test_real_tensorrt_build(tmp_path, kind, precision):
    trt = pytest.importorskip("tensorrt", reason="TensorRT is not installed on this machine")
    _gpu_or_skip()
    directory = make_export_dir(tmp_path / kind, kind)
    result = run_build(BuildOptions(source=directory, precision=precision))
    engine_bytes = Path(result.plan.engine).read_bytes()
    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(engine_bytes)
    assert engine is not None
    assert result.record["engine"]["sha256"] == sha256_file(Path(result.plan.engine))
    if precision == "fp16" and result.plan.typing == "weak":
        assert result.record["fp32_layers"]["pinned"], "the attention nodes must be pinned to fp32"
