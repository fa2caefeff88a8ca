"""Procedural pictures of a few classes: one coloured shape on a textured background.

The classification counterpart of scenes.py: a b0 classifier learns these in minutes on a CPU,
yet they are not trivial. The class is the shape only: its colour, the background's two-colour
gradient and stripes, the lighting and the sensor noise are random; the shape is rotated,
scaled (a quarter to over half of the short side) and placed off centre, and the picture's
size and aspect ratio vary, so the classification protocol's resize and centre crop matter
(an object near the edge of a wide picture is partly cropped away, as in ImageNet).

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
CLASSES = ("circle", "cross", "ring", "square", "stripes", "triangle")
NUM_CLASSES = len(CLASSES)
SQRT3 = float(np.sqrt(3.0))


def _mask(kind: str, u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Where the shape is, in coordinates rotated with it and scaled by its radius."""
    r = np.sqrt(u * u + v * v)
    if kind == "circle":
        return r <= 1.0
    if kind == "cross":
        return ((np.abs(u) <= 0.3) & (np.abs(v) <= 1.0)) | ((np.abs(v) <= 0.3) & (np.abs(u) <= 1.0))
    if kind == "ring":
        return (r <= 1.0) & (r >= rng.uniform(0.5, 0.7))
    if kind == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.8
    if kind == "stripes":  # a disc of stripes: the texture, not the outline, tells it from a circle
        return (r <= 1.0) & (np.sin(u * rng.uniform(8.0, 12.0)) > 0)
    if kind == "triangle":
        return (v >= -0.5) & (SQRT3 * u + v <= 1.0) & (-SQRT3 * u + v <= 1.0)
    raise ValueError(kind)


def _colour_far_from(rng: np.random.Generator, other: np.ndarray, distance: float = 0.3) -> np.ndarray:
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
    # background: a two-colour gradient in a random direction, with faint stripes of its own
    a, b = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
    angle = rng.uniform(0, 2 * np.pi)
    t = ((x - width / 2) * np.cos(angle) + (y - height / 2) * np.sin(angle)) / short + 0.5
    t = np.clip(t, 0, 1)[..., None]
    picture = a * (1 - t) + b * t
    period, phase = rng.uniform(4, 16), rng.uniform(0, 2 * np.pi)
    picture = picture + 0.06 * np.sin((x * np.cos(angle + 1) + y * np.sin(angle + 1)) / period + phase)[..., None]
    # the object
    radius = rng.uniform(0.1, 0.3) * short
    cy, cx = rng.uniform(0.35, 0.65) * height, rng.uniform(0.35, 0.65) * width
    turn = rng.uniform(0, 2 * np.pi)
    u = ((x - cx) * np.cos(turn) + (y - cy) * np.sin(turn)) / radius
    v = (-(x - cx) * np.sin(turn) + (y - cy) * np.cos(turn)) / radius
    inside = _mask(CLASSES[label], u, v, rng)
    colour = _colour_far_from(rng, (a + b) / 2)
    picture[inside] = colour + 0.04 * rng.standard_normal(3)
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
