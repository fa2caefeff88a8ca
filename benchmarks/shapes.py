"""Procedural pictures of a few classes: one patterned patch on a smooth background.

The classification counterpart of scenes.py. The class is the patch's *pattern* (checker,
diagonal stripes, dots, horizontal stripes, plain, vertical stripes); everything else is random:
the patch's outline (a disc or a turned square), size (a fifth to a third of the short side),
place, its two colours, the pattern's period and phase, the background's two-colour gradient and
soft blotches, the lighting and the sensor noise; the picture's size and aspect ratio vary too,
so the classification protocol's resize and centre crop matter. Patterns rather than outlines:
a b0 learns them in a few hundred small steps on a shared CPU (outlines of random colour on
random gradients stayed at chance for the first 40 steps of batch 16 on the 2-core machine).

Deterministic by (seed, index): numpy's PCG64 from `default_rng([seed, index])`, no global
state. Classes are balanced: picture `index` is of class `index % len(CLASSES)`.

    make_picture(seed, index, height, width) -> (picture [H, W, 3] uint8, class index)
    random_size(seed, index, short) -> (height, width), aspect ratio 1 to 4/3
    write_folder(root, count, short, seed) -> ImageNet-style folder: root/<class>/<seed>_<index>.png
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Tuple

import numpy as np

#: sorted, so that an ImageNet-style folder's sorted class order is this order (class index = position)
CLASSES = ("checker", "diagonal", "dots", "horizontal", "plain", "vertical")
NUM_CLASSES = len(CLASSES)


def _pattern(kind: str, x: np.ndarray, y: np.ndarray, period: float, rng: np.random.Generator) -> np.ndarray:
    """Where the patch takes its second colour (x, y in pixels, already shifted by a random phase)."""
    jitter = np.deg2rad(rng.uniform(-10, 10))
    if kind == "checker":
        return (np.floor(x / period) + np.floor(y / period)) % 2 == 1
    if kind == "diagonal":
        turn = np.deg2rad(45.0 * rng.choice([-1, 1])) + jitter
        return np.sin(2 * np.pi * (x * np.cos(turn) + y * np.sin(turn)) / period) > 0
    if kind == "dots":
        u, v = (x % period) - period / 2, (y % period) - period / 2
        return u * u + v * v <= (0.3 * period) ** 2
    if kind == "horizontal":
        return np.sin(2 * np.pi * (y * np.cos(jitter) + x * np.sin(jitter)) / period) > 0
    if kind == "plain":
        return np.zeros_like(x, dtype=bool)
    if kind == "vertical":
        return np.sin(2 * np.pi * (x * np.cos(jitter) + y * np.sin(jitter)) / period) > 0
    raise ValueError(kind)


def _colour_far_from(rng: np.random.Generator, other: np.ndarray, distance: float) -> np.ndarray:
    for _ in range(50):
        colour = rng.uniform(0, 1, 3)
        if np.linalg.norm(colour - other) >= distance:
            return colour
    return 1.0 - other


def make_picture(seed: int, index: int, height: int, width: int) -> Tuple[np.ndarray, int]:
    rng = np.random.default_rng([seed, index])
    label = index % NUM_CLASSES
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    short = float(min(height, width))
    # background: a two-colour gradient in a random direction, and a few soft blotches
    a, b = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
    angle = rng.uniform(0, 2 * np.pi)
    t = np.clip(((x - width / 2) * np.cos(angle) + (y - height / 2) * np.sin(angle)) / short + 0.5, 0, 1)[..., None]
    picture = a * (1 - t) + b * t
    for _ in range(rng.integers(0, 4)):
        by, bx, size = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(0.1, 0.3) * short
        weight = np.exp(-((x - bx) ** 2 + (y - by) ** 2) / (2 * size * size))[..., None]
        picture = picture * (1 - 0.5 * weight) + 0.5 * weight * rng.uniform(0, 1, 3)
    # the patch: a disc or a turned square, in two colours laid out by the class's pattern
    radius = rng.uniform(0.2, 0.34) * short
    cy, cx = rng.uniform(0.38, 0.62) * height, rng.uniform(0.38, 0.62) * width
    if rng.uniform() < 0.5:
        inside = (x - cx) ** 2 + (y - cy) ** 2 <= radius * radius
    else:
        turn = rng.uniform(0, np.pi / 2)
        u = (x - cx) * np.cos(turn) + (y - cy) * np.sin(turn)
        v = -(x - cx) * np.sin(turn) + (y - cy) * np.cos(turn)
        inside = np.maximum(np.abs(u), np.abs(v)) <= 0.85 * radius
    first = _colour_far_from(rng, (a + b) / 2, 0.3)
    second = _colour_far_from(rng, first, 0.5)
    period = rng.uniform(0.07, 0.12) * short
    second_at = _pattern(CLASSES[label], x + rng.uniform(0, period), y + rng.uniform(0, period), period, rng)
    picture[inside] = first
    picture[inside & second_at] = second
    # lighting and sensor noise
    picture = picture * rng.uniform(0.7, 1.2) + rng.uniform(-0.08, 0.08)
    picture = picture + rng.normal(0, rng.uniform(0.01, 0.05), picture.shape)
    return (np.clip(picture, 0, 1) * 255 + 0.5).astype(np.uint8), label


def random_size(seed: int, index: int, short: int) -> Tuple[int, int]:
    """A picture size with `short` as its short side and an aspect ratio of 1 to 4/3, either way."""
    rng = np.random.default_rng([seed, index, 1])
    long = int(round(short * rng.uniform(1.0, 4.0 / 3.0)))
    return (short, long) if rng.uniform() < 0.5 else (long, short)


def write_folder(root: Path, count: int, short: int, seed: int) -> List[Path]:
    """`count` pictures as an ImageNet-style folder: one sub-folder per class, PNG files."""
    from PIL import Image

    written = []
    for name in CLASSES:
        (Path(root) / name).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        picture, label = make_picture(seed, i, *random_size(seed, i, short))
        path = Path(root) / CLASSES[label] / f"{seed}_{i:05d}.png"
        Image.fromarray(picture).save(path)
        written.append(path)
    return written
