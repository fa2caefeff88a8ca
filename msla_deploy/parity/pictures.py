"""validate's pictures of segmentation logits: where the labels changed, and how large the error is.

Two PNGs per output, one row per drawn sample, the input picture (as the model sees it) beside
its map, both at the input's resolution (logits at stride 8 are repeated 8x8, nearest) and
enlarged or shrunk by a whole factor for reading:

- disagreement.png: the reference's labels in their palette colours, darkened; white where the
  artifact's label differs, magenta where the artifact gave NaN/Inf; a legend names the colours.
- error_heatmap.png: per pixel the largest |error| over the classes, on an ABSOLUTE scale
  against the budget: black at 0, yellow at the budget's max |error| limit, red beyond it,
  magenta for NaN/Inf; a colour bar gives the numbers. A perfect export is black, whatever its
  own largest error is. A budget without a max |error| criterion (fp16, int8) gets the average
  element error its cosine allows as the scale.

At most MAX_SAMPLES rows are drawn: the samples with the most label disagreement (then the
largest error), in index order; the caption says which were drawn and how many were left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .. import drawing
from ..artifact.reference import IMAGENET_MEAN, IMAGENET_STD

# class names and colours have one owner (classes); validate imports them from here
from ..classes import class_names, palette  # noqa: F401
from .budgets import Budget

MAX_SAMPLES = 8  # rows per picture; the rest are named in the caption
MAX_LEGEND_CLASSES = 12
DISAGREE = np.array([255, 255, 255], np.uint8)
NONFINITE = np.array([255, 0, 255], np.uint8)  # magenta: in neither the palette dimmed nor the heat scale
OVER = np.array([215, 25, 25], np.uint8)  # beyond the limit: one saturated colour
DARKEN = 0.5  # the reference's label colours, dimmed so that white (differs) stands out
# 0 -> the limit: black -> blue -> teal -> green -> yellow (the limit itself)
_HEAT_STOPS = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
_HEAT_RGB = np.array([(0, 0, 0), (35, 45, 130), (25, 125, 140), (95, 190, 80), (250, 225, 35)], np.float64)
LIMIT_COLOUR = _HEAT_RGB[-1].astype(np.uint8)
DISAGREEMENT_FILE, HEATMAP_FILE = "disagreement.png", "error_heatmap.png"


def _upscale(picture: np.ndarray, factor: Tuple[int, int]) -> np.ndarray:
    return picture.repeat(factor[0], axis=-3).repeat(factor[1], axis=-2)


def stride(output_hw: Tuple[int, int], input_hw: Optional[Tuple[int, int]]) -> Tuple[int, int]:
    """How much to enlarge an output map to cover the input (1 where it does not divide evenly)."""
    if not input_hw:
        return (1, 1)
    factors = (i // o if o and i % o == 0 else 1 for i, o in zip(input_hw, output_hw))
    return tuple(factors)  # type: ignore[return-value]


# --- the maps (numpy) --------------------------------------------------------------------------


def label_disagreement(
    ref_labels: np.ndarray,
    cand_labels: np.ndarray,
    colours: np.ndarray,
    nonfinite: Optional[np.ndarray] = None,
) -> np.ndarray:
    """[..., H, W] labels -> [..., H, W, 3] uint8: reference colours darkened, DISAGREE where the
    labels differ, NONFINITE where `nonfinite` (the candidate had no label there). evaluate draws
    its backend pairs with this too."""
    picture = (colours[ref_labels].astype(np.float32) * DARKEN).astype(np.uint8)
    picture[ref_labels != cand_labels] = DISAGREE
    if nonfinite is not None:
        picture[nonfinite] = NONFINITE
    return picture


def disagreement_maps(reference: np.ndarray, candidate: np.ndarray, input_hw=None) -> np.ndarray:
    """[N, C, H, W] logits -> [N, H', W', 3] uint8 at the input's resolution."""
    finite = np.isfinite(candidate).all(axis=1)
    maps = label_disagreement(reference.argmax(axis=1), candidate.argmax(axis=1), palette(reference.shape[1]), ~finite)
    return _upscale(maps, stride(reference.shape[2:], input_hw))


def error_per_pixel(reference: np.ndarray, candidate: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """[N, C, H, W] -> (the largest finite |error| over the classes [N, H, W],
    NaN/Inf in any class [N, H, W])."""
    with np.errstate(invalid="ignore"):
        err = np.abs(reference.astype(np.float64) - candidate.astype(np.float64))
    finite = np.isfinite(err)
    return np.where(finite, err, 0.0).max(axis=1), ~finite.all(axis=1)


def heat_colours(error: np.ndarray, limit: float, nonfinite: Optional[np.ndarray] = None) -> np.ndarray:
    """|error| -> [..., 3] uint8 on the absolute scale: black at 0, LIMIT_COLOUR at `limit`,
    OVER beyond it."""
    level = np.asarray(error, np.float64) / limit
    rgb = np.stack([np.interp(level, _HEAT_STOPS, _HEAT_RGB[:, c]) for c in range(3)], axis=-1).round().astype(np.uint8)
    rgb[level > 1.0] = OVER
    if nonfinite is not None:
        rgb[nonfinite] = NONFINITE
    return rgb


def error_heatmaps(reference: np.ndarray, candidate: np.ndarray, limit: float, input_hw=None) -> np.ndarray:
    """[N, C, H, W] logits -> [N, H', W', 3] uint8 at the input's resolution, on the absolute scale."""
    per_pixel, bad = error_per_pixel(reference, candidate)
    return _upscale(heat_colours(per_pixel, limit, bad), stride(reference.shape[2:], input_hw))


@dataclass
class HeatScale:
    """The |error| drawn in LIMIT_COLOUR, and where it comes from."""

    limit: float
    source: str
    judged: bool  # the limit is the budget's max |error| criterion (beyond it fails)


def heat_scale(budget: Budget, reference: np.ndarray) -> HeatScale:
    finite = np.abs(reference[np.isfinite(reference)].astype(np.float64))
    peak = float(finite.max()) if finite.size else 0.0
    limit = budget.max_abs_limit(peak)
    if limit is not None and limit > 0:
        return HeatScale(
            limit,
            f"the budget's max |error| = {budget.max_abs_rel:g} x peak |reference| {peak:.4g} "
            f"+ {budget.max_abs_floor:g} = {limit:.3g}",
            True,
        )
    # |e| / |r| = sqrt(2 (1 - cos)) for a small error: per element, the RMS error the cosine allows
    rms = float(np.sqrt(np.mean(finite**2))) if finite.size else 0.0
    allowed = math.sqrt(2.0 * max(1.0 - budget.min_cosine, 0.0)) * rms
    if allowed > 0:
        return HeatScale(
            allowed,
            f"no max |error| in this budget: the average element error its cosine allows, sqrt(2 x (1 - "
            f"{budget.min_cosine:g})) x RMS |reference| {rms:.3g} = {allowed:.3g}",
            False,
        )
    fallback = max(peak, 1.0) * 1e-6
    return HeatScale(
        fallback,
        f"no max |error| or cosine slack in this budget: 1e-6 x peak |reference| = {fallback:.3g}",
        False,
    )


def input_pictures(inputs: np.ndarray) -> np.ndarray:
    """[N, 3, H, W] preprocessed inputs -> [N, H, W, 3] uint8 as the model sees them (ImageNet
    normalization undone); any other channel count: the first channel, stretched to its range."""
    x = np.asarray(inputs, np.float32)
    if x.shape[1] == 3:
        rgb = x * np.asarray(IMAGENET_STD, np.float32).reshape(1, 3, 1, 1) + np.asarray(
            IMAGENET_MEAN, np.float32
        ).reshape(1, 3, 1, 1)
        return (np.clip(np.nan_to_num(rgb), 0.0, 1.0) * 255).round().astype(np.uint8).transpose(0, 2, 3, 1)
    first = np.nan_to_num(x[:, 0])
    lo, hi = first.min(axis=(1, 2), keepdims=True), first.max(axis=(1, 2), keepdims=True)
    grey = ((first - lo) / np.where(hi > lo, hi - lo, 1.0) * 255).round().astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


def choose_samples(reference: np.ndarray, candidate: np.ndarray, cap: int = MAX_SAMPLES) -> List[int]:
    """The samples worth drawing, at most `cap`: the most label disagreement, then the largest
    error (NaN/Inf counted as infinite), returned in index order."""
    count = reference.shape[0]
    if count <= cap:
        return list(range(count))
    differs = (reference.argmax(axis=1) != candidate.argmax(axis=1)) | ~np.isfinite(candidate).all(axis=1)
    per_pixel, bad = error_per_pixel(reference, candidate)
    worst = np.where(bad.any(axis=(1, 2)), np.inf, per_pixel.max(axis=(1, 2)))
    order = sorted(range(count), key=lambda i: (-float(differs[i].mean()), -float(worst[i]), i))
    return sorted(order[:cap])


def _samples_caption(drawn: Sequence[int], total: int) -> str:
    if len(drawn) == total:
        return f"All {total} sample(s) drawn, one per row."
    shown = ", ".join(str(i) for i in drawn)
    return (
        f"{len(drawn)} of {total} samples drawn (the most label disagreement, then the largest error): "
        f"{shown}; "
        f"{total - len(drawn)} not drawn."
    )


# --- the figures (Pillow) ---------------------------------------------------------------------


def _panel_size(hw: Tuple[int, int]) -> Tuple[int, int]:
    """(width, height) of a panel showing an H x W picture: a whole factor larger or smaller for reading."""
    enlarge, shrink = drawing.display_factor(hw[1])
    return max(1, hw[1] * enlarge // shrink), max(1, hw[0] * enlarge // shrink)


def _preview(x: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """One [3, H, W] input as H' x W' x 3 uint8, box-averaged first when the panel is smaller
    (converting a 1024x2048 input at full size would cost seconds per sample, for pixels not shown)."""
    step = max(1, x.shape[1] // size[1])
    if step > 1:
        h, w = x.shape[1] // step * step, x.shape[2] // step * step
        x = x[:, :h, :w].reshape(x.shape[0], h // step, step, w // step, step).mean(axis=(2, 4))
    return input_pictures(x[None])[0]


@dataclass
class Selection:
    """What both pictures of an output draw: which samples, the panel size, the inputs shown."""

    drawn: List[int]
    total: int
    size: Tuple[int, int]  # a panel's (width, height)
    inputs: Optional[List[np.ndarray]]  # per drawn sample, H x W x 3 uint8; None: no input picture


def select(
    reference: np.ndarray,
    candidate: np.ndarray,
    inputs: Optional[np.ndarray],
    input_hw=None,
    cap: int = MAX_SAMPLES,
) -> Selection:
    drawn = choose_samples(reference, candidate, cap)
    size = _panel_size(tuple(input_hw) if input_hw else reference.shape[2:])
    shown = None if inputs is None else [_preview(np.asarray(inputs[i], np.float32), size) for i in drawn]
    return Selection(drawn, int(reference.shape[0]), size, shown)


def _rows(maps: np.ndarray, selection: Selection, map_title: str, captions: Sequence[str]):
    """One row per drawn sample: its caption over [input | map]; `maps` holds the drawn samples
    at the logits' resolution (enlarged to the panel, nearest: a logit stays a block)."""
    rows = []
    for k, caption in enumerate(captions):
        panels = []
        if selection.inputs is not None:
            panels.append(
                drawing.panel(selection.inputs[k], "input (as the model sees it)", selection.size, smooth=True)
            )
        panels.append(drawing.panel(maps[k], map_title, selection.size))
        rows.append(
            drawing.stack(
                [
                    drawing.text(caption, None, drawing.TEXT_SIZE),
                    drawing.stack(panels, horizontal=True, gap=10),
                ],
                gap=3,
            )
        )
    return rows


def _class_legend(ref_labels: np.ndarray, num_classes: int) -> Tuple[List, str]:
    counts = np.bincount(ref_labels.ravel(), minlength=num_classes)
    present = [int(c) for c in np.argsort(-counts, kind="stable") if counts[c] > 0]
    names = class_names(num_classes) or tuple(f"class {c}" for c in range(num_classes))
    colours = (palette(num_classes).astype(np.float32) * DARKEN).astype(np.uint8)
    items = [(tuple(colours[c]), names[c]) for c in present[:MAX_LEGEND_CLASSES]]
    shown = f", the {len(items)} most common of {len(present)}" if len(present) > len(items) else ""
    return items, f"classes of the reference labels (darkened) in the drawn samples{shown}:"


def disagreement_figure(
    name: str,
    reference: np.ndarray,
    candidate: np.ndarray,
    inputs: Optional[np.ndarray],
    input_hw=None,
    cap: int = MAX_SAMPLES,
    selection: Optional[Selection] = None,
):
    """The label disagreement picture (a PIL image) of one output."""
    selection = selection or select(reference, candidate, inputs, input_hw, cap)
    drawn = selection.drawn
    ref_labels = reference[drawn].argmax(axis=1)
    finite = np.isfinite(candidate[drawn]).all(axis=1)
    maps = label_disagreement(ref_labels, candidate[drawn].argmax(axis=1), palette(reference.shape[1]), ~finite)
    differs = (ref_labels != candidate[drawn].argmax(axis=1)) | ~finite
    captions = [
        f"sample {i}: labels differ on {100 * float(d.mean()):.3g}% of pixels ({int(d.sum())} of {d.size})"
        for i, d in zip(drawn, differs)
    ]
    rows = _rows(maps, selection, "reference labels; white: the artifact's label differs", captions)
    width = max(r.width for r in rows)
    classes, classes_title = _class_legend(ref_labels, reference.shape[1])
    legends = [
        drawing.legend(
            [(tuple(DISAGREE), "label differs"), (tuple(NONFINITE), "NaN/Inf in the artifact's output")],
            width,
        ),
        drawing.legend(classes, width, classes_title),
    ]
    subtitle = [
        f"{reference.shape[1]} classes, {reference.shape[2]}x{reference.shape[3]} logits shown at "
        "the input's resolution. " + _samples_caption(drawn, selection.total)
    ]
    return drawing.figure(
        f"Label disagreement of '{name}': the artifact against the PyTorch reference",
        legends + rows,
        subtitle,
    )


def heatmap_figure(
    name: str,
    reference: np.ndarray,
    candidate: np.ndarray,
    inputs: Optional[np.ndarray],
    scale: HeatScale,
    input_hw=None,
    cap: int = MAX_SAMPLES,
    selection: Optional[Selection] = None,
):
    """The error heatmap picture (a PIL image) of one output, on the absolute scale `scale`."""
    selection = selection or select(reference, candidate, inputs, input_hw, cap)
    drawn = selection.drawn
    per_pixel, bad = error_per_pixel(reference[drawn], candidate[drawn])
    maps = heat_colours(per_pixel, scale.limit, bad)
    word = "limit" if scale.judged else "scale"
    captions = [
        f"sample {i}: max |error| {float(e.max()):.3g} ({float(e.max()) / scale.limit:.3g} x the {word}), "
        f"{int((e > scale.limit).sum())} pixel(s) over it, {int(b.sum())} NaN/Inf"
        for i, e, b in zip(drawn, per_pixel, bad)
    ]
    rows = _rows(maps, selection, "|error| per pixel (largest over the classes)", captions)
    ticks = [
        (f, f"{drawing.format_number(f * scale.limit)}" + (f" ({word})" if f == 1.0 else ""))
        for f in (0.0, 0.25, 0.5, 0.75, 1.0)
    ]
    over = "over the limit (fails max |error|)" if scale.judged else "over the scale"
    bar = drawing.colour_bar(
        lambda f: heat_colours(f * scale.limit, scale.limit),
        ticks,
        [
            f"|error| in logit units, absolute: black 0, yellow {scale.limit:.3g}, red beyond it",
            f"{word}: {scale.source}",
        ],
        extra=[(tuple(OVER), over), (tuple(NONFINITE), "NaN/Inf")],
    )
    subtitle = [
        f"largest |error| over the {reference.shape[1]} classes at each pixel; "
        f"{reference.shape[2]}x{reference.shape[3]} "
        "logits shown at the input's resolution. " + _samples_caption(drawn, selection.total)
    ]
    return drawing.figure(
        f"Error heatmap of '{name}': |artifact - PyTorch reference|",
        [bar] + rows,
        subtitle,
        width=max([r.width for r in rows] + [bar.width]),
    )


def write_pictures(
    folder: Path,
    prefix: str,
    name: str,
    reference: np.ndarray,
    candidate: np.ndarray,
    inputs: Optional[np.ndarray],
    budget: Budget,
    cap: int = MAX_SAMPLES,
) -> Dict:
    """Write `<prefix>disagreement.png` and `<prefix>error_heatmap.png` into `folder`; returns the
    report's entry: the file names, `error_scale` (the |error| drawn in the limit colour) and which
    samples were drawn. `inputs`: the reference's [N, 3, H, W] model inputs, or None."""
    input_hw = tuple(inputs.shape[2:]) if inputs is not None else None
    if inputs is not None and inputs.shape[0] != reference.shape[0]:
        inputs, input_hw = None, None
    scale = heat_scale(budget, reference)
    selection = select(reference, candidate, inputs, input_hw, cap)
    files = {"disagreement": f"{prefix}{DISAGREEMENT_FILE}", "error_heatmap": f"{prefix}{HEATMAP_FILE}"}
    drawing.save_picture(
        Path(folder) / files["disagreement"],
        disagreement_figure(name, reference, candidate, inputs, selection=selection),
    )
    drawing.save_picture(
        Path(folder) / files["error_heatmap"],
        heatmap_figure(name, reference, candidate, inputs, scale, selection=selection),
    )
    return {
        **files,
        "error_scale": scale.limit,
        "error_scale_source": scale.source,
        "samples_drawn": selection.drawn,
        "samples": selection.total,
    }
