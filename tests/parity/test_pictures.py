"""The pictures people read: validate's absolute error scale and capped grid, evaluate's worst
image, bench's labels, and the Pillow drawing blocks under them. Pure numpy + Pillow: no model."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from msla_deploy import drawing
from msla_deploy.artifact.reference import IMAGENET_MEAN, IMAGENET_STD
from msla_deploy.bench.plot import LABEL_MAX_W, _label_lines, render
from msla_deploy.evaluate.pictures import disagreement_figure as evaluate_figure
from msla_deploy.evaluate.pictures import keep_labels, write_disagreement
from msla_deploy.parity import pictures
from msla_deploy.parity.budgets import FP16, FP32
from msla_deploy.parity.pictures import (
    LIMIT_COLOUR,
    NONFINITE,
    OVER,
    choose_samples,
    disagreement_figure,
    error_heatmaps,
    heat_colours,
    heat_scale,
    input_pictures,
    write_pictures,
)


def _logits(samples: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((samples, 19, 8, 16)) * 3).astype(np.float32)


def _preprocessed(rgb: np.ndarray) -> np.ndarray:
    """[N, H, W, 3] uint8 -> [N, 3, H, W] as the reference bundle stores inputs."""
    x = rgb.astype(np.float32).transpose(0, 3, 1, 2) / 255
    return (x - np.asarray(IMAGENET_MEAN, np.float32).reshape(1, 3, 1, 1)) / np.asarray(
        IMAGENET_STD, np.float32
    ).reshape(1, 3, 1, 1)


def _colour_count(picture, colour) -> int:
    array = drawing.to_array(picture)
    return int(np.all(array == np.asarray(colour, np.uint8), axis=-1).sum())


# --- the error heatmap's absolute scale -----------------------------------------------------------


def test_heat_scale_is_absolute_against_the_limit():
    limit = 1.4e-3
    rgb = heat_colours(np.array([0.0, 1e-7, limit / 2, limit, limit * 1.0001, 50.0]), limit)
    assert rgb[0].tolist() == [0, 0, 0]
    assert rgb[1].max() <= 1  # a 1e-7 error is black, not red-hot
    assert 0 < rgb[2].max() < 255 and rgb[2].tolist() != LIMIT_COLOUR.tolist()
    assert rgb[3].tolist() == LIMIT_COLOUR.tolist()  # at the budget: the limit colour
    assert rgb[4].tolist() == rgb[5].tolist() == OVER.tolist()  # beyond it: one saturated colour
    nan = heat_colours(np.array([0.0, 0.0]), limit, np.array([False, True]))
    assert nan[1].tolist() == NONFINITE.tolist() and nan[0].tolist() == [0, 0, 0]


def test_a_perfect_export_is_black_whatever_its_own_largest_error():
    reference = _logits(2)
    candidate = reference + np.float32(9e-8)
    scale = heat_scale(FP32, reference)
    peak = float(np.abs(reference).max())
    assert scale.judged and scale.limit == pytest.approx(FP32.max_abs_limit(peak))
    maps = error_heatmaps(reference, candidate, scale.limit, (64, 128))
    assert maps.shape == (2, 64, 128, 3) and maps.max() <= 1
    broken = candidate.copy()
    broken[1, 3, 2, 5] = np.nan
    broken[0, 0, 0, 0] += scale.limit  # exactly one limit too far: over it
    maps = error_heatmaps(reference, broken, scale.limit)
    assert maps[1, 2, 5].tolist() == NONFINITE.tolist() and maps[0, 0, 0].tolist() == OVER.tolist()


def test_a_budget_without_a_max_abs_limit_scales_by_its_cosine():
    reference = _logits(1)
    scale = heat_scale(FP16, reference)
    rms = float(np.sqrt(np.mean(reference.astype(np.float64) ** 2)))
    assert not scale.judged and scale.limit == pytest.approx(np.sqrt(2 * (1 - FP16.min_cosine)) * rms)
    assert "cosine" in scale.source


# --- the grid ---------------------------------------------------------------------------------------


def test_the_grid_caps_the_samples_and_says_which(tmp_path):
    reference = _logits(35)
    candidate = reference.copy()
    for i in (3, 20, 31):  # the ones worth seeing: their labels change
        candidate[i] = _logits(1, seed=i)[0]
    candidate[12, :, 0, 0] = np.nan
    drawn = choose_samples(reference, candidate, cap=8)
    assert len(drawn) == 8 and drawn == sorted(drawn) and {3, 12, 20, 31} <= set(drawn)
    entry = write_pictures(tmp_path, "", "logits", reference, candidate, None, FP32, cap=8)
    assert entry["samples_drawn"] == drawn and entry["samples"] == 35
    assert entry["error_scale"] == pytest.approx(heat_scale(FP32, reference).limit)
    with Image.open(tmp_path / entry["disagreement"]) as capped:
        capped_height = capped.height
    only_eight = disagreement_figure("logits", reference[drawn], candidate[drawn], None)
    assert abs(capped_height - only_eight.height) < 64  # eight rows, not 35 (the captions differ by a line)
    assert choose_samples(reference[:5], candidate[:5], cap=8) == [0, 1, 2, 3, 4]


def test_the_input_is_shown_beside_its_maps_and_nan_has_a_legend(tmp_path):
    rgb = np.zeros((2, 64, 128, 3), np.uint8)
    rgb[:] = (200, 40, 90)
    inputs = _preprocessed(rgb)
    assert np.abs(input_pictures(inputs).astype(int) - rgb).max() <= 1
    reference = _logits(2)
    figure = disagreement_figure("logits", reference, reference.copy(), inputs, (64, 128))
    assert _colour_count(figure, (200, 40, 90)) >= 2 * 64 * 128  # both inputs, at least at their resolution
    assert _colour_count(figure, NONFINITE) > 0  # the NaN/Inf legend swatch, even with none in the output
    write_pictures(tmp_path, "x-", "logits", reference, reference.copy(), inputs, FP32)
    with Image.open(tmp_path / "x-error_heatmap.png") as heat:
        assert heat.mode == "RGB" and _colour_count(heat, (200, 40, 90)) >= 2 * 64 * 128


def test_disagreement_marks_changed_labels_white_and_nan_in_the_legend_colour():
    reference = _logits(1)
    candidate = reference.copy()
    labels = reference.argmax(axis=1)
    candidate[0, (labels[0, 0, 0] + 1) % 19, 0, 0] = 100.0  # one label changes
    candidate[0, :, 1, 1] = np.inf
    maps = pictures.disagreement_maps(reference, candidate)
    assert maps[0, 0, 0].tolist() == [255, 255, 255] and maps[0, 1, 1].tolist() == NONFINITE.tolist()
    assert maps[0, 2, 2].max() < 255


# --- evaluate, bench -----------------------------------------------------------------------------


def test_evaluate_worst_image_shows_the_picture_and_both_backends(tmp_path):
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 19, (96, 200))
    cand = ref.copy()
    cand[:10] = (cand[:10] + 1) % 19
    cand[50, :7] = -1  # metrics.NO_LABEL: NaN/Inf logits there
    kept = keep_labels(ref, cand)
    assert kept.shape == (2, 96, 200) and kept.dtype == np.int16 and kept.min() == -1
    colours = pictures.palette(19)
    picture = np.zeros((96, 200, 3), np.uint8)
    picture[:] = (12, 200, 34)
    figure = evaluate_figure(kept, "torch", "ort-cpu", "aachen/x", colours, None, picture)
    assert _colour_count(figure, (12, 200, 34)) >= 96 * 200
    assert _colour_count(figure, (255, 255, 255)) > 0
    assert _colour_count(figure, (255, 0, 255)) >= 7  # the pixels without a label, in the NaN colour
    path = tmp_path / "x.png"
    np.save(tmp_path / "p.npy", picture)
    assert (
        write_disagreement(path, kept, "torch", "ort-cpu", "aachen/x", colours, None, tmp_path / "missing.png") == path
    )
    with Image.open(path) as written:  # a picture that cannot be read again: the maps are still drawn
        assert written.mode == "RGB" and written.width >= 2 * 200


def test_bench_labels_are_kept_whole():
    a, b = "efficientvit-seg-b0-cityscapes-FP32:ORT-CPU", "efficientvit-seg-b0-cityscapes-FP32:TORCH"
    long = "/some/very/long/path/to/exports/efficientvit-seg-b0-cityscapes-fp16/model.engine:trt#2"
    for label in (a, b, long):
        lines = _label_lines(label)
        assert "".join(lines) == label and all(drawing.text_width(line) <= LABEL_MAX_W for line in lines)
    assert len(_label_lines(long)) > 1
    picture = render([{"label": a, "latencies_ms": [1.0, 2.0]}, {"label": b, "latencies_ms": [3.0]}])
    assert picture.shape[1] > drawing.text_width(a) + 400  # the label column holds the whole label, the axis beside it


# --- the drawing blocks --------------------------------------------------------------------------


def test_text_wraps_instead_of_cutting():
    sentence = "a caption that is certainly longer than one hundred and twenty pixels"
    lines = drawing.wrap(sentence, 120)
    assert len(lines) > 1 and " ".join(lines) == sentence
    block = drawing.text(sentence, 120)
    assert block.width == 120 and block.height == len(lines) * drawing.line_height()
    assert _colour_count(block, drawing.BACKGROUND) < block.width * block.height  # ink on it


def test_save_picture_is_png_or_jpeg_by_suffix_and_keeps_16_bit(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (10, 20, 3), dtype=np.uint8)
    png = drawing.save_picture(tmp_path / "a" / "x.png", rgb)
    with Image.open(png) as image:
        assert image.format == "PNG" and np.array_equal(np.asarray(image), rgb)
    with Image.open(drawing.save_picture(tmp_path / "x.jpg", rgb)) as image:
        assert image.format == "JPEG" and image.size == (20, 10)
    deep = np.arange(200, dtype=np.uint16).reshape(10, 20) * 300
    with Image.open(drawing.save_picture(tmp_path / "deep.png", deep)) as image:
        assert image.mode.startswith("I") and np.array_equal(np.asarray(image), deep)
    assert not [p for p in tmp_path.rglob("*") if ".tmp-" in p.name]  # atomic: no temp file left


def test_nice_ticks_and_display_factor():
    assert drawing.nice_ticks(0.0, 4.2) == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert (
        drawing.display_factor(128) == (2, 1)
        and drawing.display_factor(2048) == (1, 4)
        and drawing.display_factor(300) == (1, 1)
    )
