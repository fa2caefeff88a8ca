"""`msla_deploy.Classifier` on ONNX Runtime: each head's top-k against an independent computation
(upstream's transform written out here with Pillow, the graph run by ONNX Runtime, softmax in
numpy), padding of a static batch, class names, and the one-line errors.

Three small exports of b0 at 64x64 with the same calibrated random weights (varied classes,
decisive probabilities): logits (batch 1), probs (static batch 2) and topk (batch 1).
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from msla_deploy import Classifier
from msla_deploy.artifact.reference import IMAGENET_MEAN, IMAGENET_STD
from msla_deploy.classes import imagenet1k_classes, read_labels
from msla_deploy.errors import BadInput
from msla_deploy.runtime.classifier import class_names_for, softmax
from msla_deploy.runtime.segmenter import Segmenter
from tests.fixtures import shared_export

CLS = "efficientvit-b0"
RES = 64


def calibrated_cls_checkpoint(path: Path) -> Path:
    """Seeded random b0 classifier weights whose BatchNorm statistics are measured on noise
    pictures and whose last layer is scaled up: fresh random weights give nearly the same
    near-uniform probabilities for every picture (a wrong preprocessing would go unseen), these
    give each picture its own, decisive classes."""
    from msla_deploy import zoo

    torch.manual_seed(0)
    model = zoo.build(CLS)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # a plain average over the calibration batches
            module.reset_running_stats()
    model.train()
    with torch.no_grad():
        for _ in range(4):
            model(torch.randn(4, 3, RES, RES))
        last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
        last.weight.mul_(10.0)
        last.bias.mul_(10.0)
    torch.save(model.state_dict(), path)
    return path


def export_classifier(root: Path, weights: Path, head: str, batch: int = 1) -> Path:
    # shared_export: the same export asked for again (tests/predict does) is a copy of the first
    return shared_export(
        root,
        f"{head}-b{batch}",
        must_pass=True,
        model=CLS,
        weights=weights,
        resolution=(RES, RES),
        head=head,
        batch=batch,
        exporter="torchscript",  # ~6x faster than dynamo on b0 (tests/fixtures.export_random_classifier)
    )


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("classifier")


@pytest.fixture(scope="module")
def weights(root) -> Path:
    return calibrated_cls_checkpoint(root / "b0-cls.pt")


@pytest.fixture(scope="module")
def logits_artifact(root, weights) -> Path:
    return export_classifier(root, weights, "logits")


@pytest.fixture(scope="module")
def probs_artifact(root, weights) -> Path:
    return export_classifier(root, weights, "probs", batch=2)


@pytest.fixture(scope="module")
def topk_artifact(root, weights) -> Path:
    return export_classifier(root, weights, "topk")


def picture(h: int, w: int, seed: int) -> np.ndarray:
    """A picture with structure (gradients and blobs) of any size."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    channels = [127 + 120 * np.sin(x / (5 + 4 * c) + y / (9 + 3 * c) + rng.uniform(0, 6)) for c in range(3)]
    return np.clip(np.stack(channels, axis=2), 0, 255).astype(np.uint8)


def noise(h: int, w: int, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)


def gradient(h: int, w: int) -> np.ndarray:
    return np.dstack([np.tile(np.linspace(0, 255, w), (h, 1))] * 3).astype(np.uint8)


# four sizes (wider, taller, odd, the artifact's own) and kinds, which the model tells apart
PICTURES = [picture(120, 200, 0), picture(300, 90, 1), noise(67, 71, 5), gradient(64, 64)]


def upstream_input(pixels: np.ndarray, res: int = RES) -> np.ndarray:
    """torchvision's Resize(ceil(res / 0.95), BICUBIC) + CenterCrop(res) + ToTensor + Normalize on
    a PIL picture, written out from their definitions: [1, 3, res, res] float32."""
    image = Image.fromarray(pixels)
    short = math.ceil(res / 0.95)
    w, h = image.size
    size = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
    image = image.resize(size, Image.BICUBIC)
    left, top = int(round((size[0] - res) / 2.0)), int(round((size[1] - res) / 2.0))
    x = np.asarray(image.crop((left, top, left + res, top + res)), np.float32) / 255.0
    x = (x - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None], np.float32)


def ort_outputs(artifact: Path, x: np.ndarray, batch: int = 1):
    import onnxruntime as ort

    session = ort.InferenceSession(str(artifact / "model.onnx"), providers=["CPUExecutionProvider"])
    feed = np.concatenate([x] + [np.zeros_like(x)] * (batch - 1))
    names = [o.name for o in session.get_outputs()]
    return {n: v[:1] for n, v in zip(names, session.run(names, {"input": feed}))}


def expected_top(probabilities: np.ndarray, k: int):
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [int(i) for i in order], probabilities[order]


# --- each head against the independent computation ------------------------------------------------


def test_logits_head_is_softmax_of_the_graph_on_upstream_input(logits_artifact):
    names = imagenet1k_classes()
    with Classifier(logits_artifact, "ort-cpu") as clf:
        assert clf.head == "logits" and clf.resolution == (RES, RES) and clf.num_classes == 1000
        assert clf.names_from == "imagenet-1k" and clf.max_top_k == 1000
        results = clf.batch(PICTURES, top_k=7)
    tops = set()
    for pixels, result in zip(PICTURES, results):
        logits = ort_outputs(logits_artifact, upstream_input(pixels))["logits"][0].astype(np.float64)
        probabilities = np.exp(logits - logits.max())
        probabilities /= probabilities.sum()
        indices, values = expected_top(probabilities, 7)
        assert [c.index for c in result.top] == indices
        np.testing.assert_allclose([c.probability for c in result.top], values, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(result.probabilities, probabilities, rtol=1e-6, atol=1e-12)
        assert [c.name for c in result.top] == [names[i] for i in indices] and result.nonfinite == 0
        assert result.best == result.top[0] and result.image.shape == pixels.shape
        # printing an answer shows its classes, not the picture and 1000 probabilities
        assert "ClassScore(" in repr(result) and "array" not in repr(result) and len(repr(result)) < 1000
        tops.add(result.best.index)
    assert len(tops) >= 3  # the pictures get different answers: the preprocessing is what is tested


def test_probs_head_is_sorted_as_given_and_the_static_batch_is_padded(probs_artifact, logits_artifact):
    with Classifier(probs_artifact, "ort-cpu") as clf, Classifier(logits_artifact, "ort-cpu") as logits:
        assert clf.head == "probs" and clf.batch_size == 2
        together = clf.batch(PICTURES[:3], top_k=5)  # one full group of 2, one padded
        alone = [clf(p, top_k=5) for p in PICTURES[:3]]
        from_logits = logits.batch(PICTURES[:3], top_k=5)
    for pixels, a, b, c in zip(PICTURES, together, alone, from_logits):
        probs = ort_outputs(probs_artifact, upstream_input(pixels), batch=2)["probs"][0].astype(np.float64)
        indices, values = expected_top(probs, 5)
        assert [s.index for s in a.top] == indices == [s.index for s in b.top]
        np.testing.assert_array_equal([s.probability for s in a.top], values)
        # the graph's softmax and ours: the same classes, the same probabilities to fp32 noise
        assert [s.index for s in c.top] == indices
        np.testing.assert_allclose([s.probability for s in c.top], values, rtol=1e-5, atol=1e-7)


def test_topk_head_is_taken_as_given(topk_artifact, logits_artifact):
    with Classifier(topk_artifact, "ort-cpu") as clf, Classifier(logits_artifact, "ort-cpu") as logits:
        assert clf.head == "topk" and clf.max_top_k == 5
        for pixels in PICTURES:
            got = clf(pixels, top_k=3)
            graph = ort_outputs(topk_artifact, upstream_input(pixels))
            assert [s.index for s in got.top] == [int(i) for i in graph["topk_indices"][0][:3]]
            assert [s.probability for s in got.top] == [float(v) for v in graph["topk_scores"][0][:3]]
            assert got.probabilities is None
            reference = logits(pixels, top_k=3)
            assert [s.index for s in got.top] == [s.index for s in reference.top]
            assert [s.name for s in got.top] == [s.name for s in reference.top]


def test_picture_files_and_pil_images_give_the_array_answer(logits_artifact, tmp_path):
    path = tmp_path / "p.png"
    Image.fromarray(PICTURES[0]).save(path)
    with Classifier(logits_artifact, "ort-cpu") as clf:
        expected = clf(PICTURES[0]).top
        assert clf(path).top == expected and clf(str(path)).top == expected
        assert clf(Image.open(path)).top == expected


def test_torch_backend_gives_the_same_classes(topk_artifact):
    with Classifier(topk_artifact, "ort-cpu") as ort_clf, Classifier(topk_artifact, "torch") as torch_clf:
        for pixels in PICTURES[:2]:
            a, b = ort_clf(pixels), torch_clf(pixels)
            assert [s.index for s in a.top] == [s.index for s in b.top]
            np.testing.assert_allclose([s.probability for s in a.top], [s.probability for s in b.top], atol=1e-5)


# --- names ---------------------------------------------------------------------------------------


def test_imagenet_names_are_the_1000_classes_in_index_order():
    names = imagenet1k_classes()
    assert len(names) == 1000 and all(n == n.strip() and n for n in names)
    assert (names[0], names[1], names[207], names[999]) == ("tench", "goldfish", "golden retriever", "toilet tissue")


def test_class_names_for_a_labels_file_the_zoo_and_other_models(tmp_path):
    zoo_model = SimpleNamespace(model_name="efficientvit-b1-r224")
    mine = SimpleNamespace(model_name="mine.py:build")
    assert class_names_for(zoo_model, 1000) == (imagenet1k_classes(), "imagenet-1k")
    assert class_names_for(SimpleNamespace(model_name="timm:efficientvit_b1.r224_in1k"), 1000)[1] == "imagenet-1k"
    assert class_names_for(mine, 3) == (("class 0", "class 1", "class 2"), "class indices")
    assert class_names_for(mine, 1000)[1] == "class indices"  # 1000 classes alone do not make ImageNet
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\nbird\n\n")
    assert class_names_for(mine, 3, labels) == (("cat", "dog", "bird"), f"labels file {labels}")
    for text, problem in (("cat\ndog\n", "2 names for a model of 3 classes"), ("cat\n\nbird\n", "line 2 is blank")):
        labels.write_text(text)
        with pytest.raises(BadInput, match=problem):
            read_labels(labels, 3)
    with pytest.raises(BadInput, match="no such file"):
        read_labels(tmp_path / "none.txt", 3)


def test_softmax_is_stable_and_sums_to_one():
    p = softmax(np.array([1000.0, 999.0, -1000.0], np.float32))
    assert np.isfinite(p).all() and p.sum() == pytest.approx(1.0) and p[0] == pytest.approx(1 / (1 + math.e**-1))


# --- errors --------------------------------------------------------------------------------------


def bare_segmentation_onnx(path: Path) -> Path:
    """An ONNX that records no task (as every export before tasks): it reads as segmentation."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("AveragePool", ["input"], ["logits"], kernel_shape=[8, 8], strides=[8, 8])],
        "seg",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 64, 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3, 8, 8])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_the_wrong_task_is_one_line_naming_the_fix(tmp_path, logits_artifact):
    seg = bare_segmentation_onnx(tmp_path / "seg.onnx")
    with pytest.raises(BadInput) as caught:
        Classifier(seg, "ort-cpu")
    assert "is a model for semantic segmentation; a Classifier runs image classification models" in str(caught.value)
    assert "msla_deploy.Segmenter" in caught.value.fix and "\n" not in str(caught.value)
    with pytest.raises(BadInput) as caught:
        Segmenter(logits_artifact, "ort-cpu")
    assert "is a model for image classification; a Segmenter runs" in str(caught.value)
    assert "msla_deploy.Classifier" in caught.value.fix
    with Segmenter(seg, "ort-cpu") as segmenter:  # no task recorded: segmentation, as before
        assert segmenter.num_classes == 3


def test_top_k_it_cannot_answer_and_non_pictures(topk_artifact, logits_artifact, tmp_path):
    with Classifier(topk_artifact, "ort-cpu") as clf:
        for bad in (0, -1, True, 2.5):
            with pytest.raises(BadInput, match="must be a whole number of at least 1"):
                clf(PICTURES[0], top_k=bad)
        with pytest.raises(BadInput, match="topk head gives its 5 best classes only") as caught:
            clf(PICTURES[0], top_k=6)
        assert "--head logits" in caught.value.fix
        broken = tmp_path / "broken.png"
        broken.write_bytes(b"not a picture")
        with pytest.raises(BadInput, match="broken.png"):
            clf(broken)
        with pytest.raises(BadInput, match="not H x W"):
            clf(np.zeros((4, 4, 5), np.uint8))
    with Classifier(logits_artifact, "ort-cpu") as clf:
        with pytest.raises(BadInput, match="the model has 1000 classes"):
            clf(PICTURES[0], top_k=1001)


def test_a_labels_file_names_the_classes(logits_artifact, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"thing {i}\n" for i in range(1000)))
    with Classifier(logits_artifact, "ort-cpu", labels=labels) as clf:
        top = clf(PICTURES[0]).top
    assert [c.name for c in top] == [f"thing {c.index}" for c in top]
    labels.write_text("a\nb\n")
    with pytest.raises(BadInput, match="2 names for a model of 1000 classes"):
        Classifier(logits_artifact, "ort-cpu", labels=labels)


def test_a_bare_onnx_of_a_classifier_keeps_its_task_and_names(logits_artifact, tmp_path):
    bare = tmp_path / "copy.onnx"
    shutil.copyfile(logits_artifact / "model.onnx", bare)  # no manifest beside it: the ONNX metadata says
    with Classifier(bare, "ort-cpu") as clf, Classifier(logits_artifact, "ort-cpu") as full:
        assert clf.names_from == "imagenet-1k" and clf.weights_source is None
        assert clf(PICTURES[1]).top == full(PICTURES[1]).top
