"""evaluate's fast host path gives the results of the straightforward computation, bit for bit.

The pipeline (reader and metric threads, one Pillow lookup per label, the banded upsample +
argmax graph, one bincount per confusion matrix, an in-graph labels output where there is one)
is checked against a plain sequential loop written here: Pillow and numpy to read, the dense
upsample graph and numpy's argmax, np.add.at to count. Torch-free: the model is a tiny ONNX
(one strided convolution whose classes follow the colours of the procedural scenes).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

ort = pytest.importorskip("onnxruntime")

from msla_deploy.artifact.names import LABELS_NAME, OUTPUT_NAME  # noqa: E402
from msla_deploy.artifact.reference import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from msla_deploy.classes import IGNORE_INDEX, cityscapes_label_to_train  # noqa: E402
from msla_deploy.evaluate.datasets import find_dataset, read_label  # noqa: E402
from msla_deploy.evaluate.run import EvaluateOptions, Evaluation  # noqa: E402
from msla_deploy.evaluate.synthetic import write_dataset  # noqa: E402
from msla_deploy.iou import Confusion  # noqa: E402
from msla_deploy.runtime import processing  # noqa: E402

RES = (64, 128)
CLASSES = 19


def _tiny_model(path: Path, labels: str = "", mode: str = "cubic") -> Path:
    """input [1, 3, 64, 128] -> logits [1, 19, 8, 16] (an 8x8 stride-8 convolution); with
    labels="argmin" also a labels output at the input size (resized with `mode`) that is NOT the
    protocol's argmax, so a test can tell which of the two was scored."""
    rng = np.random.default_rng(7)
    init = [
        numpy_helper.from_array((rng.standard_normal((CLASSES, 3, 8, 8)) * 0.05).astype(np.float32), "weight"),
        numpy_helper.from_array((rng.standard_normal(CLASSES) * 0.1).astype(np.float32), "bias"),
    ]
    nodes = [helper.make_node("Conv", ["input", "weight", "bias"], [OUTPUT_NAME], kernel_shape=[8, 8], strides=[8, 8])]
    outputs = [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [1, CLASSES, RES[0] // 8, RES[1] // 8])]
    if labels:
        init.append(numpy_helper.from_array(np.array([1, CLASSES, *RES], np.int64), "sizes"))
        nodes += [
            helper.make_node(
                "Resize",
                [OUTPUT_NAME, "", "", "sizes"],
                ["up"],
                mode=mode,
                coordinate_transformation_mode="half_pixel",
                cubic_coeff_a=-0.75,
            ),
            helper.make_node("Neg", ["up"], ["negated"]),
            helper.make_node("ArgMax", ["negated"], ["index"], axis=1, keepdims=0),
            helper.make_node("Cast", ["index"], [LABELS_NAME], to=TensorProto.INT32),
        ]
        outputs.append(helper.make_tensor_value_info(LABELS_NAME, TensorProto.INT32, [1, *RES]))
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, *RES])],
        outputs,
        initializer=init,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_operatorsetid("", 13)])
    model.ir_version = 7
    onnx.save(model, path)
    return path


def _sequential(model: Path, data: Path, use_labels_output: bool = False) -> np.ndarray:
    """The straightforward computation: one picture after the other, nothing overlapped or fused."""
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    table = cityscapes_label_to_train()
    matrix = np.zeros((CLASSES, CLASSES), np.int64)
    for image in sorted((data / "leftImg8bit" / "val").glob("*/*_leftImg8bit.png")):
        stem = image.name[: -len("_leftImg8bit.png")]
        label = table[
            np.asarray(Image.open(data / "gtFine" / "val" / image.parent.name / f"{stem}_gtFine_labelIds.png"))
        ]
        pixels = np.asarray(Image.open(image).convert("RGB"))
        if pixels.shape[:2] == RES:
            unit = pixels.astype(np.float32) / np.float32(255)
            x = np.ascontiguousarray(
                ((unit - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)).transpose(
                    2, 0, 1
                )[None]
            )
        else:
            x = processing.preprocess(pixels, RES)
        out = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"input": x})))
        if use_labels_output and label.shape == RES:
            predicted = out[LABELS_NAME][0]
        else:
            # the dense graph, numpy's argmax
            predicted = processing.upsample(out[OUTPUT_NAME], label.shape).argmax(axis=1)[0]
        valid = label != IGNORE_INDEX
        np.add.at(matrix, (label[valid].astype(np.int64), predicted[valid].astype(np.int64)), 1)
    return matrix


def _evaluate(model: Path, data: Path, tmp_path: Path) -> Evaluation:
    """The pass, kept after its run: its tallies hold the confusion matrices the report was made from."""
    evaluation = Evaluation(
        EvaluateOptions(artifact=model, data=data, backends=["ort-cpu"], report_dir=tmp_path / "report")
    )
    evaluation.run()
    return evaluation


@pytest.mark.parametrize("size", [RES, (96, 176)], ids=["at-the-input-size", "resized"])
def test_a_run_gives_the_confusion_of_the_sequential_computation(tmp_path, size):
    model = _tiny_model(tmp_path / "tiny.onnx")
    data = tmp_path / "cityscapes"
    write_dataset(data, "cityscapes", 6, size, CLASSES, seed=5)
    expected = _sequential(model, data)
    assert (expected.sum(axis=0) > 0).sum() >= 3, "the tiny model should predict several classes"
    result = _evaluate(model, data, tmp_path)
    np.testing.assert_array_equal(result.backends[0].confusion.matrix, expected)


def test_an_in_graph_labels_output_at_the_label_size_is_what_is_scored(tmp_path):
    model = _tiny_model(tmp_path / "tiny-both.onnx", labels="argmin")
    data = tmp_path / "cityscapes"
    write_dataset(data, "cityscapes", 4, RES, CLASSES, seed=6)
    in_graph, host = _sequential(model, data, use_labels_output=True), _sequential(model, data)
    assert not np.array_equal(in_graph, host)  # the argmin labels output is told apart from the protocol's argmax
    result = _evaluate(model, data, tmp_path)
    np.testing.assert_array_equal(result.backends[0].confusion.matrix, in_graph)
    assert "own labels output" in result.protocol["labels"]


@pytest.mark.parametrize(
    "size,mode", [((80, 150), "cubic"), (RES, "linear")], ids=["labels-at-another-size", "graph-resizes-bilinearly"]
)
def test_otherwise_the_logits_are_upsampled_on_the_host(tmp_path, size, mode):
    model = _tiny_model(tmp_path / "tiny-both.onnx", labels="argmin", mode=mode)
    data = tmp_path / "cityscapes"
    write_dataset(data, "cityscapes", 3, size, CLASSES, seed=7)
    result = _evaluate(model, data, tmp_path)
    np.testing.assert_array_equal(result.backends[0].confusion.matrix, _sequential(model, data))
    assert ("own labels output" in result.protocol["labels"]) == (mode == "cubic")


# --- the pieces ----------------------------------------------------------------------------------

# the model's x8, odd ratios, a downscale, ADE20K's 150 classes, and a width of 300 logits (longer
# than MLAS's K block on AVX-512: the banded width is not exact there and must not be used)
SHAPES = [
    ((1, 19, 16, 32), (128, 256)),
    ((1, 19, 64, 128), (512, 1024)),
    ((2, 5, 9, 13), (40, 29)),
    ((1, 7, 32, 32), (20, 12)),
    ((1, 150, 8, 8), (64, 64)),
    ((1, 3, 8, 300), (64, 2400)),
]


@pytest.mark.parametrize("shape,size", SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_banded_labels_equal_the_dense_upsample_then_argmax(shape, size, dtype):
    logits = (np.random.default_rng(sum(shape)).standard_normal(shape) * 3).astype(dtype)
    graph = onnx.load_from_string(processing._labels_graph(shape, np.dtype(dtype), size, 1)).graph
    assert "Slice" in {n.op_type for n in graph.node}  # the banded form is the one in use here
    np.testing.assert_array_equal(
        processing.labels(logits, size, threads=1), processing.upsample(logits, size).argmax(axis=1)
    )


@pytest.mark.parametrize("classes", [2, 19, 150])
@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8])
def test_confusion_add_equals_counting_pixel_by_pixel(classes, dtype):
    rng = np.random.default_rng(classes)
    truth = rng.integers(0, classes, (50, 70)).astype(np.uint8)
    truth[rng.random(truth.shape) < 0.2] = IGNORE_INDEX
    prediction = rng.integers(0, classes, truth.shape).astype(dtype)
    expected = np.zeros((classes, classes), np.int64)
    valid = truth != IGNORE_INDEX
    np.add.at(expected, (truth[valid].astype(np.int64), prediction[valid].astype(np.int64)), 1)
    confusion = Confusion(classes)
    confusion.add(truth, prediction)
    confusion.add(truth, prediction)
    np.testing.assert_array_equal(confusion.matrix, 2 * expected)


def test_confusion_refuses_a_truth_outside_the_classes():
    with pytest.raises(ValueError, match="out of range"):
        Confusion(19).add(np.full((4, 4), 19, np.uint8), np.zeros((4, 4), np.int64))


@pytest.mark.parametrize("mode", ["L", "P", "I;16"])
def test_labels_read_in_any_mode_are_the_label_ids_mapped_to_train_ids(tmp_path, mode):
    write_dataset(tmp_path, "cityscapes", 2, (30, 50), CLASSES, seed=8)
    dataset = find_dataset(tmp_path, "cityscapes", CLASSES)
    for sample in dataset.samples:
        ids = np.asarray(Image.open(sample.label)).copy()
        stored = Image.fromarray(ids)
        (
            stored.convert("P") if mode == "P" else Image.fromarray(ids.astype(np.uint16)) if mode == "I;16" else stored
        ).save(sample.label)
        assert Image.open(sample.label).mode == mode
        train = read_label(dataset, sample)
        assert train.dtype == np.uint8
        np.testing.assert_array_equal(train, cityscapes_label_to_train()[ids])


@pytest.mark.skipif(
    not hasattr(os, "getpriority") or not hasattr(threading, "get_native_id"),
    reason="per-thread priorities are a Linux feature",
)
def test_host_work_runs_below_the_model_priority(tmp_path, monkeypatch):
    import msla_deploy.evaluate.run as run
    from msla_deploy.evaluate.passes import HOST_NICENESS

    seen = []
    caller = threading.get_native_id()
    preprocess, labels = processing.preprocess, processing.labels

    def niceness():
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    def spy(inner):
        def wrapped(*args, **kwargs):
            if threading.get_native_id() != caller:  # not the graphs built before the pass
                seen.append(niceness())
            return inner(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(run.processing, "preprocess", spy(preprocess))
    monkeypatch.setattr(run.processing, "labels", spy(labels))
    model = _tiny_model(tmp_path / "tiny.onnx")
    write_dataset(tmp_path / "cityscapes", "cityscapes", 3, RES, CLASSES, seed=9)
    _evaluate(model, tmp_path / "cityscapes", tmp_path)
    if niceness() == 19:
        pytest.skip("this process already runs at the lowest priority")
    assert len(seen) == 6  # 3 pictures decoded, 3 scored
    # below this (the model's) thread
    assert set(seen) == {min(19, niceness() + HOST_NICENESS)} and HOST_NICENESS > 0


# --- the record and the edge cases of the metric ---------------------------------------------------


def test_the_report_is_a_record_that_round_trips(tmp_path):
    from msla_deploy.evaluate.report import EvaluateReport

    model = _tiny_model(tmp_path / "tiny.onnx")
    write_dataset(tmp_path / "cityscapes", "cityscapes", 3, (48, 100), CLASSES, seed=11)
    evaluation = Evaluation(
        EvaluateOptions(artifact=model, data=tmp_path / "cityscapes", backends=["ort-cpu"], report_dir=tmp_path / "r")
    )
    report = evaluation.run()
    assert isinstance(report, EvaluateReport) and report.files["json"] == str(tmp_path / "r" / "report.json")
    assert EvaluateReport.from_dict(report.to_dict()) == report
    assert EvaluateReport.read(tmp_path / "r" / "report.json") == report
    written = json.loads((tmp_path / "r" / "report.json").read_text())
    assert written["format"] == "msla-deploy/evaluate-report/1"
    # the keys report.json has always had, in their order, under the format tag
    assert list(written) == [
        "format",
        "passed",
        "artifact",
        "dataset",
        "protocol",
        "against",
        "max_miou_drop_points",
        "images",
        "seconds",
        "images_per_second",
        "backends",
        "pairs",
        "skipped",
        "notes",
        "files",
    ]
    # (issue 25 added the non-finite counts after them: the keys it had stay first, in their order)
    assert list(written["backends"][0]) == [
        "backend",
        "ran",
        "miou",
        "pixel_accuracy",
        "miou_drop_points",
        "passed",
        "inference_s",
        "class_iou",
        "nonfinite_pixels",
        "nonfinite_pictures",
    ]
    del written["format"]  # a report written before records: version 1 of its kind
    assert EvaluateReport.from_dict(written) == report
    for backend in written["backends"]:  # and one written before the non-finite counts: none counted
        del backend["nonfinite_pixels"], backend["nonfinite_pictures"]
    for key in ("weights_source", "weights_warning"):
        del written["artifact"][key]
    assert EvaluateReport.from_dict(written) == report
    assert report.backends[0].miou == evaluation.backends[0].confusion.miou()


def test_nan_logits_have_no_label_and_count_against_the_truth(tmp_path):
    """A backend whose logits hold a NaN: the pixels whose upsample reads it have no label (not
    numpy's or ONNX Runtime's pick among NaNs) and count as wrong for their true class."""
    clean = _tiny_model(tmp_path / "tiny.onnx")
    model = onnx.load(clean)
    h, w = RES[0] // 8, RES[1] // 8
    poison = np.ones((1, 1, h, w), np.float32)
    poison[0, 0, 3, 5] = np.nan
    model.graph.node[0].output[0] = "raw"
    model.graph.initializer.append(numpy_helper.from_array(poison, "poison"))
    model.graph.node.append(helper.make_node("Mul", ["raw", "poison"], [OUTPUT_NAME]))
    onnx.save(model, tmp_path / "nan.onnx")
    data = tmp_path / "cityscapes"
    write_dataset(data, "cityscapes", 2, RES, CLASSES, seed=12)
    broken, expected = _evaluate(tmp_path / "nan.onnx", data, tmp_path / "a"), _evaluate(clean, data, tmp_path / "b")
    mask = processing.unlabelled(poison * np.ones((1, CLASSES, h, w), np.float32), RES)[0]
    assert 0 < mask.sum() < mask.size
    # the clean model's counts on the masked pixels, one picture after the other
    session, table = ort.InferenceSession(str(clean), providers=["CPUExecutionProvider"]), cityscapes_label_to_train()
    masked, unlabelled = np.zeros((CLASSES, CLASSES), np.int64), np.zeros(CLASSES, np.int64)
    for image in sorted((data / "leftImg8bit" / "val").glob("*/*_leftImg8bit.png")):
        stem = image.name[: -len("_leftImg8bit.png")]
        label = table[
            np.asarray(Image.open(data / "gtFine" / "val" / image.parent.name / f"{stem}_gtFine_labelIds.png"))
        ]
        logits = session.run(None, {"input": processing.preprocess(np.asarray(Image.open(image).convert("RGB")), RES)})[
            0
        ]
        predicted = processing.labels(logits, RES)[0]
        where = (label != IGNORE_INDEX) & mask
        np.add.at(masked, (label[where].astype(np.int64), predicted[where]), 1)
        unlabelled += np.bincount(label[where], minlength=CLASSES)
    confusion = broken.backends[0].confusion
    assert unlabelled.sum() > 0 and np.array_equal(confusion.unlabelled, unlabelled)
    # every other pixel is scored as the clean model scores it
    np.testing.assert_array_equal(confusion.matrix, expected.backends[0].confusion.matrix - masked)
    assert (
        confusion.union.tolist()
        == (expected.backends[0].confusion.union - masked.sum(axis=0) + np.diag(masked)).tolist()
    )
