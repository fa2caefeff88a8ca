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
from tests.test_int8 import write_pictures

B0 = "efficientvit-seg-b0-cityscapes"
H, W = 64, 128
runner = CliRunner()


def _export(root, pictures, head: str):
    out = root / f"int8-{head}"
    result = runner.invoke(app, ["export", "-m", B0, "--res", f"{H}x{W}", "--precision", "int8", "--head", head,
                                 "--calib-images", str(pictures), "--calib-count", "8", "--out", str(out),
                                 "--models-dir", str(root / "no-models"), "--json"])
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
def _head_only_graph(proto: onnx.ModelProto, logits: str) -> onnx.ModelProto:
    """The graph's own head nodes (Resize, ArgMax, Cast) alone, fed the logits as an fp32 input."""
    head = set(int8.head_nodes(proto))
    nodes = [n for n in proto.graph.node if n.name in head]
    used = {t for n in nodes for t in n.input}
    inits = [i for i in proto.graph.initializer if i.name in used]
    graph = onnx.helper.make_graph(
        nodes, "head", [onnx.helper.make_tensor_value_info(logits, onnx.TensorProto.FLOAT, None)],
        [onnx.helper.make_tensor_value_info(LABELS_NAME, onnx.TensorProto.INT32, None)], inits)
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
    consumers_of_head = [n for n in proto.graph.node if n.op_type in int8.QDQ_OPS and
                         any(producer.get(t) is not None and producer[t].name in head_nodes for t in n.input)]
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

    # independently: the head's nodes run alone in fp32 on the int8 graph's logits give exactly its labels
    batches = load_calibration(pictures, H, W, count=8).batches(1)
    logits_name = int8.logits_tensor(proto)
    logits = int8.run_batches(proto, batches)
    labels = int8.run_batches(proto, batches, LABELS_NAME)
    head_session = int8.session(_head_only_graph(proto, logits_name))
    again = np.concatenate([head_session.run([LABELS_NAME], {logits_name: logits[i:i + 1]})[0] for i in range(len(batches))])
    np.testing.assert_array_equal(labels, again)
    assert labels.dtype == np.int32 and labels.shape == (8, H, W)

    # parity: labels judged vs PyTorch and vs the fp32 graph's labels on the calibration pictures
    checks = {c["label"]: c for c in data["parity"]["checks"]}
    on_pictures = {o["name"]: o for o in checks["ONNX Runtime int8 on the calibration pictures (vs the fp32 graph)"]["outputs"]}
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
        [conv, resize, argmax, cast], "g", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 4, 4])],
        [onnx.helper.make_tensor_value_info(LABELS_NAME, onnx.TensorProto.INT32, None)],
        [onnx.numpy_helper.from_array(np.ones((2, 3, 1, 1), np.float32), "w"),
         onnx.numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")])
    model = onnx.helper.make_model(graph)
    assert int8.logits_tensor(model) == "z"
    assert int8.head_nodes(model) == ["resize", "argmax", "cast"]
    graph.output.insert(0, onnx.helper.make_tensor_value_info(OUTPUT_NAME, onnx.TensorProto.FLOAT, None))
    conv.output[0] = OUTPUT_NAME
    model = onnx.helper.make_model(onnx.helper.make_graph(
        [conv, onnx.helper.make_node("Resize", [OUTPUT_NAME, "", "scales"], ["up"], name="resize", mode="cubic"), argmax, cast],
        "g", list(graph.input), list(graph.output), list(graph.initializer)))
    assert int8.logits_tensor(model) == OUTPUT_NAME and int8.head_nodes(model) == ["resize", "argmax", "cast"]
