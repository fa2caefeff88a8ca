"""The trained stand-in's pieces: procedural scenes (benchmarks/scenes.py) and the training
script (benchmarks/train_synthetic.py), whose checkpoint must load like an official one."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.fixtures import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import scenes  # noqa: E402

H, W = 64, 128


@pytest.fixture(scope="module")
def scene_set():
    return [scenes.make_scene(7, i, H, W) for i in range(40)]


def test_scenes_are_deterministic_by_seed_and_index():
    a, b = scenes.make_scene(3, 11, H, W), scenes.make_scene(3, 11, H, W)
    for field in ("image", "train_ids", "label_ids"):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field
    other_seed, other_index = scenes.make_scene(4, 11, H, W), scenes.make_scene(3, 12, H, W)
    assert not np.array_equal(a.image, other_seed.image)
    assert not np.array_equal(a.train_ids, other_index.train_ids)
    assert a.image.shape == (H, W, 3) and a.image.dtype == np.uint8
    assert a.train_ids.shape == (H, W) and a.train_ids.dtype == np.uint8


def test_every_claimed_class_occurs_and_most_are_absent_somewhere(scene_set):
    present = np.array([[np.any(s.train_ids == c) for c in scenes.CLASSES] for s in scene_set])
    assert present.any(axis=0).all(), [c for c in scenes.CLASSES if not present[:, c].any()]
    # only the sky is in every scene by construction; the road is nearly always there
    absent_somewhere = [c for c in scenes.CLASSES if not present[:, c].all()]
    assert len(absent_somewhere) >= len(scenes.CLASSES) - 2
    values = np.unique(np.concatenate([s.train_ids.ravel() for s in scene_set]))
    assert set(values.tolist()) <= set(scenes.CLASSES) | {scenes.IGNORE}


def test_every_scene_has_ignore_pixels_written_as_ignored_label_ids(scene_set):
    evaluated = set(scenes.CITYSCAPES_LABEL_IDS)
    for s in scene_set:
        void = s.train_ids == scenes.IGNORE
        assert void.any()
        assert not (set(np.unique(s.label_ids[void]).tolist()) & evaluated)
        # the label ids say the same as the train ids, pixel for pixel
        assert np.array_equal(scenes.to_train_ids(s.label_ids), s.train_ids)
        assert np.array_equal(s.label_ids[~void], np.array(scenes.CITYSCAPES_LABEL_IDS, np.uint8)[s.train_ids[~void]])


def test_cityscapes_layout_reads_back_as_the_generated_scenes(tmp_path):
    from PIL import Image

    written = scenes.write_cityscapes(tmp_path, 3, H, W, seed=5)
    assert len(written) == 3
    for i, pair in enumerate(written):
        image, label = pair["image"], pair["label"]
        assert image.relative_to(tmp_path).parts[:2] == ("leftImg8bit", "val")
        assert label.relative_to(tmp_path).parts[:2] == ("gtFine", "val")
        assert image.name.endswith("_leftImg8bit.png") and label.name.endswith("_gtFine_labelIds.png")
        assert image.name[: -len("_leftImg8bit.png")] == label.name[: -len("_gtFine_labelIds.png")]
        scene = scenes.make_scene(5, i, H, W)
        assert np.array_equal(np.asarray(Image.open(image).convert("RGB")), scene.image)
        assert np.array_equal(np.asarray(Image.open(label)), scene.label_ids)


def test_metrics_perfect_and_hand_computed():
    import train_synthetic as ts

    target = np.array([[0, 0, 1, 1], [2, 2, 255, 255]], np.uint8)
    perfect = ts.metrics(ts.confusion_matrix(target.astype(np.int64), target))
    assert perfect["pixel_accuracy"] == 1.0 and perfect["miou"] == 1.0 and perfect["classes_scored"] == 3
    # one road pixel called sidewalk: road 1/2, sidewalk 2/3, building 1; ignore pixels don't count
    pred = np.array([[0, 1, 1, 1], [2, 2, 0, 5]], np.int64)
    result = ts.metrics(ts.confusion_matrix(pred, target))
    assert result["pixel_accuracy"] == pytest.approx(5 / 6)
    assert result["miou"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)


@pytest.mark.slow
def test_three_training_steps_write_a_checkpoint_that_loads_strictly(tmp_path):
    import torch

    from msla_deploy import zoo

    out = tmp_path / "models"
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "train_synthetic.py"),
            "--out",
            str(out),
            "--steps",
            "3",
            "--res",
            f"{H}x{W}",
            "--batch",
            "2",
            "--bn-batches",
            "2",
            "--val-count",
            "2",
            "--workers",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    spec = zoo.get_spec("efficientvit-seg-b0-cityscapes")
    checkpoint = out / spec.checkpoint_file
    assert checkpoint.name == "efficientvit_seg_b0_cityscapes.pt"
    plain = torch.load(checkpoint, map_location="cpu", weights_only=True)
    model = zoo.build(spec.name)
    assert set(plain) == set(model.state_dict())
    fresh_bn = {k: v.clone() for k, v in model.state_dict().items() if k.endswith("running_mean")}
    sha = zoo.load_checkpoint(model, checkpoint)  # strict, weights_only=True
    assert len(sha) == 64
    # the BN statistics come from data: none is still the fresh zero mean
    loaded = model.state_dict()
    assert all(not torch.equal(loaded[k], v) for k, v in fresh_bn.items())
    record = json.loads(checkpoint.with_suffix(".train.json").read_text())
    assert record["steps"] == 3 and record["resolution"] == [H, W] and record["seed"] == 0
    assert record["sha256"] == sha
    assert 0.0 <= record["held_out"]["pixel_accuracy"] <= 1.0 and np.isfinite(record["final_loss"])
    assert "3 " in done.stdout and "img/s" in done.stdout


def test_bn_statistics_are_recomputed_not_averaged_into_the_old_ones():
    import torch
    import train_synthetic as ts

    from msla_deploy import zoo

    torch.manual_seed(0)
    model = zoo.build(ts.MODEL)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]

    def recompute_after(old_mean: float):
        for m in norms:
            m.running_mean.fill_(old_mean)
            m.running_var.fill_(3.0)
        ts.recompute_bn(model, seed=0, batch=2, res=(H, W), count=2)
        return [(m.running_mean.clone(), m.running_var.clone(), int(m.num_batches_tracked)) for m in norms]

    first, second = recompute_after(5.0), recompute_after(-5.0)
    for (mean_a, var_a, n_a), (mean_b, var_b, n_b) in zip(first, second):
        assert torch.allclose(mean_a, mean_b, atol=1e-6) and torch.allclose(var_a, var_b, atol=1e-6)
        assert n_a == n_b == 2
    assert all(m.momentum == 0.1 for m in norms)  # the training momentum is put back
