"""`msla-deploy predict ARTIFACT pictures --everything` on a SAM artifact: a masks JSON (segment-
anything's records, COCO RLE) and an overlay per picture, the Rich table, --json (a
SamEverythingReport), and the one-line refusals (exit 2, nothing written). A 4 x 4 grid on a tiny
picture of the session's export (tests/conftest.py's sam_artifact)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask
from typer.testing import CliRunner

from msla_deploy.cli import app
from msla_deploy.predict.sam_everything import EverythingMasks, SamEverythingReport
from msla_deploy.runtime.sam_everything import point_grid
from tests.fixtures import one_error_line

runner = CliRunner()
CHEAP = ("--points-per-side", "4", "--pred-iou-thresh", "0", "--stability-score-thresh", "0")


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def picture(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("everything") / "tiles.png"
    coarse = np.random.default_rng(3).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    Image.fromarray(np.repeat(np.repeat(coarse, 12, axis=0), 13, axis=1)).save(path)  # 48 x 65
    return path


def test_masks_json_overlay_and_table(sam_artifact, picture, tmp_path):
    out = tmp_path / "out"
    result = cli("predict", sam_artifact, picture, "--everything", *CHEAP, "--out", out, "--backend", "ort-cpu")
    assert result.exit_code == 0, result.output
    assert "after NMS" in result.stdout and "4x4 points" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == ["tiles_masks.json", "tiles_overlay.png"]
    masks = EverythingMasks.read(out / "tiles_masks.json")
    assert masks.size == [48, 65] and masks.parameters["points_per_side"] == 4 and masks.masks
    assert masks.parameters["box_nms_thresh"] == 0.7  # not given: the record's default
    grid = (point_grid(4) * [65, 48]).tolist()
    for record in masks.masks:
        rle = record["segmentation"]
        decoded = coco_mask.decode({"size": rle["size"], "counts": rle["counts"].encode()})
        assert decoded.shape == (48, 65) and int(decoded.sum()) == record["area"]
        assert record["point_coords"][0] in grid and record["crop_box"] == [0, 0, 65, 48]
    assert np.asarray(Image.open(out / "tiles_overlay.png")).shape == (48, 65, 3)

    again = cli("predict", sam_artifact, picture, "--everything", *CHEAP, "--out", out, "--json")
    assert again.exit_code == 2 and "exists" in one_error_line(again)  # no --overwrite
    again = cli("predict", sam_artifact, picture, "--everything", *CHEAP, "--out", out, "--json", "--overwrite")
    assert again.exit_code == 0, again.output
    report = SamEverythingReport.from_dict(json.loads(again.stdout))
    (only,) = report.pictures
    assert only.masks == len(masks.masks) and only.counts["points"] == 16 and only.counts["masks"] == 48
    assert only.nonfinite == 0 and report.parameters["pred_iou_thresh"] == 0.0
    assert EverythingMasks.read(out / "tiles_masks.json").masks == masks.masks  # the same run twice


def test_refusals_are_one_line(sam_artifact, picture, tmp_path):
    out = tmp_path / "out"
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps({"images": [{"file_name": "tiles.png", "boxes": [[1, 1, 9, 9]]}]}))
    for args, words in [
        (("--everything", "--prompts", prompts), "--prompts does not go with it"),
        (("--everything", "--multimask"), "--multimask does not go with it"),
        (("--everything", "--points-per-side", "0"), "--points-per-side 0 is not a whole number"),
        (("--everything", "--box-nms-thresh", "1.5"), "--box-nms-thresh 1.5 is outside 0..1"),
        (("--points-per-side", "4", "--prompts", prompts), "--points-per-side is for --everything"),
    ]:
        result = cli("predict", sam_artifact, picture, *args, "--out", out)
        assert result.exit_code == 2 and words in one_error_line(result), result.output
    assert not out.exists()
    other = tmp_path / "seg"  # a model of another task (a copy retasked: refused before any run)
    shutil.copytree(sam_artifact, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["model"]["task"] = "segmentation"
    (other / "manifest.json").write_text(json.dumps(manifest))
    result = cli("predict", other, picture, "--everything", "--out", out)
    assert result.exit_code == 2 and "--everything is for SAM models" in one_error_line(result)
