"""`msla-deploy evaluate` on a classifier: upstream's protocol and metric against a computation
written here, folder and list layouts, every classification head, the gates, bad input, the
record, and a run without torch.

Torch-free and quick: the classifier is a tiny ONNX (global average pool + one linear layer whose
rows are the classes' colours, so it gets some of the procedural pictures right and some wrong)
that records the classification task in its metadata, as an export does.
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image
from typer.testing import CliRunner

ort = pytest.importorskip("onnxruntime")

from msla_deploy import runtime  # noqa: E402
from msla_deploy.artifact.names import META_NUM_CLASSES, META_TASK  # noqa: E402
from msla_deploy.artifact.reference import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from msla_deploy.classes import seeded_palette  # noqa: E402
from msla_deploy.cli import app  # noqa: E402
from msla_deploy.errors import BadInput  # noqa: E402
from msla_deploy.evaluate.accuracy import AccuracyTally, ranked  # noqa: E402
from msla_deploy.evaluate.classification import ClassifyOptions, evaluate_classifier  # noqa: E402
from msla_deploy.evaluate.classify_report import ClassifyReport  # noqa: E402
from msla_deploy.evaluate.imagenet import find_class_dataset  # noqa: E402
from msla_deploy.evaluate.synthetic import write_class_folders  # noqa: E402
from msla_deploy.runtime.session import Backend  # noqa: E402
from tests.fixtures import one_error_line, run_without_torch  # noqa: E402

CLASSES = 12
RES = 32
runner = CliRunner()


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def evaluate_json(*args) -> dict:
    result = cli("evaluate", *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# --- a tiny classifier and its dataset --------------------------------------------------------------


def tiny_classifier(
    path: Path, head: str = "logits", batch: int = 1, classes: int = CLASSES, every_pixel: bool = False
) -> Path:
    """input [batch, 3, 32, 32] -> GlobalAveragePool -> Gemm: each class's row is its colour,
    normalised as the input is, so the logit is highest for the class whose colour the picture's mean
    is closest to (minus half its squared norm: a nearest-colour rule). head: logits | probs | topk.
    every_pixel: a random linear map of every input value instead, so that any pixel moves the scores."""
    colours = seeded_palette(classes).astype(np.float32) / 255
    prototypes = (colours - np.float32(IMAGENET_MEAN)) / np.float32(IMAGENET_STD)
    if every_pixel:
        weight = np.random.default_rng(3).standard_normal((classes, 3 * RES * RES)).astype(np.float32) * 0.05
        init = [
            numpy_helper.from_array(weight, "weight"),
            numpy_helper.from_array(np.zeros(classes, np.float32), "bias"),
        ]
        pooled = []
    else:
        init = [
            numpy_helper.from_array(prototypes.astype(np.float32), "weight"),
            numpy_helper.from_array((-0.5 * (prototypes**2).sum(1)).astype(np.float32), "bias"),
        ]
        pooled = [helper.make_node("GlobalAveragePool", ["input"], ["pooled"])]
    nodes = pooled + [
        helper.make_node("Flatten", ["pooled" if pooled else "input"], ["flat"]),
        helper.make_node("Gemm", ["flat", "weight", "bias"], ["logits"], transB=1),
    ]
    k = min(5, classes)
    if head == "logits":
        outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, classes])]
    elif head == "probs":
        nodes.append(helper.make_node("Softmax", ["logits"], ["probs"], axis=1))
        outputs = [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [batch, classes])]
    else:
        init.append(numpy_helper.from_array(np.array([k], np.int64), "k"))
        nodes += [
            helper.make_node("Softmax", ["logits"], ["p"], axis=1),
            helper.make_node("TopK", ["p", "k"], ["topk_scores", "index"], axis=1),
            helper.make_node("Cast", ["index"], ["topk_indices"], to=TensorProto.INT32),
        ]
        outputs = [
            helper.make_tensor_value_info("topk_indices", TensorProto.INT32, [batch, k]),
            helper.make_tensor_value_info("topk_scores", TensorProto.FLOAT, [batch, k]),
        ]
    graph = helper.make_graph(
        nodes, "tiny_cls", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, RES, RES])], outputs,
        initializer=init,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_operatorsetid("", 13)])
    model.ir_version = 7
    helper.set_model_props(model, {META_TASK: "classification", META_NUM_CLASSES: str(classes)})
    onnx.save(model, path)
    return path


def tiny_segmenter(path: Path) -> Path:
    """A segmentation ONNX as exports before tasks wrote them (no task recorded)."""
    init = [numpy_helper.from_array(np.ones((4, 3, 1, 1), np.float32), "w")]
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w"], ["logits"])],
        "tiny_seg",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, RES, RES])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4, RES, RES])],
        initializer=init,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_operatorsetid("", 13)])
    model.ir_version = 7
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Tuple[Path, List[Tuple[str, int]]]:
    root = tmp_path_factory.mktemp("classes") / "val"
    return root, write_class_folders(root, CLASSES, 3, sizes=(33, 90), seed=4)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return tiny_classifier(tmp_path_factory.mktemp("model") / "tiny.onnx")


def independent_logits(model: Path, root: Path, relative: str, ratio: float = 0.95) -> np.ndarray:
    """One picture's scores by upstream's protocol written out here: Pillow resize of the short side
    to ceil(32 / ratio), the centre crop, /255 and mean/std, ONNX Runtime."""
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    short = math.ceil(RES / ratio)
    image = Image.open(root / relative).convert("RGB")
    w, h = image.size
    size = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
    image = image.resize(size, Image.BICUBIC)
    left, top = int(round((size[0] - RES) / 2.0)), int(round((size[1] - RES) / 2.0))
    pixels = np.asarray(image.crop((left, top, left + RES, top + RES))).astype(np.float32) / np.float32(255)
    x = ((pixels - np.float32(IMAGENET_MEAN)) / np.float32(IMAGENET_STD)).transpose(2, 0, 1)[None]
    return session.run(None, {"input": np.ascontiguousarray(x)})[0][0]


def independent(model: Path, root: Path, samples: List[Tuple[str, int]], ratio: float = 0.95) -> Dict:
    """Upstream's metric on independent_logits: a picture is top-k correct when fewer than k classes
    score above its label."""
    top1 = top5 = 0
    per_class = np.zeros((CLASSES, 2), np.int64)
    for relative, label in samples:
        logits = independent_logits(model, root, relative, ratio)
        above = int((logits > logits[label]).sum())
        top1 += above < 1
        top5 += above < 5
        per_class[label] += (1, above < 1)
    n = len(samples)
    return {
        "top1": top1 / n,
        "top5": top5 / n,
        "per_class": {c: per_class[c, 1] / per_class[c, 0] for c in range(CLASSES) if per_class[c, 0]},
    }


# --- the metric and the protocol ------------------------------------------------------------------


def test_top1_and_top5_equal_upstreams_protocol_computed_independently(model, folder, tmp_path):
    root, samples = folder
    report = evaluate_json(model, "--data", root, "--backend", "ort-cpu", "--report-dir", tmp_path / "r")
    expected = independent(model, root, samples)
    (b,) = report["backends"]
    assert report["format"] == "msla-deploy/evaluate-classification-report/1" and report["task"] == "classification"
    assert report["images"] == len(samples) == 36 and report["dataset"]["kind"] == "imagefolder"
    # figures that move with any picture: neither none nor all
    assert 0.2 < expected["top1"] < 0.9 and expected["top1"] < expected["top5"] < 1.0
    assert b["top1"] == pytest.approx(expected["top1"], abs=1e-12)
    assert b["top5"] == pytest.approx(expected["top5"], abs=1e-12)
    assert {row["class"]: row["top1"] for row in b["class_accuracy"]} == pytest.approx(expected["per_class"])
    assert [row["name"] for row in b["class_accuracy"]] == [f"class_{c:03d}" for c in range(CLASSES)]
    assert report["protocol"]["resize_short_side"] == 34 and report["passed"] is True


def test_labelled_with_the_models_own_protocol_predictions_every_picture_is_right(folder, tmp_path):
    """A model whose scores move with every pixel, and labels that are its top-1 and its fifth class
    under the protocol written here: top-1 50% and top-5 100% exactly only if evaluate's inputs are
    those (a bilinear resize, another crop offset or a rounded long side would flip some)."""
    root, samples = folder
    sensitive = tiny_classifier(tmp_path / "pixels.onnx", every_pixel=True)
    lines = []
    for i, (relative, _) in enumerate(samples):
        order = np.argsort(-independent_logits(sensitive, root, relative))
        lines.append(f"{relative} {order[0] if i % 2 == 0 else order[4]}")
    (root / "own.txt").write_text("\n".join(lines))
    report = evaluate_json(sensitive, "--data", root / "own.txt", "--backend", "ort-cpu", "--report-dir", tmp_path)
    assert report["backends"][0]["top1"] == 0.5 and report["backends"][0]["top5"] == 1.0


def test_another_crop_ratio_changes_the_inputs_as_upstream_would(model, folder, tmp_path):
    root, samples = folder
    report = evaluate_json(
        model, "--data", root, "--backend", "ort-cpu", "--crop-ratio", "0.5", "--report-dir", tmp_path
    )
    assert report["protocol"]["resize_short_side"] == 64 and report["protocol"]["crop_ratio"] == 0.5
    assert report["backends"][0]["top1"] == pytest.approx(independent(model, root, samples, 0.5)["top1"], abs=1e-12)


def test_a_list_file_gives_what_the_folder_gives(model, folder, tmp_path):
    root, samples = folder
    lines = ["# ImageNet-style val list: PATH INDEX", ""]
    lines += [f"val/{relative} {label}" for relative, label in reversed(samples)]  # another order, a sub-folder
    listing = root.parent / "val_list.txt"
    listing.write_text("\n".join(lines) + "\n\n")
    from_list = evaluate_json(model, "--data", listing, "--backend", "ort-cpu", "--report-dir", tmp_path / "l")
    from_folder = evaluate_json(model, "--data", root, "--backend", "ort-cpu", "--report-dir", tmp_path / "f")
    assert from_list["dataset"]["kind"] == "list" and from_list["images"] == from_folder["images"]
    for key in ("top1", "top5"):
        assert from_list["backends"][0][key] == from_folder["backends"][0][key]
    per_class = from_list["backends"][0]["class_accuracy"]
    assert set(per_class[0]) == {"class", "name", "images", "top1", "top5"}  # top5, as the backend's own field
    rows = [{k: r[k] for k in ("class", "images", "top1")} for r in per_class]
    assert rows == [
        {k: r[k] for k in ("class", "images", "top1")} for r in from_folder["backends"][0]["class_accuracy"]
    ]


@pytest.mark.parametrize("head", ["probs", "topk"])
def test_every_head_scores_as_the_logits_do(head, folder, model, tmp_path):
    root, _ = folder
    other = tiny_classifier(tmp_path / f"{head}.onnx", head=head)
    logits = evaluate_json(model, "--data", root, "--backend", "ort-cpu", "--report-dir", tmp_path / "a")
    scored = evaluate_json(other, "--data", root, "--backend", "ort-cpu", "--report-dir", tmp_path / "b")
    assert scored["backends"][0]["output"] == ("probs" if head == "probs" else "topk_indices")
    for key in ("top1", "top5"):
        assert scored["backends"][0][key] == logits["backends"][0][key]


def test_a_batch_of_four_pads_the_last_batch_and_counts_each_picture_once(folder, model, tmp_path):
    root, samples = folder
    batched = tiny_classifier(tmp_path / "b4.onnx", batch=4)
    report = evaluate_json(batched, "--data", root, "--backend", "ort-cpu", "--limit", "10", "--report-dir", tmp_path)
    assert report["artifact"]["batch"] == 4 and report["images"] == 10
    assert report["backends"][0]["top1"] == pytest.approx(independent(model, root, samples[:10])["top1"], abs=1e-12)
    assert any("--limit 10" in note and "class order" in note for note in report["notes"])


def test_ranking_ties_go_to_the_lower_class_and_nonfinite_rows_have_no_prediction():
    scores = np.array([[1.0, 3.0, 3.0, 0.0], [np.nan, 1.0, 2.0, 0.0], [0.0, 0.0, 0.0, 0.0]], np.float32)
    ranks = ranked(scores, 5)
    assert ranks.shape == (3, 4)
    assert ranks[0].tolist() == [1, 2, 0, 3] and ranks[1].tolist() == [-1] * 4 and ranks[2].tolist() == [0, 1, 2, 3]
    tally = AccuracyTally(4)
    tally.add(np.array([2, 1, 0]), ranks)
    assert tally.top1_accuracy() == pytest.approx(1 / 3) and tally.topk_accuracy() == pytest.approx(2 / 3)
    assert tally.nonfinite_pictures == 1


def test_a_list_counts_the_classes_it_names_not_its_highest_index(tmp_path):
    listing = tmp_path / "val.txt"
    listing.write_text("a.JPEG 3\nb.JPEG 500\nc.JPEG 500\n")
    dataset = find_class_dataset(listing, 1000, check_files=False)
    assert dataset.kind == "list" and dataset.classes == 2 and dataset.describe()["classes"] == 2


def test_imagefolder_order_is_torchvisions_with_nested_folders_and_hidden_entries_left_out(tmp_path):
    root = tmp_path / "data"
    for relative in ("b/x/2.png", "b/1.JPEG", "b/.hidden.png", "a/z.webp", "a/y.jpeg", "a/notes.txt", ".cache/q.png"):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(b"")
    dataset = find_class_dataset(root, 10)
    assert dataset.class_names == ["a", "b"]
    assert [(s.name, s.label) for s in dataset.samples] == [
        ("a/y.jpeg", 0),
        ("a/z.webp", 0),
        ("b/1.JPEG", 1),
        ("b/x/2.png", 1),
    ]


# --- several backends, gates ------------------------------------------------------------------------


@pytest.fixture
def fake_gpu(monkeypatch):
    """`--backend ort-cuda` runs on the CPU here, its scores changed by `change` (a test sets it),
    so that two backends can disagree on a machine without a GPU."""
    real_open, real_preflight = runtime.open, runtime.preflight
    state = {"change": lambda scores: scores}

    def preflight(backend, *args, **kwargs):
        if backend.name != "ort-cuda":
            real_preflight(backend, *args, **kwargs)

    def open_(artifact, backend, **kwargs):
        if backend.name != "ort-cuda":
            return real_open(artifact, backend, **kwargs)
        session = real_open(artifact, Backend("ort-cpu", "ort-cpu", True), **kwargs)
        run = session._run
        session._run = lambda feeds: {k: state["change"](v) for k, v in run(feeds).items()}
        return session

    monkeypatch.setattr(runtime, "preflight", preflight)
    monkeypatch.setattr(runtime, "open", open_)
    return state


def test_two_backends_in_one_pass_with_the_drop_gate(fake_gpu, model, folder, tmp_path):
    root, _ = folder
    fake_gpu["change"] = lambda scores: np.roll(scores, 1, axis=1)  # every top-1 moves to the next class
    args = ("--data", root, "--backend", "ort-cpu", "--backend", "ort-cuda", "--report-dir", tmp_path / "r")
    report = evaluate_json(model, *args)  # no gate: the figures, exit 0
    reference, candidate = report["backends"]
    assert report["against"] == "ort-cpu" and reference["top1_drop_points"] is None
    assert candidate["top1_drop_points"] == pytest.approx(100 * (reference["top1"] - candidate["top1"]))
    (pair,) = report["pairs"]
    assert pair["top1_agreement"] == 0.0 and pair["differing"] == report["images"]
    assert len(pair["differing_images"]) == 10

    failed = cli("evaluate", model, *args, "--max-top1-drop", "1")
    assert failed.exit_code == 1
    assert "ort-cuda loses" in one_error_line(failed) and "points of top-1 against ort-cpu" in one_error_line(failed)
    on_disk = ClassifyReport.read(tmp_path / "r" / "report.json")
    assert on_disk.passed is False and [b.passed for b in on_disk.backends] == [None, False]
    cases = ET.parse(tmp_path / "r" / "junit.xml").getroot().iter("testcase")
    assert [(c.get("name"), c.find("failure") is not None) for c in cases] == [
        ("ort-cuda: top-1 drop against ort-cpu", True)
    ]
    assert cli("evaluate", model, *args, "--max-top1-drop", "100").exit_code == 0


def test_the_min_top1_gate_holds_every_backend(model, folder, tmp_path):
    root, samples = folder
    top1 = 100 * independent(model, root, samples)["top1"]
    args = (model, "--data", root, "--backend", "ort-cpu", "--report-dir", tmp_path)
    result = cli("evaluate", *args, "--min-top1", f"{top1 + 1:.3f}")
    assert result.exit_code == 1 and "ort-cpu: top-1" in one_error_line(result) and "--min-top1" in result.output
    passed = evaluate_json(*args, "--min-top1", f"{top1 - 1:.3f}")
    assert passed["passed"] is True and passed["backends"][0]["passed"] is True


def test_nan_scores_fail_the_backend_with_or_without_a_gate(fake_gpu, model, folder, tmp_path):
    root, _ = folder

    def some_nan(scores):
        scores = scores.copy()
        scores[:, 0] = np.nan
        return scores

    fake_gpu["change"] = some_nan
    result = cli(
        "evaluate", model, "--data", root, "--backend", "ort-cpu", "--backend", "ort-cuda", "--report-dir", tmp_path
    )
    assert result.exit_code == 1 and "NaN/Inf scores in 36 of 36 picture(s)" in one_error_line(result)


# --- the record, the files, the console ---------------------------------------------------------------


def test_the_report_is_a_record_that_round_trips_with_its_markdown_and_junit(model, folder, tmp_path):
    root, _ = folder
    junit = tmp_path / "ci" / "junit.xml"
    report = evaluate_classifier(
        ClassifyOptions(artifact=model, data=root, backends=["ort-cpu"], report_dir=tmp_path / "r", junit=junit,
                        min_top1=1.0)
    )  # fmt: skip
    assert isinstance(report, ClassifyReport)
    assert ClassifyReport.from_dict(json.loads(json.dumps(report.to_dict()))) == report
    assert ClassifyReport.read(tmp_path / "r" / "report.json") == report
    markdown = (tmp_path / "r" / "report.md").read_text()
    assert "## msla-deploy evaluate (classification): PASS" in markdown and "| `ort-cpu` |" in markdown
    assert "Per-class top-1" in markdown and junit.read_bytes() == (tmp_path / "r" / "junit.xml").read_bytes()
    names = [c.get("name") for c in ET.parse(junit).getroot().iter("testcase")]
    assert names == ["ort-cpu: top-1 >= 1 %"]


def test_the_console_shows_a_short_table(model, folder, tmp_path):
    root, _ = folder
    result = cli("evaluate", model, "--data", root, "--backend", "ort-cpu", "--report-dir", tmp_path)
    assert result.exit_code == 0, result.output
    for text in ("top-1 %", "top-5 %", "imagefolder", "centre crop 32x32", "ort-cpu"):
        assert text in result.output


def test_the_classifier_runs_without_torch(model, folder, tmp_path):
    root, _ = folder
    result = run_without_torch(
        "evaluate", model, "--data", root, "--backend", "ort-cpu", "--report-dir", tmp_path, "--json", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["backends"][0]["top1"] is not None


# --- bad input: one line, exit 2 ----------------------------------------------------------------------


def _bad(*args) -> str:
    result = cli("evaluate", *args)
    assert result.exit_code == 2, result.output
    return one_error_line(result)


def _picture(path: Path, size=(40, 40)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros(size + (3,), np.uint8)).save(path)


def test_a_folder_with_no_class_folders(model, tmp_path):
    _picture(tmp_path / "flat" / "a.png")
    line = _bad(model, "--data", tmp_path / "flat", "--backend", "ort-cpu")
    assert "1 picture(s) directly in it and no class folder" in line and "one sub-folder per class" in line
    (tmp_path / "empty").mkdir()
    assert "no class folder in it" in _bad(model, "--data", tmp_path / "empty", "--backend", "ort-cpu")


def test_an_empty_class_folder(model, tmp_path):
    _picture(tmp_path / "d" / "cat" / "a.png")
    (tmp_path / "d" / "dog").mkdir()
    line = _bad(model, "--data", tmp_path / "d", "--backend", "ort-cpu")
    assert "class folder 'dog' (class 1) has no pictures" in line and "remove the folder" in line


def test_a_picture_that_is_not_a_picture_and_skip_bad(model, tmp_path):
    _picture(tmp_path / "d" / "cat" / "a.png")
    (tmp_path / "d" / "cat" / "b.jpg").write_text("not a picture")
    line = _bad(model, "--data", tmp_path / "d", "--backend", "ort-cpu", "--report-dir", tmp_path / "r")
    assert "b.jpg: not a readable picture" in line and "--skip-bad" in line
    assert not (tmp_path / "r" / "report.json").exists()  # nothing half-written
    report = evaluate_json(
        model, "--data", tmp_path / "d", "--backend", "ort-cpu", "--skip-bad", "--report-dir", tmp_path
    )
    assert report["images"] == 1 and [s["image"] for s in report["skipped"]] == ["cat/b.jpg"]
    (tmp_path / "d" / "cat" / "a.png").write_text("not one either")
    line = _bad(model, "--data", tmp_path / "d", "--backend", "ort-cpu", "--skip-bad", "--report-dir", tmp_path)
    assert "no picture could be evaluated, all 2 were bad" in line


def test_more_class_folders_than_the_model_has_classes(tmp_path):
    small = tiny_classifier(tmp_path / "two.onnx", classes=2)
    for name in ("a", "b", "c"):
        _picture(tmp_path / "d" / name / "1.png")
    assert "3 class folders, and the model has 2 classes" in _bad(
        small, "--data", tmp_path / "d", "--backend", "ort-cpu"
    )


def test_a_segmentation_dataset_given_to_a_classifier(model, tmp_path):
    _picture(tmp_path / "seg" / "images" / "a.png")
    _picture(tmp_path / "seg" / "labels" / "a.png")
    line = _bad(model, "--data", tmp_path / "seg", "--backend", "ort-cpu")
    assert "a folder segmentation dataset, not class folders" in line


@pytest.mark.parametrize(
    "line, expected",
    [
        ("a.png", "line 2: 'a.png' is not 'PATH INDEX'"),
        ("a.png cat", "line 2: 'a.png cat' is not 'PATH INDEX'"),
        ("a.png 12", "line 2: class index 12 is out of range (the model has 12 classes: 0-11)"),
        ("a.png -1", "line 2: class index -1 is out of range"),
        ("missing.png 1", "line 2: missing.png does not exist"),
    ],
)
def test_a_bad_list_line(model, tmp_path, line, expected):
    _picture(tmp_path / "a.png")
    listing = tmp_path / "list.txt"
    listing.write_text(f"a.png 0\n{line}\n")
    assert expected in _bad(model, "--data", listing, "--backend", "ort-cpu")


def test_a_list_file_that_is_not_text_or_has_no_lines(model, tmp_path):
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00\x81")
    assert "not a text list" in _bad(model, "--data", tmp_path / "binary.txt", "--backend", "ort-cpu")
    (tmp_path / "comments.txt").write_text("# nothing\n\n")
    assert "no 'PATH INDEX' lines" in _bad(model, "--data", tmp_path / "comments.txt", "--backend", "ort-cpu")
    assert "no such folder or file" in _bad(model, "--data", tmp_path / "nowhere", "--backend", "ort-cpu")


@pytest.mark.parametrize(
    "flag, value", [("--min-top1", "70"), ("--max-top1-drop", "0.5"), ("--crop-ratio", "0.9")]
)  # fmt: skip
def test_a_classification_flag_on_a_segmentation_model(flag, value, tmp_path):
    segmenter = tiny_segmenter(tmp_path / "seg.onnx")
    line = _bad(segmenter, "--data", tmp_path, flag, value)
    assert f"{flag} is a classification option" in line and "is a segmentation model" in line
    assert "--max-miou-drop" in line  # what it does take


@pytest.mark.parametrize(
    "flag, value",
    [("--max-miou-drop", "0.3"), ("--dataset", "folder"), ("--ignore-index", "0"), ("--save-predictions", "p")],
)
def test_a_segmentation_flag_on_a_classifier(model, tmp_path, flag, value):
    line = _bad(model, "--data", tmp_path, flag, value)
    assert f"{flag} is a segmentation option" in line and "is a classification model" in line
    assert "--min-top1" in line


@pytest.mark.parametrize(
    "flag, value, expected",
    [
        ("--min-top1", "101", "--min-top1 101.0: must be a percentage in 0-100"),
        ("--max-top1-drop", "-1", "--max-top1-drop -1.0: must be >= 0"),
        ("--crop-ratio", "1.5", "--crop-ratio 1.5: must be in (0, 1]"),
        ("--limit", "0", "--limit 0: must be at least 1"),
    ],
)
def test_bad_gate_and_protocol_values(model, folder, flag, value, expected):
    assert expected in _bad(model, "--data", folder[0], "--backend", "ort-cpu", flag, value)


def test_the_segmentation_api_refuses_a_classifier_and_the_classification_api_a_segmenter(model, folder, tmp_path):
    from msla_deploy.evaluate.run import EvaluateOptions, Evaluation

    with pytest.raises(BadInput, match="is a classification model, not a segmentation one"):
        Evaluation(EvaluateOptions(artifact=model, data=folder[0], backends=["ort-cpu"], report_dir=tmp_path))
    segmenter = tiny_segmenter(tmp_path / "seg.onnx")
    with pytest.raises(BadInput, match="is a segmentation model, not a classifier"):
        evaluate_classifier(ClassifyOptions(artifact=segmenter, data=folder[0], backends=["ort-cpu"]))
