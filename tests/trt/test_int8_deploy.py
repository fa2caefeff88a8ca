"""int8 beyond the export itself: the labels head on a Q/DQ graph, `inspect` of a Q/DQ graph, and
the build plan / trtexec line / fake-TensorRT build of an int8 export for the GPU and for DLA."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from msla_deploy.artifact.manifest import read_manifest
from msla_deploy.artifact.names import FP32_ONNX_NAME, LABELS_NAME, META_FP32_NODES, ONNX_NAME, OUTPUT_NAME
from msla_deploy.cli import app
from msla_deploy.export import int8
from msla_deploy.export.calibration import load_calibration
from tests.export.test_int8 import write_pictures

B0 = "efficientvit-seg-b0-cityscapes"
H, W = 64, 128
runner = CliRunner()


def _export(root, pictures, head: str):
    out = root / f"int8-{head}"
    result = runner.invoke(
        app,
        [
            "export",
            "-m",
            B0,
            "--res",
            f"{H}x{W}",
            "--precision",
            "int8",
            "--head",
            head,
            "--calib-images",
            str(pictures),
            "--calib-count",
            "8",
            "--out",
            str(out),
            "--models-dir",
            str(root / "no-models"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout)


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    return write_pictures(tmp_path_factory.mktemp("int8-pictures"), 8)


@pytest.fixture(scope="module")
def labels_export(tmp_path_factory, pictures):
    return _export(tmp_path_factory.mktemp("int8-labels"), pictures, "labels")


@pytest.fixture(scope="module")
def both_export(tmp_path_factory, pictures):
    return _export(tmp_path_factory.mktemp("int8-both"), pictures, "both")


# --- the labels head ------------------------------------------------------------------------------
def _head_only_graph(proto: onnx.ModelProto, logits: str, resized: str) -> onnx.ModelProto:
    """The graph's own head nodes (Resize, ArgMax, Cast) alone, fed the logits as an fp32 input."""
    head = set(int8.head_nodes(proto))
    nodes = [n for n in proto.graph.node if n.name in head]
    used = {t for n in nodes for t in n.input}
    inits = [i for i in proto.graph.initializer if i.name in used]
    graph = onnx.helper.make_graph(
        nodes,
        "head",
        [onnx.helper.make_tensor_value_info(logits, onnx.TensorProto.FLOAT, None)],
        [
            onnx.helper.make_tensor_value_info(LABELS_NAME, onnx.TensorProto.INT32, None),
            onnx.helper.make_tensor_value_info(resized, onnx.TensorProto.FLOAT, None),
        ],
        inits,
    )
    return onnx.helper.make_model(graph, opset_imports=list(proto.opset_import))


@pytest.mark.parametrize("head", ["labels", "both"])
def test_int8_labels_head_is_computed_from_the_int8_logits_in_fp32(labels_export, both_export, pictures, head):
    directory, data = labels_export if head == "labels" else both_export
    assert data["passed"]
    proto = onnx.load(str(directory / ONNX_NAME))
    assert [o.name for o in proto.graph.output] == ([LABELS_NAME] if head == "labels" else [OUTPUT_NAME, LABELS_NAME])
    head_nodes = int8.head_nodes(proto)
    ops = {n.name: n.op_type for n in proto.graph.node}
    assert sorted(ops[n] for n in head_nodes) == ["ArgMax", "Cast", "Resize"]
    # no Q/DQ anywhere in or next to the head
    producer = {o: n for n in proto.graph.node for o in n.output}
    for node in proto.graph.node:
        if node.name in head_nodes:
            assert all(producer[t].op_type not in int8.QDQ_OPS for t in node.input if t in producer), node.name
    consumers_of_head = [
        n
        for n in proto.graph.node
        if n.op_type in int8.QDQ_OPS
        and any(producer.get(t) is not None and producer[t].name in head_nodes for t in n.input)
    ]
    assert not consumers_of_head
    # manifest and metadata: the head is fp32, and a weak build pins its float nodes
    record = read_manifest(directory).precision
    info = record.extra["int8"]
    assert info["labels_head"] == {"precision": "fp32", "nodes": head_nodes}
    assert info["qdq_check"]["passed"]
    floats = [n for n in head_nodes if ops[n] != "Cast"]
    assert set(floats) <= set(record.fp32_nodes)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert set(floats) <= set(meta[META_FP32_NODES].split(","))

    # independently: the head's nodes run alone in fp32 on the int8 graph's logits give exactly its
    # resized logits and labels (the resized logits, not only the labels: random weights predict one
    # class everywhere, and any quantization between logits and argmax would change these floats)
    batches = load_calibration(pictures, H, W, count=8).batches(1)
    logits_name = int8.logits_tensor(proto)
    resize = next(n for n in proto.graph.node if n.name in head_nodes and n.op_type == "Resize")
    # the classifier conv, no DQ between
    assert resize.input[0] == logits_name and producer[logits_name].op_type == "Conv"
    logits = int8.run_batches(proto, batches)
    labels = int8.run_batches(proto, batches, LABELS_NAME)
    resized = int8.run_batches(proto, batches, resize.output[0])
    head_session = int8.session(_head_only_graph(proto, logits_name, resize.output[0]))
    again = [
        head_session.run([LABELS_NAME, resize.output[0]], {logits_name: logits[i : i + 1]}) for i in range(len(batches))
    ]
    np.testing.assert_array_equal(labels, np.concatenate([a[0] for a in again]))
    np.testing.assert_array_equal(resized, np.concatenate([a[1] for a in again]))
    assert np.ptp(resized) > 0 and labels.dtype == np.int32 and labels.shape == (8, H, W)

    # parity: labels judged vs PyTorch and vs the fp32 graph's labels on the calibration pictures
    checks = {c["label"]: c for c in data["parity"]["checks"]}
    on_pictures = {
        o["name"]: o for o in checks["ONNX Runtime int8 on the calibration pictures (vs the fp32 graph)"]["outputs"]
    }
    assert set(on_pictures) == {OUTPUT_NAME, LABELS_NAME}  # a labels-only graph: its logits tensor too
    fp32_labels = int8.run_batches(onnx.load(str(directory / FP32_ONNX_NAME)), batches, LABELS_NAME)
    assert on_pictures[LABELS_NAME]["argmax_agreement"] == pytest.approx(float((fp32_labels == labels).mean()))
    assert on_pictures[LABELS_NAME]["argmax_agreement"] >= 0.98
    vs_torch = {o["name"] for o in checks["ONNX Runtime int8"]["outputs"]}
    assert LABELS_NAME in vs_torch


def test_labels_head_graph_finds_its_logits():
    """A labels-only graph has no `logits` output: the tensor its Resize reads is the logits."""
    conv = onnx.helper.make_node("Conv", ["x", "w"], ["z"], name="conv")
    resize = onnx.helper.make_node("Resize", ["z", "", "scales"], ["up"], name="resize", mode="cubic")
    argmax = onnx.helper.make_node("ArgMax", ["up"], ["idx"], name="argmax", axis=1, keepdims=0)
    cast = onnx.helper.make_node("Cast", ["idx"], [LABELS_NAME], name="cast", to=onnx.TensorProto.INT32)
    graph = onnx.helper.make_graph(
        [conv, resize, argmax, cast],
        "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 4, 4])],
        [onnx.helper.make_tensor_value_info(LABELS_NAME, onnx.TensorProto.INT32, None)],
        [
            onnx.numpy_helper.from_array(np.ones((2, 3, 1, 1), np.float32), "w"),
            onnx.numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
        ],
    )
    model = onnx.helper.make_model(graph)
    assert int8.logits_tensor(model) == "z"
    assert int8.head_nodes(model) == ["resize", "argmax", "cast"]
    graph.output.insert(0, onnx.helper.make_tensor_value_info(OUTPUT_NAME, onnx.TensorProto.FLOAT, None))
    conv.output[0] = OUTPUT_NAME
    model = onnx.helper.make_model(
        onnx.helper.make_graph(
            [
                conv,
                onnx.helper.make_node("Resize", [OUTPUT_NAME, "", "scales"], ["up"], name="resize", mode="cubic"),
                argmax,
                cast,
            ],
            "g",
            list(graph.input),
            list(graph.output),
            list(graph.initializer),
        )
    )
    assert int8.logits_tensor(model) == OUTPUT_NAME and int8.head_nodes(model) == ["resize", "argmax", "cast"]


# --- inspect --------------------------------------------------------------------------------------
def _inspect(*args):
    result = runner.invoke(app, ["inspect", *map(str, args), "--json"])
    return result, (json.loads(result.stdout) if result.stdout.strip().startswith("{") else None)


@pytest.mark.parametrize(
    "target, dla, typing",
    [
        (None, False, "strong"),
        ("8.6", False, "weak"),
        ("10.3", False, "strong"),
        ("10.3", True, "weak"),
        ("11.4", True, "strong"),
    ],
)
def test_inspect_reads_a_qdq_graph_as_int8(labels_export, target, dla, typing):
    directory, _ = labels_export
    args = [directory] + (["--target-trt", target] if target else []) + (["--dla"] if dla else [])
    result, report = _inspect(*args)
    assert result.exit_code == 0, result.output
    info = report["info"]
    assert info["precision"]["assumed"] == "int8" and info["precision"]["typing"] == typing
    # what is quantized and what stays fp32, by PyTorch module name, as the manifest records it
    record = read_manifest(directory).precision.extra["int8"]
    assert info["int8"]["quantized_modules"] == record["quantized_modules"]
    assert info["int8"]["fp32_modules"] == record["fp32_modules"] and all(
        m.endswith(".core") for m in record["fp32_modules"]
    )
    proto = onnx.load(str(directory / ONNX_NAME))
    assert info["int8"]["quantize_nodes"] == sum(n.op_type == "QuantizeLinear" for n in proto.graph.node)
    # every conv is int8
    assert info["int8"]["int8_layers_by_op"]["Conv"] == sum(n.op_type == "Conv" for n in proto.graph.node)
    assert not report["errors"]
    # Q/DQ scales never count as fp16 arithmetic: only a weak build has fp16 nodes, and none is a Q/DQ or int8 layer
    assert (info["precision"]["fp16_nodes"] > 0) is (typing == "weak")


def test_inspect_precision_int8_needs_a_qdq_graph(labels_export):
    directory, _ = labels_export
    result = runner.invoke(app, ["inspect", str(directory / FP32_ONNX_NAME), "--precision", "int8"])
    assert result.exit_code == 2 and "no QuantizeLinear/DequantizeLinear" in result.stderr
    assert "--calib-images" in result.stderr and "Traceback" not in result.output
    result = runner.invoke(app, ["inspect", str(directory), "--precision", "fp16"])
    assert result.exit_code == 2 and "Q/DQ graph" in result.stderr
    same, auto = (
        _inspect(directory, "--precision", "int8", "--target-trt", "10.3")[1],
        _inspect(directory, "--target-trt", "10.3")[1],
    )
    assert same["info"]["precision"]["assumed"] == auto["info"]["precision"]["assumed"] == "int8"


@pytest.mark.parametrize("target", ["8.6", "10.3", "11.4"])
def test_dla_preflight_of_an_int8_graph(labels_export, target):
    directory, _ = labels_export
    result, report = _inspect(directory, "--target-trt", target, "--dla")
    assert result.exit_code == 0, result.output
    proto = onnx.load(str(directory / ONNX_NAME))
    nodes = {n.name: n.op_type for n in proto.graph.node}
    qdq = [n for n, op in nodes.items() if op in int8.QDQ_OPS]
    layers = [n for n, op in nodes.items() if op not in int8.QDQ_OPS and op not in ("Constant", "Identity")]
    dla = report["info"]["dla"]
    # Q/DQ are folded into their layers: counted apart, never as layers, never as a fallback
    assert dla["qdq_fused"] == len(qdq) > 0
    assert dla["dla"] + dla["maybe"] + dla["gpu"] == len(layers)
    fallback_nodes = {n for f in report["warnings"] if f["check"] in ("dla-fallback", "dla-maybe") for n in f["nodes"]}
    assert not fallback_nodes & set(qdq)
    gpu = {n for f in report["warnings"] if f["check"] == "dla-fallback" for n in f["nodes"]}
    # the fp32 LiteMLA cores and the labels head's float nodes cannot run on DLA (fp16/int8 only)
    fp32_nodes = set(read_manifest(directory).precision.fp32_nodes)
    assert fp32_nodes and fp32_nodes <= gpu
    producer = {o: n for n in proto.graph.node for o in n.output}
    quantized_convs = [
        n.name
        for n in proto.graph.node
        if n.op_type == "Conv"
        and any(producer.get(i) is not None and producer[i].op_type == "DequantizeLinear" for i in n.input)
    ]
    assert quantized_convs and not set(quantized_convs) & gpu  # int8 convs are DLA work
    typed = [f for f in report["warnings"] if f["check"] == "dla-int8-typed"]
    if target == "11.4":
        # strongly typed only: what the Q/DQ leave in float32 (e.g. the cores' Concat/Split, outside the pins)
        # runs on the GPU
        assert typed and set(typed[0]["nodes"]) <= gpu and not set(typed[0]["nodes"]) & set(quantized_convs)
        assert any(nodes[n] == "Concat" for n in typed[0]["nodes"])
    else:
        assert not typed  # weakly typed (--int8 --fp16): unquantized layers may run in fp16 on DLA


def _qdq_graph(zero_point, dtype, matmul_of_activations: bool):
    """x -> Q -> DQ -> (MatMul with a second dequantized activation | Relu)."""
    h = onnx.helper
    zp = onnx.numpy_helper.from_array(np.array(zero_point, dtype), "zp")
    scale = onnx.numpy_helper.from_array(np.array(0.1, np.float32), "s")
    nodes = [
        h.make_node("QuantizeLinear", ["x", "s", "zp"], ["xq"], name="q"),
        h.make_node("DequantizeLinear", ["xq", "s", "zp"], ["xd"], name="dq"),
    ]
    if matmul_of_activations:
        nodes += [
            h.make_node("QuantizeLinear", ["x", "s", "zp"], ["yq"], name="q2"),
            h.make_node("DequantizeLinear", ["yq", "s", "zp"], ["yd"], name="dq2"),
            h.make_node("MatMul", ["xd", "yd"], ["out"], name="mm"),
        ]
    else:
        nodes.append(h.make_node("Relu", ["xd"], ["out"], name="relu"))
    graph = h.make_graph(
        nodes,
        "g",
        [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [4, 4])],
        [h.make_tensor_value_info("out", onnx.TensorProto.FLOAT, [4, 4])],
        [zp, scale],
    )
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])


@pytest.mark.parametrize(
    "zero_point, dtype, matmul, check, severity",
    [
        (0, np.int8, False, None, None),
        (3, np.int8, False, "qdq", "error"),  # asymmetric
        (128, np.uint8, False, "qdq", "error"),  # uint8
        (0, np.int8, True, "int8-attention", "warning"),  # activation x activation in int8: a quantized LiteMLA core
    ],
)
def test_inspect_judges_the_qdq_nodes(tmp_path, zero_point, dtype, matmul, check, severity):
    path = tmp_path / "qdq.onnx"
    onnx.save(_qdq_graph(zero_point, dtype, matmul), str(path))
    result, report = _inspect(path, "--target-trt", "10.3")
    found = [f for f in report["errors"] + report["warnings"] if f["check"] in ("qdq", "int8-attention")]
    assert report["info"]["precision"]["assumed"] == "int8"
    if check is None:
        assert not found and result.exit_code == 0
    else:
        assert [(f["check"], f["severity"]) for f in found] == [(check, severity)]
        assert result.exit_code == (1 if severity == "error" else 0)


# --- build plan, trtexec, the fake TensorRT -------------------------------------------------------
def _plan(directory, version, **options):
    from msla_deploy.trt.inputs import load_model_input
    from msla_deploy.trt.options import BuildOptions
    from msla_deploy.trt.plan import make_plan
    from msla_deploy.trt.versions import parse_version

    model = load_model_input(directory)
    return model, make_plan(BuildOptions(source=directory, **options), model, parse_version(version))


def trtexec_flags(argv, version) -> set:
    """The BuilderFlags trtexec sets for argv (sampleEngines.cpp setupNetworkAndConfig, as
    docs/facts/tensorrt.md#trtexec-flags and trt/versions.py DLA_IMPLIES read it):
    --int8/--fp16/--precisionConstraints as given; --useDLACore adds PREFER_PRECISION_CONSTRAINTS and
    FP16 unless --int8 (before 11.0),
    GPU_FALLBACK with --allowGPUFallback, else DIRECT_IO; TF32 unless --noTF32."""
    from msla_deploy.trt.versions import parse_version

    old = parse_version(version).key < (11, 0)
    flags = set() if "--noTF32" in argv else {"TF32"}
    flags |= {"INT8"} if "--int8" in argv else set()
    flags |= {"FP16"} if "--fp16" in argv else set()
    flags |= {"OBEY_PRECISION_CONSTRAINTS"} if "--precisionConstraints=obey" in argv else set()
    if any(a.startswith("--useDLACore=") for a in argv):
        if old:
            flags.add("PREFER_PRECISION_CONSTRAINTS")
            flags |= set() if "--int8" in argv else {"FP16"}
        flags.add("GPU_FALLBACK" if "--allowGPUFallback" in argv else "DIRECT_IO")
    return flags


@pytest.mark.parametrize("version", ["8.6", "10.3", "10.7"])
def test_dla_int8_plan_is_weakly_typed_with_int8_fp16_and_gpu_fallback(labels_export, version):
    from msla_deploy.trt.trtexec import trtexec_argv

    directory, _ = labels_export
    model, plan = _plan(directory, version, dla_core=0)
    assert (plan.precision, plan.onnx_role, plan.typing) == ("int8", "int8", "weak")
    assert (
        plan.int8_flag
        and plan.fp16_flag
        and plan.gpu_fallback
        and plan.prefer_precision_constraints
        and not plan.direct_io
    )
    fp32 = set(model.fp32_nodes)
    assert {n for n, p in plan.layer_precisions} == fp32 and {p for _, p in plan.layer_precisions} == {"fp32"}
    assert dict(plan.layer_device_types) == {n: "GPU" for n in fp32}  # DLA has no fp32: placed on the GPU
    # the labels head
    assert any(n.startswith("node_upsample") for n in fp32) and any(n.startswith("node_argmax") for n in fp32)
    # the ArgMax is pinned but never retyped: TensorRT's TopK has a second, int32 output (its indices)
    assert "node_argmax" in dict(plan.layer_precisions) and "node_argmax" not in dict(plan.layer_output_types)
    assert "node_upsample_bicubic2d_2" in dict(plan.layer_output_types)
    argv = trtexec_argv(plan)
    for flag in ("--int8", "--fp16", "--precisionConstraints=obey", "--useDLACore=0", "--allowGPUFallback"):
        assert flag in argv, (flag, argv)
    assert "--stronglyTyped" not in argv
    spec = next(a for a in argv if a.startswith("--layerDeviceTypes="))
    assert {item.split(":")[0] for item in spec.split("=", 1)[1].split(",")} == fp32
    assert trtexec_flags(argv, version) == {
        "INT8",
        "FP16",
        "OBEY_PRECISION_CONSTRAINTS",
        "PREFER_PRECISION_CONSTRAINTS",
        "GPU_FALLBACK",
    }


def test_dla_int8_plan_on_11_4_is_strongly_typed_with_gpu_fallback(labels_export):
    from msla_deploy.errors import BadInput
    from msla_deploy.trt.trtexec import trtexec_argv

    directory, _ = labels_export
    model, plan = _plan(directory, "11.4", dla_core=1)
    assert plan.typing == "strong" and not (
        plan.int8_flag or plan.fp16_flag or plan.layer_precisions or plan.layer_device_types
    )
    assert plan.gpu_fallback and not plan.prefer_precision_constraints
    argv = trtexec_argv(plan)
    # none exists (or matters) in 11.x
    assert not {"--int8", "--fp16", "--stronglyTyped", "--best"} & {a.split("=")[0] for a in argv}
    assert "--useDLACore=1" in argv and "--allowGPUFallback" in argv
    assert trtexec_flags(argv, "11.4") == {"GPU_FALLBACK"}
    assert any("strongly typed" in w and f"{len(model.fp32_nodes)} fp32 nodes" in w for w in plan.warnings)
    with pytest.raises(BadInput) as info:
        _plan(directory, "11.4", dla_core=1, gpu_fallback=False)
    assert "cannot run on DLA" in info.value.problem and "GPU fallback" in info.value.fix
    for version in ("10.13", "11.0"):  # no DLA at all there
        with pytest.raises(BadInput, match="has no DLA"):
            _plan(directory, version, dla_core=0)
    with pytest.raises(BadInput, match="--typing strong with --dla-core"):
        # trtexec --useDLACore on 10.x adds a weak flag
        _plan(directory, "10.3", dla_core=0, typing="strong")


@pytest.mark.parametrize("fake_trt", ["8.6.1", "10.3.0", "10.7.0", "11.4.0.106"], indirect=True)
def test_api_dla_int8_build_on_the_fake_is_the_printed_trtexec_build(labels_export, fake_trt):
    from msla_deploy.trt import engine as engine_mod
    from msla_deploy.trt.trtexec import trtexec_argv
    from tests.trt_fake import read_fake_engine

    directory, _ = labels_export
    version = ".".join(fake_trt.__version__.split(".")[:2])
    fake_trt.fake.dla_cores = 2
    model, plan = _plan(directory, version, dla_core=1, out=directory.parent / f"dla_{version}.engine")
    built = engine_mod.build_engine(fake_trt, plan, onnx_node_names=model.graphs["int8"].node_names)
    state = fake_trt.fake.builder_flags()
    assert state == trtexec_flags(trtexec_argv(plan), version)
    assert ("INT8" in state and "FP16" in state) is (version != "11.4")
    assert [v.name for v in fake_trt.fake.values_set("IBuilderConfig.default_device_type")] == ["DLA"]
    assert fake_trt.fake.values_set("IBuilderConfig.DLA_core") == [1]
    on_gpu = {
        c["layer"].name
        for c in fake_trt.fake.calls_to("IBuilderConfig.set_device_type")
        if c["device_type"].name == "GPU"
    }
    # weak: the pins placed on the GPU explicitly
    assert on_gpu == (set(model.fp32_nodes) if version != "11.4" else set())
    engine = read_fake_engine(built.engine)
    assert engine["dla_core"] == 1 and engine["strongly_typed"] is (version == "11.4")
    # what the fake's DLA refuses (HardSwish ...), less what the plan put on the GPU itself
    refused = {n.name for n in onnx.load(str(plan.onnx)).graph.node if n.op_type in fake_trt.fake.not_on_dla_ops}
    assert refused and set(built.dla_fallback_layers) == refused - on_gpu


@pytest.mark.parametrize("version", ["8.6", "11.4"])
def test_print_trtexec_for_dla_int8_shows_the_preflight_without_qdq(labels_export, version):
    """`build --print-trtexec --dla-core`: the same forecast as `inspect --dla` (one rule table), Q/DQ folded."""
    directory, _ = labels_export
    result = runner.invoke(
        app, ["build", str(directory), "--dla-core", "0", "--print-trtexec", "--trt-version", version, "--json"]
    )
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    _, report = _inspect(directory, "--target-trt", version, "--dla")
    dla = report["info"]["dla"]
    assert printed["dla_preflight"][0] == (
        f"DLA preflight (forecast): {dla['dla']} nodes on DLA, {dla['maybe']} depend on "
        f"sizes/attributes, {dla['gpu']} fall back to the GPU"
    )
    assert f"{dla['qdq_fused']} QuantizeLinear/DequantizeLinear nodes fold into them" in printed["dla_preflight"][1]
    assert ("--int8" in printed["argv"]) is (version == "8.6")


@pytest.mark.parametrize(
    "version, typing, present, absent",
    [
        # JetPack 5.1
        (
            "8.5",
            "weak",
            ["--int8", "--fp16", "--precisionConstraints=obey", "--buildOnly"],
            ["--stronglyTyped", "--skipInference"],
        ),
        # JetPack 6.0
        (
            "8.6",
            "weak",
            ["--int8", "--fp16", "--precisionConstraints=obey", "--skipInference"],
            ["--stronglyTyped", "--buildOnly"],
        ),
        # JetPack 6.1/6.2
        ("10.3", "strong", ["--stronglyTyped", "--skipInference"], ["--int8", "--fp16", "--precisionConstraints"]),
        ("10.13", "strong", ["--stronglyTyped"], ["--int8", "--fp16", "--precisionConstraints"]),  # JetPack 7.0/7.1
        # strongly typed only, no flag
        ("11.4", "strong", [], ["--int8", "--fp16", "--stronglyTyped", "--precisionConstraints"]),
    ],
)
def test_gpu_int8_trtexec_line_per_version(labels_export, version, typing, present, absent):
    from msla_deploy.trt.trtexec import trtexec_argv

    directory, _ = labels_export
    model, plan = _plan(directory, version)
    assert plan.typing == typing and plan.onnx.name == ONNX_NAME
    argv = trtexec_argv(plan)
    names = {a.split("=")[0] for a in argv}
    assert set(p.split("=")[0] for p in present) <= names and not set(a.split("=")[0] for a in absent) & names
    if typing == "weak":  # the pins include the labels head's Resize and ArgMax
        spec = next(a for a in argv if a.startswith("--layerPrecisions="))
        assert {i.split(":")[0] for i in spec.split("=", 1)[1].split(",")} == set(model.fp32_nodes)
        assert trtexec_flags(argv, version) == {"INT8", "FP16", "OBEY_PRECISION_CONSTRAINTS"}
    else:
        assert trtexec_flags(argv, version) == set()  # --noTF32, no weak flag


def test_int8_typing_strong_on_8_6_names_the_int8_fix(labels_export):
    from msla_deploy.errors import BadInput

    with pytest.raises(BadInput) as info:
        _plan(labels_export[0], "8.6", typing="strong")
    assert "INT8 and FP16 flags" in info.value.fix


def test_calibrate_measures_again_in_a_used_workdir(labels_export, pictures, tmp_path):
    """ONNX Runtime reuses any calibration cache at the path it is given: a second calibration in
    the same folder (other pictures here) must measure its own ranges, not inherit the first's."""
    directory, _ = labels_export
    fp32 = directory / FP32_ONNX_NAME
    batches = load_calibration(pictures, H, W, count=8).batches(1)
    dark = [b * 0.25 for b in batches]  # other activations, other ranges
    int8.calibrate(fp32, batches, "max", tmp_path)
    first = (tmp_path / "calibration.json").read_text()
    int8.calibrate(fp32, dark, "max", tmp_path)
    (tmp_path / "fresh").mkdir()
    int8.calibrate(fp32, dark, "max", tmp_path / "fresh")
    assert (tmp_path / "calibration.json").read_text() == (tmp_path / "fresh" / "calibration.json").read_text() != first
