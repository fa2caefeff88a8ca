"""`msla-deploy inspect`: fp16 hazards and TensorRT/DLA preflight, on hand-built graphs (exact) and
on real exports (the failure modes users meet: a naive export of upstream-structured code)."""

from __future__ import annotations

import copy
import io
import json
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from msla_deploy.cli import app
from msla_deploy.errors import BadInput
from msla_deploy.inspect import inspect_onnx
from msla_deploy.inspect.hazards import LONG_REDUCTION_ERROR
from tests.fixtures import export_random_b0

F16, F32 = TensorProto.FLOAT16, TensorProto.FLOAT
UPSTREAM_CONFIG = {"in_channels": 64, "out_channels": 64, "dim": 16, "scales": [5]}


# ---- hand-built graphs -----------------------------------------------------------------------------
def _model(nodes, inputs, outputs, initializers=(), opset=17, metadata=None) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    for key, value in (metadata or {}).items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model, full_check=True)
    return model


def _axes(name="axes"):
    return numpy_helper.from_array(np.array([-1], dtype=np.int64), name)


def _div_by_sum(eps=None, island=False, metadata=None) -> onnx.ModelProto:
    """y = x / (ReduceSum(x) [+ eps]) on fp16 input; island: the sum and division run in fp32."""
    x = helper.make_tensor_value_info("x", F16, [1, 4, 64])
    y = helper.make_tensor_value_info("y", F16, [1, 4, 64])
    inits, nodes = [_axes()], []
    src, dtype = "x", np.float16
    if island:
        nodes.append(helper.make_node("Cast", ["x"], ["x32"], to=F32, name="to_fp32"))
        src, dtype = "x32", np.float32
    nodes.append(helper.make_node("ReduceSum", [src, "axes"], ["s"], keepdims=1, name="sum"))
    den = "s"
    if eps is not None:
        inits.append(numpy_helper.from_array(np.array([eps], dtype=dtype), "eps"))
        nodes.append(helper.make_node("Add", ["s", "eps"], ["den"], name="add_eps"))
        den = "den"
    nodes.append(helper.make_node("Div", [src, den], ["q" if island else "y"], name="div"))
    if island:
        nodes.append(helper.make_node("Cast", ["q"], ["y"], to=F16, name="to_fp16"))
    return _model(nodes, [x], [y], inits, metadata=metadata)


def _matmul(tokens: int, constant_b: bool = False) -> onnx.ModelProto:
    a = helper.make_tensor_value_info("a", F16, [1, 16, tokens])
    y = helper.make_tensor_value_info("y", F16, [1, 16, 16])
    inputs, inits = [a], []
    if constant_b:
        inits.append(numpy_helper.from_array(np.ones((1, tokens, 16), np.float16), "b"))
    else:
        inputs.append(helper.make_tensor_value_info("b", F16, [1, tokens, 16]))
    return _model([helper.make_node("MatMul", ["a", "b"], ["y"], name="kv")], inputs, [y], inits)


def _relu(opset=17, dims=(1, 3, 8, 8)) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", F32, list(dims))
    y = helper.make_tensor_value_info("y", F32, list(dims))
    return _model([helper.make_node("Relu", ["x"], ["y"], name="relu")], [x], [y], opset=opset)


def _resize(mode: str) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", F32, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", F32, [1, 3, 16, 16])
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode=mode, name="up")
    return _model([node], [x], [y], [scales])


def _checks(report, severity="errors"):
    return [f.check for f in getattr(report, severity)]


# ---- fp16 hazards ------------------------------------------------------------------------------------
def test_division_by_a_sum_without_eps_is_an_error():
    report = inspect_onnx(_div_by_sum())
    assert _checks(report) == ["missing-eps"]
    assert report.errors[0].node == "div" and "ReduceSum" in report.errors[0].detail


def test_fp16_eps_of_1e_15_underflows():
    report = inspect_onnx(_div_by_sum(eps=1e-15))
    assert _checks(report) == ["eps-underflow"]
    assert report.errors[0].node == "add_eps"
    # an eps fp16 can hold is fine
    assert inspect_onnx(_div_by_sum(eps=1e-3)).passed


def test_fp32_island_is_safe_when_strongly_typed_but_not_in_a_weak_build():
    island = _div_by_sum(eps=1e-15, island=True)
    for target in (None, "10.13", "11"):  # strongly typed: the island's types hold
        report = inspect_onnx(island, target=target)
        assert report.passed, (target, [f.detail for f in report.errors])
        assert report.info["precision"]["typing"] == "strong"
    # TensorRT 8.6 has no strongly typed mode: the island stays fp32 only where pinned
    weak = inspect_onnx(island, target="8.6")
    assert weak.info["precision"]["typing"] == "weak"
    assert _checks(weak) == ["eps-underflow"]
    pinned = _div_by_sum(eps=1e-15, island=True, metadata={"msla_deploy.fp32_nodes": "sum, add_eps,div"})
    assert inspect_onnx(pinned, target="8.6").passed


def test_divisions_that_cannot_be_0_over_0_are_not_flagged():
    x = helper.make_tensor_value_info("x", F16, [1, 4, 64])
    y = helper.make_tensor_value_info("y", F16, [1, 4, 64])
    zero = numpy_helper.from_array(np.zeros(1, np.float16), "zero")
    softmax = _model(  # a sum of exponentials is > 0
        [
            helper.make_node("Exp", ["x"], ["e"]),
            helper.make_node("ReduceSum", ["e", "axes"], ["s"]),
            helper.make_node("Div", ["e", "s"], ["y"]),
        ],
        [x],
        [y],
        [_axes()],
    )
    plain = _model(  # dividing by an input plus 0 is not a normaliser without its eps
        [helper.make_node("Add", ["x", "zero"], ["d"]), helper.make_node("Div", ["x", "d"], ["y"])], [x], [y], [zero]
    )
    assert not inspect_onnx(softmax).findings and not inspect_onnx(plain).findings


def test_long_fp16_contraction_is_a_reduction_hazard():
    long = inspect_onnx(_matmul(8192))
    assert _checks(long) == ["long-reduction"] and "8192" in long.errors[0].detail
    assert not inspect_onnx(_matmul(64)).findings
    assert _checks(inspect_onnx(_matmul(2048)), "warnings") == ["long-reduction"]
    # a matmul with weights is a layer, like a convolution: not a token sum
    assert not inspect_onnx(_matmul(LONG_REDUCTION_ERROR * 2, constant_b=True)).findings


def _scaled_matmul(tokens: int, scale_a=None, scale_b=None, swap=False, scale_dtype=np.float16) -> onnx.ModelProto:
    """LiteMLA's kv = v @ k^T with v and/or k multiplied by a scalar constant first (k is Transposed
    after its Mul, as in the export); swap: the constant is the Mul's first operand; scale_dtype
    float32: the Mul runs in fp32 between Casts."""
    v = helper.make_tensor_value_info("v", F16, [1, 16, tokens])
    k = helper.make_tensor_value_info("k", F16, [1, 16, tokens])
    y = helper.make_tensor_value_info("y", F16, [1, 16, 16])
    nodes, inits, names = [], [], {}
    for src, scale in (("v", scale_a), ("k", scale_b)):
        names[src] = src
        if scale is not None:
            inits.append(numpy_helper.from_array(np.array(scale, dtype=scale_dtype), f"c_{src}"))
            if scale_dtype == np.float32:  # the Mul in fp32, between Casts: the scale still applies
                nodes.append(helper.make_node("Cast", [src], [f"{src}32"], to=F32, name=f"{src}_to_fp32"))
                src_in = f"{src}32"
            else:
                src_in = src
            operands = [f"c_{src}", src_in] if swap else [src_in, f"c_{src}"]
            nodes.append(helper.make_node("Mul", operands, [f"{src}_s"], name=f"scale_{src}"))
            names[src] = f"{src}_s"
            if scale_dtype == np.float32:
                nodes.append(helper.make_node("Cast", [f"{src}_s"], [f"{src}_s16"], to=F16, name=f"{src}_to_fp16"))
                names[src] = f"{src}_s16"
    nodes.append(helper.make_node("Transpose", [names["k"]], ["kt"], perm=[0, 2, 1], name="kt"))
    nodes.append(helper.make_node("MatMul", [names["v"], "kt"], ["y"], name="kv"))
    return _model(nodes, [v, k], [y], inits)


def test_scaled_long_contraction_is_safe():
    tokens = 8192
    inv_root = 1.0 / np.sqrt(tokens)
    # LiteMLA's token scaling: k and v each times 1/sqrt(N) (kv: scale 1/N), either operand order,
    # the scale stored in fp16 (0.01105, a hair above 1/sqrt(8192)) or fp32
    for swap in (False, True):
        for dtype in (np.float16, np.float32):
            report = inspect_onnx(_scaled_matmul(tokens, inv_root, inv_root, swap=swap, scale_dtype=dtype))
            assert not report.findings, (swap, dtype, [f.detail for f in report.findings])
            assert any("kv (8192 terms" in n for n in report.info["notes"])
    # one input scaled by 1/sqrt(L): the product is 1/sqrt(L), the bound itself (the sum grows like
    # sqrt(L) * mean|term|, the same bound as a ReduceSum of k / sqrt(N)): safe by the rule
    assert not inspect_onnx(_scaled_matmul(tokens, inv_root, None)).findings
    # one input scaled by less than that, or by too little on both: still an error
    assert _checks(inspect_onnx(_scaled_matmul(tokens, 2 * inv_root, None))) == ["long-reduction"]
    assert _checks(inspect_onnx(_scaled_matmul(tokens, None, 0.5))) == ["long-reduction"]
    assert _checks(inspect_onnx(_scaled_matmul(tokens, 0.2, 0.5))) == ["long-reduction"]  # 0.1 > 0.011
    # unscaled: an error as before
    assert _checks(inspect_onnx(_scaled_matmul(tokens))) == ["long-reduction"]


def test_scaled_long_reduce_sum_is_safe():
    tokens = 8192
    x = helper.make_tensor_value_info("x", F16, [1, 16, tokens])
    y = helper.make_tensor_value_info("y", F16, [1, 16, 1])

    def reduce_sum(scale):
        nodes, inits = [], [_axes()]
        src = "x"
        if scale is not None:
            inits.append(numpy_helper.from_array(np.array([scale], np.float16), "c"))
            nodes += [
                helper.make_node("Mul", ["x", "c"], ["xs"], name="scale"),
                helper.make_node("Cast", ["xs"], ["xc"], to=F16, name="same_type"),
            ]
            src = "xc"
        nodes.append(helper.make_node("ReduceSum", [src, "axes"], ["y"], keepdims=1, name="k_sum"))
        return _model(nodes, [x], [y], inits)

    assert not inspect_onnx(reduce_sum(1.0 / np.sqrt(tokens))).findings
    assert _checks(inspect_onnx(reduce_sum(0.1))) == ["long-reduction"]
    assert _checks(inspect_onnx(reduce_sum(None))) == ["long-reduction"]


def _mul_by_constant(value, dtype=np.float16, op="Mul", constant_node=False, via_cast=False) -> onnx.ModelProto:
    """y = x * c on fp16 x, c stored as an initializer or a Constant node (optionally fp32, Cast to fp16)."""
    x = helper.make_tensor_value_info("x", F16, [1, 4])
    y = helper.make_tensor_value_info("y", F16, [1, 4])
    with np.errstate(over="ignore"):
        tensor = numpy_helper.from_array(np.array([value], dtype=dtype), "c")
    nodes, inits = [], []
    if constant_node:
        nodes.append(helper.make_node("Constant", [], ["c"], value=tensor, name="const"))
    else:
        inits.append(tensor)
    c = "c"
    if via_cast:
        nodes.append(helper.make_node("Cast", ["c"], ["c16"], to=F16, name="to_fp16"))
        c = "c16"
    nodes.append(helper.make_node(op, ["x", c], ["y"], name="scale_by_c"))
    return _model(nodes, [x], [y], inits)


def test_fp16_constant_that_is_inf_or_nan_is_an_error():
    for constant_node in (False, True):
        report = inspect_onnx(_mul_by_constant(1e5, constant_node=constant_node))  # model.half() of y * 1e5
        assert _checks(report) == ["fp16-overflow"], constant_node
        assert report.errors[0].node == "scale_by_c" and report.errors[0].op == "Mul"
        assert "inf" in report.errors[0].detail
    # an fp32 1e5 folded to fp16 by a Cast is the same inf
    assert _checks(inspect_onnx(_mul_by_constant(1e5, dtype=np.float32, via_cast=True))) == ["fp16-overflow"]
    nan = inspect_onnx(_mul_by_constant(np.nan, op="Add"))
    assert _checks(nan) == ["fp16-overflow"] and "NaN" in nan.errors[0].detail
    assert inspect_onnx(_mul_by_constant(1e4)).passed  # 1e4 fits fp16
    assert not inspect_onnx(_mul_by_constant(np.inf, op="Max")).findings  # an infinite bound is no bound


def test_fp16_inf_constant_names_its_module():
    model = _mul_by_constant(1e5)
    model.graph.node[0].name = "/head/scale/Mul"  # the legacy exporter's node naming
    error = inspect_onnx(model).errors[0]
    assert error.check == "fp16-overflow" and error.module == "head.scale" and error.module_source == "node_name"


def test_fp32_graph_is_only_at_risk_when_built_fp16():
    x = helper.make_tensor_value_info("x", F32, [1, 4, 64])
    y = helper.make_tensor_value_info("y", F32, [1, 4, 64])
    eps = numpy_helper.from_array(np.array([1e-15], np.float32), "eps")
    model = _model(
        [
            helper.make_node("ReduceSum", ["x", "axes"], ["s"], name="sum"),
            helper.make_node("Add", ["s", "eps"], ["den"], name="add_eps"),
            helper.make_node("Div", ["x", "den"], ["y"], name="div"),
        ],
        [x],
        [y],
        [_axes(), eps],
    )
    assert inspect_onnx(model).passed  # fp32 build
    assert _checks(inspect_onnx(model, precision="fp16")) == ["eps-underflow"]
    # TensorRT 11 has no FP16 flag: the fp16 intent itself is the error
    assert _checks(inspect_onnx(model, target="11", precision="fp16")) == ["precision"]


def test_batchnorm_with_dead_channel_overflows_in_fp16():
    x = helper.make_tensor_value_info("x", F16, [1, 2, 4, 4])
    y = helper.make_tensor_value_info("y", F16, [1, 2, 4, 4])
    params = [
        numpy_helper.from_array(np.array(v, np.float16), n)
        for n, v in (("g", [1, 100]), ("b", [0, 0]), ("m", [0, 0]), ("v", [1, 0]))
    ]
    node = helper.make_node("BatchNormalization", ["x", "g", "b", "m", "v"], ["y"], epsilon=1e-7, name="bn")
    report = inspect_onnx(_model([node], [x], [y], params))
    assert "bn-variance" in _checks(report)  # 100 / sqrt(0 + 1e-7) = 3.2e5 > 65504


# ---- preflight ---------------------------------------------------------------------------------------
def test_opset_above_the_parser_is_an_error():
    assert _checks(inspect_onnx(_relu(opset=18), target="8.6")) == ["opset"]
    assert inspect_onnx(_relu(opset=18), target="10.3").passed
    assert _checks(inspect_onnx(_relu(opset=21), target="10.3")) == ["opset"]


def test_cubic_resize_per_version():
    # 8.5's operator matrix lists nearest/linear only, but its parser source imports cubic:
    # a warning to verify on the device, not a failure
    old = inspect_onnx(_resize("cubic"), target="8.5")
    assert old.passed and _checks(old, "warnings") == ["op-attribute"]
    assert "nearest and linear" in old.warnings[0].detail
    new = inspect_onnx(_resize("cubic"), target="8.6")
    assert not new.findings and any("cubic" in n for n in new.info["notes"])
    assert not inspect_onnx(_resize("linear"), target="8.5").findings


def test_unsupported_operator_per_version():
    x = helper.make_tensor_value_info("x", F32, [1, 4, 8])
    y = helper.make_tensor_value_info("y", F32, [1, 4, 8])
    inits = [
        numpy_helper.from_array(np.ones(8, np.float32), "s"),
        numpy_helper.from_array(np.zeros(8, np.float32), "b"),
    ]
    model = _model([helper.make_node("LayerNormalization", ["x", "s", "b"], ["y"], name="ln")], [x], [y], inits)
    assert _checks(inspect_onnx(model, target="8.5")) == ["unsupported-op"]
    assert inspect_onnx(model, target="8.6").passed


def test_dynamic_dims_warn_and_fail_for_dla():
    dynamic = _relu(dims=("N", 3, 8, 8))
    report = inspect_onnx(dynamic, target="8.6")
    assert report.passed and _checks(report, "warnings") == ["dynamic-shape"]
    assert "dla-shape" in _checks(inspect_onnx(dynamic, target="8.6", dla=True))


def test_bad_options_are_bad_input():
    with pytest.raises(BadInput, match="--target-trt"):
        inspect_onnx(_relu(), target="9.9")
    with pytest.raises(BadInput, match="--dla needs --target-trt"):
        inspect_onnx(_relu(), dla=True)
    with pytest.raises(BadInput, match="float16"):
        inspect_onnx(_div_by_sum(), precision="fp32")


# ---- real exports ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def upstream_exports(tmp_path_factory):
    """Upstream-structured LiteMLA exported the naive ways: legacy fp32, the same blindly converted
    to fp16, and torch's default (dynamo) exporter."""
    torch = pytest.importorskip("torch")
    from tests.upstream_litemla import build_upstream_like

    class Wrapper(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.att = build_upstream_like(UPSTREAM_CONFIG)

        def forward(self, x):
            return self.att(x)

    torch.manual_seed(0)
    model = Wrapper().eval()
    example = torch.randn(1, 64, 16, 16)  # 256 tokens > dim 16: the linear branch with its `+ eps`
    out = {}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        buffer = io.BytesIO()
        torch.onnx.export(
            model, (example,), buffer, dynamo=False, opset_version=17, input_names=["x"], output_names=["y"]
        )
        out["legacy"] = onnx.load_from_string(buffer.getvalue())
        # the dynamo exporter keeps opset 18 for this model's Pad when asked for 17
        out["dynamo"] = torch.onnx.export(model, (example,), dynamo=True, opset_version=18, verbose=False).model_proto
    out["blind_fp16"] = _blind_fp16(out["legacy"])
    return out


def _blind_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """What a naive fp16 converter does: every float constant, cast and value to float16."""
    model = copy.deepcopy(model)
    graph = model.graph
    for init in graph.initializer:
        if init.data_type == F32:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name))
    for node in graph.node:
        for attr in node.attribute:
            if attr.name == "value" and attr.t.data_type == F32:
                attr.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(attr.t).astype(np.float16), attr.t.name))
            if node.op_type == "Cast" and attr.name == "to" and attr.i == F32:
                attr.i = F16
    for vi in list(graph.input) + list(graph.output):
        if vi.type.tensor_type.elem_type == F32:
            vi.type.tensor_type.elem_type = F16
    del graph.value_info[:]
    return model


def test_legacy_upstream_export_underflows_when_built_fp16(upstream_exports):
    legacy = upstream_exports["legacy"]
    assert inspect_onnx(legacy, target="8.6").passed  # fp32: the legacy exporter keeps `+ 1e-15`
    report = inspect_onnx(legacy, target="8.6", precision="fp16")
    underflow = [f for f in report.errors if f.check == "eps-underflow"]
    assert underflow and underflow[0].op == "Add"
    assert underflow[0].module == "att" and underflow[0].module_source == "node_name"


def test_blindly_converted_fp16_export_has_a_zero_eps(upstream_exports):
    report = inspect_onnx(upstream_exports["blind_fp16"])
    assert report.info["precision"]["typing"] == "strong"
    assert "eps-underflow" in _checks(report)
    assert any("0" in f.detail and f.module == "att" for f in report.errors)


def test_dynamo_upstream_export_lost_its_eps(upstream_exports):
    report = inspect_onnx(upstream_exports["dynamo"])
    missing = [f for f in report.errors if f.check == "missing-eps"]
    assert missing and missing[0].op == "Div"
    assert missing[0].module == "att" and missing[0].module_source == "name_scopes"
    assert "opset" in _checks(inspect_onnx(upstream_exports["dynamo"], target="8.6"))


@pytest.fixture(scope="module")
def b0_export(tmp_path_factory):
    pytest.importorskip("torch")
    return export_random_b0(tmp_path_factory.mktemp("inspect"), "b0") / "model.onnx"


def test_our_fp32_export_passes_fp32_targets(b0_export):
    for target in ("8.6", "10.13"):
        report = inspect_onnx(str(b0_export), target=target)
        assert report.passed, (target, [(f.check, f.detail) for f in report.errors])


def test_our_fp32_export_is_safe_in_a_weak_fp16_build_only_where_pinned(b0_export):
    model = onnx.load(str(b0_export))
    pins = {p.key: p.value for p in model.metadata_props}.get("msla_deploy.fp32_nodes")
    if pins:  # the export pins its attention islands for weakly typed builds
        assert inspect_onnx(model, target="8.6", precision="fp16").passed
    unpinned = copy.deepcopy(model)
    kept = [p for p in unpinned.metadata_props if p.key != "msla_deploy.fp32_nodes"]
    del unpinned.metadata_props[:]
    unpinned.metadata_props.extend(kept)
    report = inspect_onnx(unpinned, target="8.6", precision="fp16")
    flagged = [f for f in report.errors if f.check == "eps-underflow"]
    assert len(flagged) == 4 and {f.check for f in report.errors} == {"eps-underflow"}  # b0: 4 LiteMLA blocks
    # the module comes from the probe tensors our exporter keeps
    assert "stages.2.op_list.1.context_module.main" in flagged[0].module and flagged[0].module_source == "probe"
    unpinned.metadata_props.add(key="msla_deploy.fp32_nodes", value=",".join(f.node for f in flagged))
    assert inspect_onnx(unpinned, target="8.6", precision="fp16").passed


def test_dla_on_b0(b0_export):
    report = inspect_onnx(str(b0_export), target="8.6", dla=True)
    fallback = {f.op: f for f in report.warnings if f.check == "dla-fallback"}
    assert len(fallback["HardSwish"].nodes) == 25 and "MatMul" in fallback
    assert report.info["dla"]["fallback_by_op"]["HardSwish"] == 25
    assert "Conv" not in fallback  # b0's convolutions fit DLA's kernel/stride limits
    assert "dla-unavailable" in _checks(inspect_onnx(str(b0_export), target="10.13", dla=True))


def test_our_fp16_export_has_nothing_to_fear(tmp_path):
    pytest.importorskip("torch")
    from msla_deploy.artifact.options import ExportOptions

    options = ExportOptions(
        model="efficientvit-seg-b0-cityscapes", resolution=(64, 128), out=tmp_path / "fp16", precision="fp16"
    )
    try:
        options.check()
    except BadInput as exc:
        pytest.skip(f"fp16 export not available yet ({exc})")
    export_random_b0(tmp_path, "fp16", precision="fp16")  # options' export, with seeded random weights
    for target in (None, "8.6", "10.13", "11"):
        report = inspect_onnx(str(tmp_path / "fp16" / "model.onnx"), target=target)
        assert report.info["precision"]["assumed"] == "fp16"
        assert report.passed, (target, [(f.check, f.node, f.detail) for f in report.errors])


# ---- command line ------------------------------------------------------------------------------------
def test_cli_exit_codes_and_json(tmp_path):
    runner = CliRunner()
    good, bad, text = tmp_path / "good.onnx", tmp_path / "bad.onnx", tmp_path / "notes.onnx"
    onnx.save(_relu(), good)
    onnx.save(_div_by_sum(), bad)
    text.write_text("not a model\n")

    result = runner.invoke(app, ["inspect", str(good), "--target-trt", "8.6", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["errors"] == [] and data["info"]["target_trt"]["version"] == "8.6"

    result = runner.invoke(app, ["inspect", str(bad), "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["errors"][0]["check"] == "missing-eps"
    result = runner.invoke(app, ["inspect", str(bad)])
    assert result.exit_code == 1 and "missing-eps" in result.stdout

    for args in (
        [str(tmp_path / "absent.onnx")],
        [str(text)],
        [str(good), "--target-trt", "9.9"],
        [str(good), "--precision", "fp8"],
    ):
        result = runner.invoke(app, ["inspect", *args])
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output and result.stderr.count("\n") == 1


def test_inspect_imports_no_torch(tmp_path):
    model = tmp_path / "m.onnx"
    onnx.save(_div_by_sum(eps=1e-15), model)
    script = textwrap.dedent(f"""
        import importlib.abc, json, sys

        class NoTorch(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is blocked in this test")
                return None

        sys.meta_path.insert(0, NoTorch())
        sys.argv = ["msla-deploy", "inspect", {str(model)!r}, "--target-trt", "10.13", "--json"]
        from msla_deploy.cli import main
        try:
            main()
        except SystemExit as exc:
            code = exc.code
        assert "torch" not in sys.modules
        print("EXIT", code, file=sys.stderr)
    """)
    proc = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=120)
    assert "EXIT 1" in proc.stderr, proc.stderr
    assert json.loads(proc.stdout)["errors"][0]["check"] == "eps-underflow"
