"""`msla-deploy evaluate` of a SAM artifact (the session's l0 export) on a tiny COCO set written
here: the report's mIoU equals our own recomputation from --save-predictions (ground truth decoded
with pycocotools here, IoU, first click and bins by this file's own code), box and point prompts
on ort-cpu and the torch reference, gates exit 1, bad input exit 2 on one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from msla_deploy.cli import app
from msla_deploy.evaluate.protocols import protocol_for
from msla_deploy.evaluate.sam_report import SamPredictions, SamReport, reasons
from tests.evaluate.coco_data import coco_document, write_coco
from tests.evaluate.test_sam_protocol import brute_force_click
from tests.fixtures import one_error_line


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    return write_coco(tmp_path_factory.mktemp("coco") / "coco")


def truth_masks(root: Path):
    """annotation id -> (area, bbox, H x W bool), decoded with pycocotools here."""
    from pycocotools import mask as mask_util

    document = json.loads((root / "annotations" / "instances_val.json").read_text())
    size = {i["id"]: (i["height"], i["width"]) for i in document["images"]}
    found = {}
    for ann in document["annotations"]:
        h, w = size[ann["image_id"]]
        seg = ann["segmentation"]
        if isinstance(seg, list):
            rle = mask_util.merge(mask_util.frPyObjects(seg, h, w))
        elif isinstance(seg["counts"], list):
            rle = mask_util.frPyObjects(seg, h, w)
        else:
            rle = dict(seg, counts=seg["counts"].encode())
        found[ann["id"]] = (ann["area"], ann["bbox"], mask_util.decode(rle).astype(bool))
    return found


def recompute(predictions: SamPredictions, truth):
    """{all, small, medium, large: mean IoU % or None} from the saved masks, by hand."""
    from pycocotools import mask as mask_util

    ious, areas = [], []
    for p in predictions.instances:
        area, _, gt = truth[p.annotation_id]
        mask = mask_util.decode(dict(p.segmentation, counts=p.segmentation["counts"].encode())).astype(bool)
        inter, union = int((mask & gt).sum()), int((mask | gt).sum())
        iou = inter / (union + 1e-7) * 100
        assert p.iou == pytest.approx(iou, abs=1e-9)
        ious.append(iou)
        areas.append(area)
    bins = {"all": lambda a: True, "small": lambda a: a <= 1024, "medium": lambda a: 1024 <= a <= 9216}
    bins["large"] = lambda a: a >= 9216
    means = {}
    for name, inside in bins.items():
        chosen = [iou for iou, area in zip(ious, areas) if inside(area)]
        means[name] = sum(chosen) / len(chosen) if chosen else None
    return means


def evaluate(*args):
    return CliRunner().invoke(app, ["evaluate", *map(str, args)])


def check_against_predictions(report: dict, folder: Path, truth, count: int):
    for backend in report["backends"]:
        predictions = SamPredictions.read(folder / f"{backend['backend']}.json")
        assert len(predictions.instances) == count
        means = recompute(predictions, truth)
        for scope, value in means.items():
            if value is None:
                assert backend["miou"][scope] is None
            else:
                assert backend["miou"][scope] == pytest.approx(value, abs=1e-6)
    return {b["backend"]: SamPredictions.read(folder / f"{b['backend']}.json") for b in report["backends"]}


def masks_agree(a: SamPredictions, b: SamPredictions) -> float:
    from pycocotools import mask as mask_util

    def decode(p):
        return mask_util.decode(dict(p.segmentation, counts=p.segmentation["counts"].encode())).astype(bool)

    ious = [
        (decode(x) & decode(y)).sum() / max((decode(x) | decode(y)).sum(), 1) for x, y in zip(a.instances, b.instances)
    ]
    return float(min(ious))


@pytest.mark.slow
def test_box_prompts_on_ort_and_torch(sam_artifact, coco, tmp_path):
    result = evaluate(sam_artifact, "--data", coco, "--backend", "ort-cpu", "--backend", "torch", "--min-miou", "0",
                      "--save-predictions", tmp_path / "pred", "--report-dir", tmp_path / "rep", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["against"] == "torch" and report["instances"] == 4 and report["pictures"] == 2
    assert report["dataset"]["skipped_small"] == 1 and report["skipped_instances"][0]["annotation_id"] == 23
    assert report["backends"][0]["instances"] == {"all": 4, "small": 2, "medium": 2, "large": 0}
    assert report["backends"][0]["miou"]["large"] is None
    truth = truth_masks(coco)
    saved = check_against_predictions(report, tmp_path / "pred", truth, 4)
    for p in saved["torch"].instances:  # the prompt: the ground-truth box, xyxy
        x, y, w, h = truth[p.annotation_id][1]
        assert p.prompt == [x, y, x + w, y + h]
    assert masks_agree(saved["ort-cpu"], saved["torch"]) > 0.98  # the torch reference runs what was exported
    assert (tmp_path / "rep" / "report.md").is_file() and (tmp_path / "rep" / "junit.xml").is_file()
    # the record reads back; the drop gate, on its figures
    record = SamReport.read(tmp_path / "rep" / "report.json")
    assert record.reference.backend == "torch" and record.passed
    record.max_miou_drop_points = 0.5
    record.backends[0].miou_drop_points = 0.75
    assert reasons(record, record.backends[0]) == ["ort-cpu loses 0.750 points of mIoU against torch (budget 0.5)"]
    assert reasons(record, record.backends[1]) == []


def test_point_prompts_gate_and_first_clicks(sam_artifact, coco, tmp_path):
    result = evaluate(sam_artifact, "--data", coco, "--backend", "ort-cpu", "--prompt", "point", "--limit", "1",
                      "--min-miou", "99", "--save-predictions", tmp_path / "pred",
                      "--report-dir", tmp_path / "rep")  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "ort-cpu: mIoU" in one_error_line(result) and "below --min-miou 99" in one_error_line(result)
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert not report["passed"] and report["backends"][0]["passed"] is False
    assert report["protocol"]["prompt"] == "point" and report["instances"] == 2
    truth = truth_masks(coco)
    saved = check_against_predictions(report, tmp_path / "pred", truth, 2)
    for p in saved["ort-cpu"].instances:
        assert p.prompt == [*brute_force_click(truth[p.annotation_id][2]), 1]
    assert "failure" in (tmp_path / "rep" / "junit.xml").read_text()


def spoiled(tmp_path, spoil):
    document = coco_document()
    spoil(document)
    return write_coco(tmp_path / "coco", document)


@pytest.mark.parametrize(
    "spoil, message",
    [
        (lambda d: d.pop("annotations"), "has no annotations"),
        (
            lambda d: d["annotations"][3]["segmentation"][0].__setitem__(1, -3),
            "annotation 22 (image 2, two.png): polygon point (8, -3) is outside the 96x64 image",
        ),
        (lambda d: d["images"][0].__setitem__("file_name", "gone.png"), "image 1: "),
    ],
)
def test_bad_input_is_one_line_before_anything_runs(sam_artifact, tmp_path, spoil, message):
    result = evaluate(sam_artifact, "--data", spoiled(tmp_path, spoil), "--report-dir", tmp_path / "rep")
    assert result.exit_code == 2, result.output
    assert message in one_error_line(result)
    assert not (tmp_path / "rep").exists()


def test_flags_of_other_protocols_and_unknown_backends_are_refused(sam_artifact, coco, tmp_path):
    result = evaluate(sam_artifact, "--data", coco, "--min-top1", "50")
    assert result.exit_code == 2 and "--min-top1 is a classification option" in one_error_line(result)
    result = evaluate(sam_artifact, "--data", coco, "--backend", "bogus", "--report-dir", tmp_path / "rep")
    assert result.exit_code == 2 and "bogus" in one_error_line(result)
    assert not (tmp_path / "rep").exists()
    assert "--prompt" in protocol_for("sam").flags and "--max-miou-drop" in protocol_for("segmentation").flags
