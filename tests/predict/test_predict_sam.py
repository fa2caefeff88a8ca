"""`msla-deploy predict ARTIFACT pictures --prompts prompts.json` on a SAM artifact: mask PNGs equal to
SamPredictor's masks, the COCO results file decoding to them, --multimask's best mask, --json (a
SamPredictReport), the one-line errors (exit 2, nothing written), and a torch-free run. One export
for the session (tests/conftest.py's sam_artifact)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from msla_deploy import rle
from msla_deploy.cli import app
from msla_deploy.predict.sam import RESULTS_NAME, SamPredictReport
from msla_deploy.runtime.sam_predictor import SamPredictor
from tests.fixtures import one_error_line, run_without_torch

runner = CliRunner()

PROMPTS = {
    "images": [
        {"file_name": "street.png", "id": 7, "boxes": [[20, 30, 200, 150], [150, 40, 290, 190]]},
        {"file_name": "sub/field.png", "points": [[[60, 50], [10, 90]]], "labels": [[1, 0]]},
    ]
}


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def _smooth(height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
    return np.repeat(np.repeat(coarse, 16, axis=0), 16, axis=1)[:height, :width]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sam-pictures")
    (root / "sub").mkdir()
    Image.fromarray(_smooth(201, 301, 1)).save(root / "street.png")
    Image.fromarray(_smooth(120, 90, 2)).save(root / "sub" / "field.png")
    return root


def _prompts(directory: Path, data=None) -> Path:
    path = directory / "prompts.json"
    path.write_text(json.dumps(PROMPTS if data is None else data))
    return path


def test_masks_overlays_and_coco_results(sam_artifact, folder, tmp_path):
    out = tmp_path / "out"
    result = cli("predict", sam_artifact, folder, "--prompts", _prompts(tmp_path), "--out", out, "--backend", "ort-cpu")
    assert result.exit_code == 0, result.output
    assert "street.png" in result.output and "COCO RLE" in result.output
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert names == [
        RESULTS_NAME,
        "street_mask0.png",
        "street_mask1.png",
        "street_overlay.png",
        "sub/field_mask0.png",
        "sub/field_overlay.png",
    ]
    results = json.loads((out / RESULTS_NAME).read_text())
    assert [(r["image_id"], r["file_name"], r["prompt"]) for r in results] == [
        (7, "street.png", 0),
        (7, "street.png", 1),
        (2, "sub/field.png", 0),  # no id: its place in the file
    ]
    with SamPredictor(sam_artifact, "ort-cpu") as sam:
        for picture, entry, stem in ((folder / "street.png", 0, "street"), (folder / "sub/field.png", 1, "sub/field")):
            prompts = PROMPTS["images"][entry]
            sam.set_image(picture)
            masks, scores, _ = sam.predict(
                points=prompts.get("points"), labels=prompts.get("labels"), boxes=prompts.get("boxes"), multimask=False
            )
            mine = [r for r in results if r["file_name"] == prompts["file_name"]]
            for i, r in enumerate(mine):
                png = np.asarray(Image.open(out / f"{stem}_mask{i}.png"))
                assert set(np.unique(png)) <= {0, 255}
                assert np.array_equal(png == 255, masks[i, 0])
                assert np.array_equal(rle.decode(r["segmentation"]), masks[i, 0])
                assert r["segmentation"]["size"] == list(masks.shape[2:])
                assert r["area"] == int(masks[i, 0].sum()) and r["bbox"] == rle.bbox(masks[i, 0])
                assert r["score"] == pytest.approx(float(scores[i, 0]), abs=1e-6) and r["category_id"] == 1
            overlay = np.asarray(Image.open(out / f"{stem}_overlay.png"))
            assert overlay.shape == (*masks.shape[2:], 3)


@pytest.mark.slow  # three predict runs (~30 s here)
def test_multimask_keeps_the_best_scored_mask_and_json(sam_artifact, folder, tmp_path):
    out = tmp_path / "out"
    prompts = _prompts(tmp_path)
    result = cli("predict", sam_artifact, folder / "street.png", folder / "sub", "--prompts", prompts, "--out", out)
    assert result.exit_code == 0, result.output  # street.png given as a file, field.png through its folder
    result = cli(
        "predict", sam_artifact, folder, "--prompts", prompts, "--out", out, "--multimask", "--overwrite", "--json"
    )
    assert result.exit_code == 0, result.output
    report = SamPredictReport.from_dict(json.loads(result.stdout))
    assert report.multimask and [len(p.masks) for p in report.pictures] == [2, 1]
    with SamPredictor(sam_artifact, "ort-cpu") as sam:
        sam.set_image(folder / "street.png")
        masks, scores, _ = sam.predict(boxes=PROMPTS["images"][0]["boxes"], multimask=True)
    for i, mask in enumerate(report.pictures[0].masks):
        best = int(scores[i].argmax())
        assert mask.score == pytest.approx(float(scores[i, best]), abs=1e-6)
        assert np.array_equal(np.asarray(Image.open(mask.file)) == 255, masks[i, best])


def _changed(entry: int, **fields):
    data = json.loads(json.dumps(PROMPTS))
    data["images"][entry].update(fields)
    return data


@pytest.mark.parametrize(
    "data, message",
    [
        (_changed(0, boxes=[[20, 30, 400, 150]]), "street.png: box [20.0, 30.0, 400.0, 150.0] of prompt 0 is outside"),
        (_changed(1, points=[[[60, 500]]], labels=[[1]]), "sub/field.png: point [60.0, 500.0] of prompt 0 is outside"),
        (_changed(0, boxes=[[200, 30, 20, 150]]), "x1 < x0"),
        (_changed(0, boxes=None), "no prompt"),
        (_changed(1, points=[[[1, 1]] * 16], labels=[[1] * 16]), "above its profile's maximum of 16"),
        ({"images": PROMPTS["images"][:1]}, "field.png has no entry in --prompts"),
        ({"images": PROMPTS["images"] + [{"file_name": "x.png", "boxes": [[0, 0, 1, 1]]}]}, "x.png is none of"),
        ({"images": []}, 'no "images" list'),
        (_changed(0, box=[[0, 0, 1, 1]]), "unknown key 'box'"),
    ],
)
def test_bad_prompts_are_one_line_and_write_nothing(sam_artifact, folder, tmp_path, data, message):
    out = tmp_path / "out"
    result = cli("predict", sam_artifact, folder, "--prompts", _prompts(tmp_path, data), "--out", out)
    assert result.exit_code == 2, result.output
    assert message in one_error_line(result)
    assert not out.exists()


def test_option_errors(sam_artifact, folder, tmp_path):
    prompts = _prompts(tmp_path)
    result = cli("predict", sam_artifact, folder, "--out", tmp_path / "out")
    assert result.exit_code == 2 and "needs each picture's prompts" in one_error_line(result)
    result = cli("predict", sam_artifact, folder, "--prompts", prompts)
    assert result.exit_code == 2 and "pass --out DIR" in one_error_line(result)
    result = cli("predict", sam_artifact, folder, "--prompts", prompts, "--out", tmp_path / "o", "--top-k", "3")
    assert result.exit_code == 2 and "--top-k is not for SAM models" in one_error_line(result)
    # a model of another task refuses the SAM options (a copy retasked: the check comes before any run)
    other = tmp_path / "seg"
    shutil.copytree(sam_artifact, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["model"]["task"] = "segmentation"
    (other / "manifest.json").write_text(json.dumps(manifest))
    result = cli("predict", other, folder, "--prompts", prompts, "--out", tmp_path / "o")
    assert result.exit_code == 2 and "--prompts is for SAM models" in one_error_line(result)


def test_existing_outputs_need_overwrite(sam_artifact, folder, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / RESULTS_NAME).write_text("[]")
    result = cli("predict", sam_artifact, folder, "--prompts", _prompts(tmp_path), "--out", out)
    assert result.exit_code == 2 and "exists" in one_error_line(result)
    assert sorted(p.name for p in out.iterdir()) == [RESULTS_NAME]


def test_predict_runs_without_torch(sam_artifact, folder, tmp_path):
    out = tmp_path / "out"
    result = run_without_torch(
        "predict", sam_artifact, folder, "--prompts", _prompts(tmp_path), "--out", out, "--json", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["format"].startswith("msla-deploy/predict-sam")
    assert (out / RESULTS_NAME).is_file()
