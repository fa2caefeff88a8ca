"""`package --triton` for classifiers: the config's outputs, Triton's classification extension
(label_filename + labels.txt) where it fits, and the one-line errors. The configs are read back
from their text here (the main environment has no tritonclient); where tritonclient is installed
they are parsed with Triton's ModelConfig as well.

One real export (b0 at 64x64, random weights, logits head), and tiny classifier graphs written
here with the metadata an export records, for the other heads, batches and dtypes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Dict, List, Optional

import pytest
from typer.testing import CliRunner

from msla_deploy.classes import imagenet1k_classes
from msla_deploy.cli import app
from msla_deploy.serve.repository import PackageOptions, package_triton
from tests.fixtures import export_random_classifier, one_error_line

runner = CliRunner()
NO_TRITONCLIENT = "tritonclient[grpc] is not installed (pip install -e '.[serve]')"


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def tensors(config: str, side: str) -> List[Dict[str, str]]:
    """The input [ ... ] or output [ ... ] blocks of a config.pbtxt we wrote: one dict per tensor
    with name, data_type, dims (a list of ints) and label_filename (or None)."""
    section = re.search(rf"^{side} \[\n(.*?)^\]", config, re.S | re.M)
    assert section, config
    found = []
    for block in re.findall(r"\{(.*?)\}", section.group(1), re.S):
        fields = dict(re.findall(r"^\s*(\w+): (.*?)\s*$", block, re.M))
        found.append(
            {
                "name": json.loads(fields["name"]),
                "data_type": fields["data_type"],
                "dims": [int(d) for d in fields["dims"].strip("[] ").split(",")],
                "label_filename": json.loads(fields["label_filename"]) if "label_filename" in fields else None,
            }
        )
    return found


def max_batch_size(config: str) -> int:
    return int(re.search(r"^max_batch_size: (\d+)$", config, re.M).group(1))


def tiny_classifier(
    path: Path,
    head: str = "logits",
    batch=1,
    classes: int = 1000,
    model: str = "efficientvit-b0",
    fp16: bool = False,
    max_batch: Optional[int] = None,
) -> Path:
    """A classifier graph (pool, flatten, one MatMul) with the outputs of `head` and the metadata
    an export records: task, model name, classes (and the largest batch of a dynamic one)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    n = "N" if max_batch else batch
    weights = numpy_helper.from_array(np.random.default_rng(0).standard_normal((3, classes)).astype(np.float32), "w")
    nodes = [
        helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w"], ["scores"]),
    ]
    elem = TensorProto.FLOAT16 if fp16 else TensorProto.FLOAT
    if head == "topk":
        k = helper.make_tensor("k", TensorProto.INT64, [1], [5])
        nodes += [
            helper.make_node("Softmax", ["scores"], ["p"], axis=1),
            helper.make_node("TopK", ["p", "k"], ["topk_scores", "i64"], axis=1),
            helper.make_node("Cast", ["i64"], ["topk_indices"], to=TensorProto.INT32),
        ]
        outputs = [
            helper.make_tensor_value_info("topk_indices", TensorProto.INT32, [n, 5]),
            helper.make_tensor_value_info("topk_scores", TensorProto.FLOAT, [n, 5]),
        ]
        initializers = [weights, k]
    else:
        op = helper.make_node("Softmax", ["scores"], ["s"], axis=1) if head == "probs" else None
        nodes += [op] if op else []
        nodes.append(helper.make_node("Cast", ["s" if op else "scores"], [head], to=elem))
        outputs = [helper.make_tensor_value_info(head, elem, [n, classes])]
        initializers = [weights]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [n, 3, 8, 8])], outputs, initializers
    )
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    meta = {"msla_deploy.task": "classification", "msla_deploy.model": model, "msla_deploy.num_classes": str(classes)}
    if max_batch:
        meta["msla_deploy.max_batch"] = str(max_batch)
    onnx.helper.set_model_props(onnx_model, meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(onnx_model, path)
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    return export_random_classifier(tmp_path_factory.mktemp("package-cls"), "b0-cls")  # efficientvit-b0 at 64x64


def test_a_classifier_repository_names_imagenet_classes(exported, tmp_path):
    result = cli("package", exported, "--triton", tmp_path / "repo", "--json")
    assert result.exit_code == 0, result.output
    written = json.loads(result.stdout)
    model_dir = tmp_path / "repo" / "b0-cls"
    assert written["task"] == "classification"
    assert written["labels"] == {
        "file": "labels.txt",
        "outputs": ["logits"],
        "class_names": "imagenet-1k",
        "count": 1000,
    }
    config = (model_dir / "config.pbtxt").read_text()
    assert max_batch_size(config) == 0 and 'platform: "onnxruntime_onnx"' in config
    assert tensors(config, "input") == [
        {"name": "input", "data_type": "TYPE_FP32", "dims": [1, 3, 64, 64], "label_filename": None}
    ]
    assert tensors(config, "output") == [
        {"name": "logits", "data_type": "TYPE_FP32", "dims": [1, 1000], "label_filename": "labels.txt"}
    ]
    assert (model_dir / "labels.txt").read_text().splitlines() == list(imagenet1k_classes())
    assert sorted(p.name for p in model_dir.iterdir()) == ["1", "config.pbtxt", "labels.txt"]
    table = cli("package", exported, "--triton", tmp_path / "repo2")
    assert table.exit_code == 0 and "1000 (imagenet-1k) in labels.txt" in table.stdout


def test_heads_batches_and_dtypes(tmp_path):
    def package(onnx_path: Path, **options):
        return package_triton(PackageOptions(artifact=onnx_path, repository=tmp_path / "repo", **options))

    # probs, dynamic batch 1..4: dims without the batch, the batcher on, the label file
    probs = package(tiny_classifier(tmp_path / "probs" / "model.onnx", "probs", max_batch=4), name="probs")
    config = probs.config_text
    assert max_batch_size(config) == 4 and "dynamic_batching" in config
    assert tensors(config, "output") == [
        {"name": "probs", "data_type": "TYPE_FP32", "dims": [1000], "label_filename": "labels.txt"}
    ]
    assert tensors(config, "input")[0]["dims"] == [3, 8, 8]
    # topk: its two outputs as they are, nothing for Triton to classify
    topk = package(tiny_classifier(tmp_path / "topk" / "model.onnx", "topk"), name="topk")
    assert tensors(topk.config_text, "output") == [
        {"name": "topk_indices", "data_type": "TYPE_INT32", "dims": [1, 5], "label_filename": None},
        {"name": "topk_scores", "data_type": "TYPE_FP32", "dims": [1, 5], "label_filename": None},
    ]
    assert topk.labels is None and not (topk.model_dir / "labels.txt").exists()
    # a static batch of 2 would be classified as one picture; fp16 scores Triton does not sort
    for name, onnx_path, why in (
        ("static2", tiny_classifier(tmp_path / "s2" / "model.onnx", batch=2), "a static batch of 2"),
        ("half", tiny_classifier(tmp_path / "half" / "model.onnx", fp16=True), "does not sort fp16"),
    ):
        packaged = package(onnx_path, name=name)
        assert packaged.labels is None and "label_filename" not in packaged.config_text
        assert not (packaged.model_dir / "labels.txt").exists()
        assert any(why in note for note in packaged.notes), packaged.notes
    half = tensors((tmp_path / "repo" / "half" / "config.pbtxt").read_text(), "output")
    assert half[0]["data_type"] == "TYPE_FP16"


def test_class_names_from_a_labels_file_or_none(tmp_path):
    mine = tiny_classifier(tmp_path / "mine" / "model.onnx", classes=3, model="mine.py:build")
    package = package_triton(PackageOptions(artifact=mine, repository=tmp_path / "repo", name="plain"))
    assert package.labels is None and any("no class names known" in n for n in package.notes)
    labels = tmp_path / "names.txt"
    labels.write_text("cat\ndog\nbird\n")
    result = cli("package", mine, "--triton", tmp_path / "repo", "--name", "named", "--labels", labels, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["labels"]["class_names"] == f"labels file {labels}"
    assert (tmp_path / "repo" / "named" / "labels.txt").read_text() == "cat\ndog\nbird\n"
    assert 'label_filename: "labels.txt"' in (tmp_path / "repo" / "named" / "config.pbtxt").read_text()


def test_labels_errors_are_one_line_and_write_nothing(tmp_path):
    mine = tiny_classifier(tmp_path / "mine" / "model.onnx", classes=3, model="mine.py:build")
    topk = tiny_classifier(tmp_path / "topk" / "model.onnx", "topk")
    short = tmp_path / "short.txt"
    short.write_text("cat\n")
    seg = tmp_path / "seg.onnx"
    from tests.runtime.test_classifier import bare_segmentation_onnx

    bare_segmentation_onnx(seg)
    for artifact, expected in (
        (mine, "1 names for a model of 3 classes"),
        (topk, "gives top-k indices, not per-class scores"),
        (seg, "--labels is for classification models"),
    ):
        result = cli("package", artifact, "--triton", tmp_path / "repo", "--labels", short)
        assert result.exit_code == 2, result.output
        assert expected in one_error_line(result)
        assert not (tmp_path / "repo").exists() or not any((tmp_path / "repo").iterdir())


@pytest.mark.serve
def test_classification_configs_parse_with_model_config(exported, tmp_path):
    pytest.importorskip("tritonclient.grpc.model_config_pb2", reason=NO_TRITONCLIENT)
    from msla_deploy.serve.repository import parse_config

    package = package_triton(PackageOptions(artifact=exported, repository=tmp_path / "repo"))
    assert package.checked_with_model_config
    config = parse_config(package.config_path.read_text())
    assert [(t.name, list(t.dims), t.label_filename) for t in config.output] == [("logits", [1, 1000], "labels.txt")]
    dynamic = package_triton(
        PackageOptions(
            artifact=tiny_classifier(tmp_path / "d" / "model.onnx", "probs", max_batch=4), repository=tmp_path / "repo"
        )
    )
    parsed = parse_config(dynamic.config_path.read_text())
    assert parsed.max_batch_size == 4 and parsed.output[0].label_filename == "labels.txt"
