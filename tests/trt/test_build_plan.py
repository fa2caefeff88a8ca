"""The build plan for TensorRT 8.5, 8.6, 10.3, 10.13 and 11.4, its error cases, and what a plan does
to the TensorRT API: against the fake `tensorrt` generated from the real API of 8.6.1, 10.0.1, 10.3.0,
10.7.0, 10.13.3.9 and 11.4.0.106 (tests/trt_fake.py), and against the real one where present.

Everything here runs without TensorRT, without a GPU and without torch: the export directories
are small hand-made ONNX graphs with the manifest contract of `export`.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from msla_deploy.artifact.files import sha256_file
from msla_deploy.artifact.names import MANIFEST_FORMAT
from msla_deploy.artifact.resolve import resolve
from msla_deploy.errors import BadInput, CheckFailed, MissingRuntime
from msla_deploy.trt import engine as engine_mod
from msla_deploy.trt import runtime as runtime_mod
from msla_deploy.trt import versions as V
from msla_deploy.trt.build import build_for_runtime, plan_for_runtime, run_build
from msla_deploy.trt.inputs import load_model_input
from msla_deploy.trt.options import DEFAULT_WORKSPACE, BuildOptions, parse_size
from msla_deploy.trt.plan import make_plan
from msla_deploy.trt.trtexec import trtexec_argv
from msla_deploy.trt.versions import parse_version
from tests.fixtures import manifest_json as read_manifest
from tests.trt_fake import (  # the fixture fake_trt comes from conftest.py
    FAKE_GPU,
    FAKE_VERSIONS,
    install_fake_tensorrt,
    load_api,
    make_fake_tensorrt,
    read_fake_engine,
    version_key,
    versions_where,
)

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
        nodes,
        "tiny",
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
            "precision": "fp16" if kind == "fp16" else "fp32",
            "attention_precision": "fp32",
            "io_dtype": "fp32",
            "onnx_files": files,
            "fp32_nodes": list(fp32_nodes),
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


@pytest.mark.parametrize(
    "text, expected",
    [
        ("1G", 1 << 30),
        ("512M", 512 << 20),
        ("2048", 2048 << 20),
        ("1536MiB", 1536 << 20),
        ("0.5GiB", 512 << 20),
        ("4096k", 4 << 20),
    ],
)
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["banana", "", "12 parsecs", "-1G", "0.1"])
def test_parse_size_rejects(text):
    with pytest.raises(BadInput):
        parse_size(text)


@pytest.mark.parametrize(
    "changes, needle",
    [
        ({"opt_level": 9}, "0..5"),
        ({"opt_level": -1}, "0..5"),
        ({"workspace": "banana"}, "not a size"),
        ({"dla_core": 0, "precision": "fp32"}, "fp16 and int8 only"),
        ({"dla_core": -1, "precision": "fp16"}, "negative"),
        ({"gpu_fallback": True}, "only to DLA"),
        ({"typing": "loose"}, "--typing"),
        ({"precision": "int4"}, "--precision"),  # int8 is a precision since the int8 export (tests/export/test_int8.py)
        ({"hardware_compat": "turing+"}, "--hardware-compat"),
        ({"trt_version": "ten"}, "X.Y"),
        ({"trt_version": "7.2"}, "older"),
    ],
)
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


# --- applying a plan to the TensorRT API: the fake generated from each version's real API -----------------
#
# tests/trt_fake.py builds `tensorrt` from tests/data/tensorrt_api/<version>.json.gz: a name the
# version lacks raises AttributeError, enum values and signatures are the real ones. Each test runs
# against every fixture version its code path supports (ids: [trt8.6.1], [trt10.3.0], ...).

WEAK = versions_where(lambda v: v < (11, 0))  # weak typing (FP16 flag, layer precisions)
STRONG = versions_where(lambda v: v >= (10, 0))  # 8.6 has no STRONGLY_TYPED (fixtures: absent in 8.6.1)
DLA_WEAK = versions_where(lambda v: v < (10, 8))  # DLA before 11: 10.7 is the last 10.x with it
EXTRA = {"node_matmul": 1}  # the parser makes a second layer for this node, named '<node>_<n>'


def short(version: str) -> str:
    return ".".join(version.split(".")[:2])


def api_value(version: str, enum: str, member: str) -> int:
    """An enum value as the fixture records it (independent of the fake that is built from it)."""
    return load_api(version)["classes"][enum]["members"][member]


def _build(plan, trt, directory=None):
    names = load_model_input(directory).graphs[plan.onnx_role].node_names if directory is not None else ()
    return engine_mod.build_engine(trt, plan, onnx_node_names=names)


def _pinned(trt) -> List[str]:
    return [c.target.name for c in trt.fake.calls if c.name == "ILayer.precision" and c.kind == "set"]


@pytest.mark.parametrize("fake_trt", WEAK, indirect=True)
def test_api_weak_fp16(dirs, fake_trt):
    trt, version = fake_trt, fake_trt.__version__
    trt.fake.extra_layers.update(EXTRA)
    plan = plan_for(dirs["fp16"], short(version), typing="weak")
    built = _build(plan, trt, dirs["fp16"])
    explicit = (
        1 << api_value(version, "NetworkDefinitionCreationFlag", "EXPLICIT_BATCH")
        if version_key(version) < (10, 0)
        else 0
    )
    assert trt.fake.calls_to("Builder.create_network") == [{"flags": explicit}]  # no STRONGLY_TYPED
    assert [Path(c["model"]).name for c in trt.fake.calls_to("OnnxParser.parse_from_file")] == ["model_fp32.onnx"]
    assert trt.fake.flag_names() == ["FP16", "OBEY_PRECISION_CONSTRAINTS"]
    assert trt.fake.flag_names("IBuilderConfig.clear_flag") == ["TF32"]  # TF32 is on by default
    assert [(c["pool"].name, c["pool_size"]) for c in trt.fake.calls_to("IBuilderConfig.set_memory_pool_limit")] == [
        ("WORKSPACE", DEFAULT_WORKSPACE)
    ]
    assert [v.name for v in trt.fake.values_set("IBuilderConfig.profiling_verbosity")] == ["DETAILED"]
    assert trt.fake.values_set("IBuilderConfig.avg_timing_iterations") == [8]  # trtexec's default, set by trtexec
    extra = [
        n
        for n in (x["name"] for x in read_fake_engine(built.engine)["layers"])
        if n.startswith("node_matmul_") and n != "node_matmul_1"
    ]
    assert len(extra) == 1 and set(_pinned(trt)) == set(FP32_NODES) | set(extra)  # '<node>_<n>' is pinned too
    assert {"index": 0, "dtype": trt.fake.member("DataType", "FLOAT")} in trt.fake.calls_to("ILayer.set_output_type")
    assert "NetworkDefinitionCreationFlag.STRONGLY_TYPED" not in trt.fake.lookups
    engine = read_fake_engine(built.engine)
    assert engine["tensorrt"] == version and not engine["strongly_typed"]
    assert {"FP16", "OBEY_PRECISION_CONSTRAINTS"} <= set(engine["flags"]) and "TF32" not in engine["flags"]
    assert {x["name"]: x["precision"] for x in engine["layers"]}["node_matmul"] == "FLOAT"
    assert [i["name"] for i in engine["io"]] == ["input", "logits"]
    assert built.unmatched_fp32_nodes == []
    assert [x["Name"] for x in json.loads(built.layer_info)["Layers"]] == [x["name"] for x in engine["layers"]]
    assert (
        built.timing_cache.startswith(b"FAKE-TRT-CACHE " + short(version).encode())
        and built.timing_cache_loaded is False
    )


@pytest.mark.parametrize("fake_trt", STRONG, indirect=True)
def test_api_strong_fp16_touches_no_weak_typing_api(dirs, fake_trt):
    trt, version = fake_trt, fake_trt.__version__
    plan = plan_for(dirs["fp16"], short(version), typing="strong")
    built = _build(plan, trt, dirs["fp16"])
    strongly = (
        1 << api_value(version, "NetworkDefinitionCreationFlag", "STRONGLY_TYPED")
        if version_key(version) < (11, 0)
        else 0
    )
    assert trt.fake.calls_to("Builder.create_network") == [{"flags": strongly}]  # 11.x: always strong, no flag
    assert [Path(c["model"]).name for c in trt.fake.calls_to("OnnxParser.parse_from_file")] == ["model.onnx"]
    for name in (
        "BuilderFlag.FP16",
        "BuilderFlag.OBEY_PRECISION_CONSTRAINTS",
        "NetworkDefinitionCreationFlag.EXPLICIT_BATCH",
    ):
        assert name not in trt.fake.lookups
    assert not [c for c in trt.fake.calls if c.name.startswith("ILayer.")] and trt.fake.flag_names() == []
    engine = read_fake_engine(built.engine)
    assert engine["strongly_typed"] and {"io": "input", "dtype": "FLOAT"} == {
        "io": engine["io"][0]["name"],
        "dtype": engine["io"][0]["dtype"],
    }


@pytest.mark.parametrize("fake_trt", ["11.4.0.106"], indirect=True)
def test_api_a_weak_plan_fails_on_11_as_on_a_device(dirs, fake_trt):
    """The fake is only a proof if it fails where TensorRT 11 fails."""
    trt = fake_trt
    with pytest.raises(AttributeError):
        _ = trt.BuilderFlag.FP16
    with pytest.raises(AttributeError):
        _ = trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH
    assert not hasattr(trt.ILayer, "precision") and not hasattr(trt.ILayer, "set_output_type")
    with pytest.raises(AttributeError, match="precision"):  # pinning comes first, then BuilderFlag.FP16
        _build(plan_for(dirs["fp16"], "10.3"), trt, dirs["fp16"])  # a 10.3 weak plan on 11.4


@pytest.mark.parametrize("fake_trt", ["8.6.1"], indirect=True)
def test_api_a_strong_plan_fails_on_8_6_as_on_a_device(dirs, fake_trt):
    with pytest.raises(AttributeError, match="STRONGLY_TYPED"):
        _build(plan_for(dirs["fp16"], "10.3", typing="strong"), fake_trt, dirs["fp16"])


@pytest.mark.parametrize("fake_trt", FAKE_VERSIONS, indirect=True)
def test_api_options_timing_cache_and_version_compatible(dirs, fake_trt, tmp_path):
    trt, version = fake_trt, fake_trt.__version__
    compat = "same-cc" if version_key(version) >= (10, 9) else "ampere+"
    cache = tmp_path / "t.cache"
    plan = plan_for(
        dirs["fp32"],
        short(version),
        opt_level=4,
        hardware_compat=compat,
        version_compatible=True,
        tf32=True,
        workspace="2G",
        timing_cache=cache,
    )
    first = _build(plan, trt)
    assert trt.fake.values_set("IBuilderConfig.builder_optimization_level") == [4]
    assert [v.name for v in trt.fake.values_set("IBuilderConfig.hardware_compatibility_level")] == [
        V.HARDWARE_COMPAT_API[compat]
    ]
    assert set(trt.fake.flag_names()) == {"VERSION_COMPATIBLE", "TF32"}
    assert [c["pool_size"] for c in trt.fake.calls_to("IBuilderConfig.set_memory_pool_limit")] == [2 << 30]
    # the layer information comes from loading the version-compatible engine: host code allowed first
    assert trt.fake.values_set("Runtime.engine_host_code_allowed") == [True] and first.layer_info is not None
    assert not first.timing_cache_loaded and b"node_conv:tactic" in first.timing_cache
    cache.write_bytes(first.timing_cache)
    second = _build(plan, trt)
    assert trt.fake.calls_to("IBuilderConfig.create_timing_cache")[-1] == {
        "serialized_timing_cache": first.timing_cache
    }
    assert second.timing_cache_loaded and second.timing_cache == first.timing_cache


@pytest.mark.parametrize("fake_trt", FAKE_VERSIONS, indirect=True)
def test_api_foreign_timing_cache_starts_empty(dirs, fake_trt, tmp_path):
    other = next(v for v in FAKE_VERSIONS if short(v) != short(fake_trt.__version__))
    cache = tmp_path / "foreign.cache"
    cache.write_bytes(_build(plan_for(dirs["fp32"], short(other)), make_fake_tensorrt(other)).timing_cache)
    built = _build(plan_for(dirs["fp32"], short(fake_trt.__version__), timing_cache=cache), fake_trt)
    assert not built.timing_cache_loaded and built.notes
    assert built.timing_cache.startswith(b"FAKE-TRT-CACHE " + short(fake_trt.__version__).encode())


def trtexec_builder_flags(argv: List[str], version: str) -> set:
    """The BuilderFlags trtexec sets for argv (sampleEngines.cpp setupNetworkAndConfig, release/8.5 ... 11.1)."""
    flags = {"TF32"} if "--noTF32" not in argv else set()
    if "--fp16" in argv:
        flags.add("FP16")
    if "--precisionConstraints=obey" in argv:
        flags.add("OBEY_PRECISION_CONSTRAINTS")
    if "--versionCompatible" in argv:
        flags.add("VERSION_COMPATIBLE")
    if any(a.startswith("--useDLACore=") for a in argv):
        if version_key(version) < (11, 0):
            flags |= {"PREFER_PRECISION_CONSTRAINTS", "FP16"}  # FP16 unless --int8
        flags.add("GPU_FALLBACK" if "--allowGPUFallback" in argv else "DIRECT_IO")
    return flags


def _flags_after_build(trt) -> set:
    state = {"TF32"}  # on by default in every version
    for c in trt.fake.calls:
        if c.name == "IBuilderConfig.set_flag":
            state.add(c.args["flag"].name)
        elif c.name == "IBuilderConfig.clear_flag":
            state.discard(c.args["flag"].name)
    return state


@pytest.mark.parametrize("fake_trt", DLA_WEAK, indirect=True)
@pytest.mark.parametrize("fallback", [True, False])
def test_api_dla_build_is_the_printed_trtexec_build(dirs, fake_trt, fallback):
    trt, version = fake_trt, fake_trt.__version__
    trt.fake.dla_cores = 2
    if not fallback:
        trt.fake.not_on_dla_ops = ()  # every layer runs on DLA: a build without fallback succeeds
    plan = plan_for(dirs["fp16"], short(version), dla_core=1, gpu_fallback=fallback)
    built = _build(plan, trt, dirs["fp16"])
    assert [v.name for v in trt.fake.values_set("IBuilderConfig.default_device_type")] == ["DLA"]
    assert trt.fake.values_set("IBuilderConfig.DLA_core") == [1]
    assert _flags_after_build(trt) == trtexec_builder_flags(trtexec_argv(plan), version)
    assert ("DIRECT_IO" in trt.fake.flag_names()) is (not fallback)
    placed = {
        c["layer"].name for c in trt.fake.calls_to("IBuilderConfig.set_device_type") if c["device_type"].name == "GPU"
    }
    assert placed == set(FP32_NODES)  # DLA has no fp32: the pinned layers go to the GPU explicitly
    assert built.dla_fallback_layers == (["node_hswish"] if fallback else [])
    assert trt.fake.values_set("Runtime.DLA_core") == [1]  # the layer information loads it like trtexec
    assert read_fake_engine(built.engine)["dla_core"] == 1


@pytest.mark.parametrize("fake_trt", DLA_WEAK, indirect=True)
def test_api_dla_errors(dirs, fake_trt):
    version = short(fake_trt.__version__)
    plan = plan_for(dirs["fp16"], version, dla_core=1)
    with pytest.raises(MissingRuntime, match="no DLA cores"):
        _build(plan, fake_trt, dirs["fp16"])
    fake_trt.fake.dla_cores = 1
    with pytest.raises(BadInput, match="1 DLA core"):
        _build(plan, fake_trt, dirs["fp16"])
    fake_trt.fake.dla_cores = 2
    with pytest.raises(BadInput, match="--gpu-fallback"):
        _build(plan_for(dirs["fp16"], version, dla_core=0, gpu_fallback=False), fake_trt, dirs["fp16"])


@pytest.mark.parametrize("fake_trt", ["11.4.0.106"], indirect=True)
def test_api_dla_on_11_4_is_strong_with_no_weak_flags(dirs, fake_trt):
    fake_trt.fake.dla_cores = 2
    fake_trt.fake.not_on_dla_ops = ()
    plan = plan_for(dirs["fp16"], "11.4", dla_core=0, gpu_fallback=False)
    _build(plan, fake_trt, dirs["fp16"])
    assert _flags_after_build(fake_trt) == trtexec_builder_flags(trtexec_argv(plan), "11.4") == {"DIRECT_IO"}


def test_dla_with_strong_typing_is_refused_where_trtexec_calls_it_invalid(dirs):
    for version in ("10.0", "10.3", "10.7"):
        error = _bad(dirs["fp16"], version, dla_core=0, typing="strong")
        assert "Invalid usage" in error.problem and "--typing strong" in error.fix
    assert plan_for(dirs["fp16"], "11.4", dla_core=0, typing="strong").typing == "strong"
    plan = plan_for(dirs["fp16"], "10.3", dla_core=0)
    assert plan.prefer_precision_constraints and plan.fp16_flag and not plan.direct_io
    assert plan_for(dirs["fp16"], "10.3", dla_core=0, gpu_fallback=False).direct_io
    assert not plan_for(dirs["fp16"], "10.3").prefer_precision_constraints


@pytest.mark.parametrize("fake_trt", FAKE_VERSIONS, indirect=True)
def test_api_failures(dirs, fake_trt):
    version = short(fake_trt.__version__)
    plan = plan_for(dirs["fp16"], version)
    fake_trt.fake.unsupported_ops = ("Resize",)
    with pytest.raises(BadInput, match="could not parse.*Resize"):
        _build(plan, fake_trt, dirs["fp16"])
    fake_trt.fake.unsupported_ops = ()
    fake_trt.fake.build_ok = False
    with pytest.raises(CheckFailed, match="could not build"):
        _build(plan, fake_trt, dirs["fp16"])


@pytest.mark.parametrize("fake_trt", WEAK, indirect=True)
def test_api_no_pinned_layer_found_is_an_error(dirs, fake_trt):
    weak = plan_for(dirs["fp16"], short(fake_trt.__version__), typing="weak")
    plan = dataclasses.replace(weak, layer_precisions=(("not_a_node", "fp32"),), layer_output_types=())
    with pytest.raises(CheckFailed, match="none of the"):
        _build(plan, fake_trt, dirs["fp16"])


def _network(trt, names):
    def output(n):
        return trt.fake.new("ITensor", name=f"{n}:0", shape=[1], dtype=trt.fake.member("DataType", "FLOAT"))

    layers = [trt.fake.new("ILayer", name=n, op_type="Add", inputs=[], outputs=[output(n)]) for n in names]
    return trt.fake.new("INetworkDefinition", flags=0, layers=layers, inputs=[], outputs=[])


@pytest.mark.parametrize("fake_trt", WEAK, indirect=True)
def test_suffix_pinning_skips_layers_named_after_other_nodes(dirs, fake_trt):
    plan = dataclasses.replace(plan_for(dirs["fp16"], "8.6"), layer_precisions=(("n0", "fp32"),), layer_output_types=())
    names = ("n0", "n0_2", "n0_9", "n0_2_5")
    pinned, unmatched = engine_mod.pin_layers(fake_trt, _network(fake_trt, names), plan, onnx_node_names={"n0", "n0_2"})
    assert pinned == ["n0", "n0_9"] and unmatched == [] and _pinned(fake_trt) == ["n0", "n0_9"]
    pinned, _ = engine_mod.pin_layers(fake_trt, _network(fake_trt, names), plan)  # no node names: exact names only
    assert pinned == ["n0"]


# --- loading engines: runtime.deserialize_engine, the one loader ----------------------------------------


@pytest.mark.parametrize("fake_trt", versions_where(lambda v: v >= (8, 6)), indirect=True)
def test_version_compatible_engines_load_only_with_host_code_allowed(dirs, fake_trt):
    trt = fake_trt
    built = _build(plan_for(dirs["fp32"], short(trt.__version__), version_compatible=True), trt)
    assert trt.Runtime(trt.Logger()).deserialize_cuda_engine(built.engine) is None  # what happened before the loader
    with pytest.raises(BadInput, match="could not load"):
        runtime_mod.deserialize_engine(trt, b"not an engine")
    engine = runtime_mod.deserialize_engine(trt, built.engine, version_compatible=True)
    assert engine.num_io_tensors == 2 and engine.get_tensor_name(0) == "input"
    assert trt.fake.values_set("Runtime.engine_host_code_allowed")[-1] is True


@pytest.mark.parametrize("fake_trt", DLA_WEAK, indirect=True)
def test_dla_engines_load_on_their_core(dirs, fake_trt):
    trt = fake_trt
    trt.fake.dla_cores = 2
    built = _build(plan_for(dirs["fp16"], short(trt.__version__), dla_core=1), trt, dirs["fp16"])
    with pytest.raises(BadInput, match="could not load"):
        runtime_mod.deserialize_engine(trt, built.engine)  # DLA_core left unset
    engine = runtime_mod.deserialize_engine(trt, built.engine, dla_core=1)
    assert engine.get_tensor_mode("logits") == trt.TensorIOMode.OUTPUT
    with pytest.raises(BadInput, match="2 DLA core"):
        runtime_mod.deserialize_engine(trt, built.engine, dla_core=2)


@pytest.mark.parametrize("fake_trt", FAKE_VERSIONS, indirect=True)
def test_an_engine_from_another_version_is_refused_with_a_fix(dirs, fake_trt):
    other = next(v for v in FAKE_VERSIONS if short(v) != short(fake_trt.__version__))
    data = _build(plan_for(dirs["fp32"], short(other)), make_fake_tensorrt(other)).engine
    with pytest.raises(BadInput) as info:
        runtime_mod.deserialize_engine(fake_trt, data)
    assert fake_trt.__version__ in info.value.problem and "msla-deploy build" in info.value.fix


def _load_options(engine: Path):
    """What runtime.open passes to the loader for an engine: its build record, read by the artifact layer."""
    record = resolve(engine).build_record(engine)
    return {
        "version_compatible": bool(record and record.version_compatible),
        "dla_core": record.dla_core if record else None,
    }


@pytest.mark.parametrize("fake_trt", DLA_WEAK, indirect=True)
def test_build_records_say_how_to_load_the_engine(tmp_path, fake_trt):
    fake_trt.fake.dla_cores = 2
    directory = make_export_dir(tmp_path / "e", "fp16")
    compatible = run_build(BuildOptions(source=directory, version_compatible=True))
    dla = run_build(BuildOptions(source=directory, dla_core=1))
    for result, expected in (
        (compatible, {"version_compatible": True, "dla_core": None}),
        (dla, {"version_compatible": False, "dla_core": 1}),
    ):
        engine = Path(result.plan.engine)
        assert _load_options(engine) == expected
        assert runtime_mod.deserialize_engine(fake_trt, engine.read_bytes(), **expected).num_io_tensors == 2


@pytest.mark.parametrize("fake_trt", FAKE_VERSIONS, indirect=True)
def test_runtime_open_loads_the_engines_build_wrote(tmp_path, fake_trt):
    """build --version-compatible / --dla-core, then runtime.open(engine, "trt"): loaded as trtexec loads them."""
    from msla_deploy import runtime

    directory = make_export_dir(tmp_path / "e", "fp16")
    fake_trt.fake.dla_cores = 2
    builds = [run_build(BuildOptions(source=directory, version_compatible=True))]
    if version_key(fake_trt.__version__) < (10, 8):
        builds.append(run_build(BuildOptions(source=directory, dla_core=1)))
    for result in builds:
        session = runtime.open(Path(result.plan.engine), "trt")
        assert list(session.inputs) == ["input"] and session.outputs["logits"].shape == (1, 8, 64, 64)
        assert session.describe()["version"] == fake_trt.__version__
    # once when build reads the layer information, once when runtime.open loads the engine
    assert fake_trt.fake.values_set("Runtime.engine_host_code_allowed") == [True, True]
    assert fake_trt.fake.values_set("Runtime.DLA_core") == ([1, 1] if len(builds) == 2 else [])


# --- the plan validate and bench build from (build.plan_for_runtime) ------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_plan_for_runtime_decides_the_graph_from_the_version(dirs, version):
    plan = plan_for_runtime(dirs["fp16"], version)
    assert plan == plan_for(dirs["fp16"], version)  # exactly what `build` plans with default options
    if version in ("8.5", "8.6", "10.3"):  # no strong typing before 9.0; weak (the default) before 10.12
        assert plan.typing == "weak" and plan.onnx.name == "model_fp32.onnx" and plan.fp16_flag
        assert [n for n, _ in plan.layer_precisions] == FP32_NODES
    else:
        assert plan.typing == "strong" and plan.onnx.name == "model.onnx" and not plan.fp16_flag
    assert plan_for_runtime(dirs["fp32"], version).precision == "fp32"


@pytest.mark.parametrize("version", ["8.5", "8.6"])
def test_plan_for_runtime_refuses_a_bare_mixed_precision_onnx_on_8(dirs, version):
    with pytest.raises(BadInput) as info:
        plan_for_runtime(dirs["fp16"] / "model.onnx", version)
    assert "mixed-precision" in info.value.problem and "model_fp32.onnx" in info.value.fix


@pytest.mark.parametrize("fake_trt", FAKE_VERSIONS, indirect=True)
def test_build_for_runtime_builds_the_installed_versions_plan(dirs, fake_trt):
    plan, built = build_for_runtime(fake_trt, dirs["fp16"])
    assert plan.trt_version == short(fake_trt.__version__)
    engine = runtime_mod.deserialize_engine(fake_trt, built.engine)
    assert [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)] == ["input", "logits"]
    assert read_fake_engine(built.engine)["strongly_typed"] is (plan.typing == "strong")
    if plan.typing == "weak":
        assert set(FP32_NODES) <= set(built.pinned_layers)
    assert not (dirs["fp16"] / plan.engine.name).exists()  # nothing written


# --- the whole build, with the fake TensorRT installed and a fake GPU ----------------------------------------


def test_run_build_writes_engine_layer_info_cache_and_manifest(tmp_path, fake_trt):
    version = short(fake_trt.__version__)
    directory = make_export_dir(tmp_path / "e", "fp16")
    seen = []
    run_build(BuildOptions(source=directory), on_plan=seen.append)  # tensorrt and the GPU probe are the fakes
    typing = "strong" if version_key(fake_trt.__version__) >= (10, 12) else "weak"
    assert seen and seen[0].plan.typing == typing
    engine = directory / f"model_fp16_trt{version}.engine"
    assert read_fake_engine(engine.read_bytes())["tensorrt"] == fake_trt.__version__
    assert json.loads((directory / f"model_fp16_trt{version}.layers.json").read_text())["Layers"]
    assert (directory / f"timing_trt{version}.cache").read_bytes().startswith(b"FAKE-TRT-CACHE")
    manifest = read_manifest(directory)
    assert manifest["model"] == {"name": "tiny"}  # the export's content is kept
    record = manifest["builds"][0]
    assert record["engine"] == {"file": engine.name, "sha256": sha256_file(engine), "bytes": engine.stat().st_size}
    assert (
        record["tensorrt"]["version"] == fake_trt.__version__
        and record["gpu"]["compute_capability"] == FAKE_GPU.compute_capability
    )
    assert record["plan"]["builder_flags"]["fp16"] is (typing == "weak")
    assert record["plan"]["onnx"] == ("model_fp32.onnx" if typing == "weak" else "model.onnx")
    assert record["timing_cache"]["sha256"] == sha256_file(directory / f"timing_trt{version}.cache")
    assert record["trtexec_equivalent"].startswith("trtexec --onnx=")
    if typing == "weak":
        assert set(record["fp32_layers"]["pinned"]) >= set(FP32_NODES)
    run_build(BuildOptions(source=directory))  # a second build loads the cache and appends
    builds = read_manifest(directory)["builds"]
    assert len(builds) == 2 and builds[1]["timing_cache"]["loaded"] is True


@pytest.mark.parametrize("fake_trt", versions_where(lambda v: v >= (10, 12)), indirect=True)
def test_run_build_bare_onnx_writes_build_json(tmp_path, fake_trt):
    directory = make_export_dir(tmp_path / "b", "fp16")
    result = run_build(BuildOptions(source=directory / "model.onnx", version_compatible=True))
    assert result.record_path == directory / "build.json"
    data = json.loads(result.record_path.read_text())
    assert data["builds"][0]["plan"]["typing"] == "strong"
    assert "builds" not in read_manifest(directory)
    assert _load_options(result.plan.engine) == {"version_compatible": True, "dla_core": None}  # found in build.json


def test_run_build_checks_before_needing_tensorrt(dirs, monkeypatch):
    def no_trt():
        raise AssertionError("TensorRT must not be needed to reject this")

    # an impossible plan for an explicit version is exit 2 even without TensorRT
    with pytest.raises(BadInput, match="removed in TensorRT 11.0"):
        run_build(
            BuildOptions(source=dirs["fp16"], trt_version="11.4", typing="weak", precision="fp16"), gpu_probe=no_trt
        )
    with pytest.raises(BadInput, match="0..5"):
        run_build(BuildOptions(source=dirs["fp16"], opt_level=9), gpu_probe=no_trt)
    # an engine only runs on the TensorRT that built it
    install_fake_tensorrt(monkeypatch, "10.3.0")
    with pytest.raises(BadInput, match="is installed"):
        run_build(BuildOptions(source=dirs["fp16"], trt_version="8.6"), gpu_probe=no_trt)


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
    code = (
        BLOCK_TORCH
        + f"""
from pathlib import Path
import msla_deploy.trt, msla_deploy.trt.command, msla_deploy.trt.engine, msla_deploy.trt.dla
from msla_deploy.trt import BuildOptions, load_model_input, make_plan, parse_version, trtexec_argv
from msla_deploy.trt.dla import preflight
d = Path({str(dirs["fp16"])!r})
plan = make_plan(BuildOptions(source=d, dla_core=0), load_model_input(d), parse_version("10.3"))
print(" ".join(trtexec_argv(plan)))
print(preflight(plan.onnx).counts())
heavy = sorted(m for m in sys.modules if "torch" in m or "tensorrt" in m)
assert "torch" not in sys.modules and "tensorrt" not in sys.modules, heavy
"""
    )
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
@pytest.mark.tensorrt
@pytest.mark.gpu
def test_real_tensorrt_build(tmp_path, kind, precision):
    trt = pytest.importorskip("tensorrt", reason="TensorRT is not installed on this machine")
    _gpu_or_skip()
    directory = make_export_dir(tmp_path / kind, kind)
    result = run_build(BuildOptions(source=directory, precision=precision))
    engine_bytes = Path(result.plan.engine).read_bytes()
    engine = runtime_mod.deserialize_engine(
        trt, engine_bytes, version_compatible=result.plan.version_compatible, dla_core=result.plan.dla_core
    )
    assert engine.num_io_tensors >= 2
    assert result.record["engine"]["sha256"] == sha256_file(Path(result.plan.engine))
    if precision == "fp16" and result.plan.typing == "weak":
        assert result.record["fp32_layers"]["pinned"], "the attention nodes must be pinned to fp32"
