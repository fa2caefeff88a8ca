"""Procedural street scenes with known labels: RGB pictures and Cityscapes train-id maps.

A small segmentation network can learn these in minutes on a CPU, yet they are not trivial:
classes are told apart by colour *and* texture *and* place (a truck and a bus share a box
shape, a person and a rider share a silhouette, the sidewalk and the road a grey), lighting,
colour cast and sensor noise change per picture, objects occlude each other, most classes are
absent from some pictures, and some pixels are void (ignore, train id 255): an ego-vehicle band
and "unlabelled" patches of random colour.

Deterministic by (seed, index): `make_scene(seed, i, h, w)` is the same picture on every run
and machine (numpy's PCG64 from `default_rng([seed, i])`, no global state).

    make_scene(seed, index, height, width) -> Scene(image [H,W,3] uint8, train_ids [H,W] uint8,
                                                     label_ids [H,W] uint8)
    scene_batch(seed, start, count, height, width) -> (images [N,H,W,3], train_ids [N,H,W])
    write_cityscapes(root, count, height, width, seed=..., split="val") -> list of written pairs

`write_cityscapes` writes the Cityscapes layout (leftImg8bit/<split>/<city>/<name>_leftImg8bit.png
and gtFine/<split>/<city>/<name>_gtFine_labelIds.png). The label PNGs hold *label ids*: each
train id is written as its Cityscapes label id (road 7, ..., bicycle 33), and void pixels as one
of the label ids the evaluation ignores (unlabeled 0, ego vehicle 1, ground 6, parking 9, ...),
so a reader must do the label-id -> train-id mapping to score them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np

from msla_deploy.classes import CITYSCAPES_LABEL_IDS, IGNORE_INDEX, cityscapes_label_to_train, cityscapes_train_to_label

IGNORE = IGNORE_INDEX
NUM_CLASSES = len(CITYSCAPES_LABEL_IDS)

# label ids that Cityscapes' evaluation maps to ignore: what void pixels are written as
VOID_LABEL_IDS = (0, 4, 5, 6, 9, 10, 14, 15, 16, 18, 29, 30)
EGO_VEHICLE_LABEL_ID = 1

(
    ROAD,
    SIDEWALK,
    BUILDING,
    WALL,
    FENCE,
    POLE,
    LIGHT,
    SIGN,
    VEGETATION,
    TERRAIN,
    SKY,
    PERSON,
    RIDER,
    CAR,
    TRUCK,
    BUS,
    TRAIN,
    MOTORCYCLE,
    BICYCLE,
) = range(NUM_CLASSES)

#: every train id a scene can contain (all 19): the tests check each one really appears
CLASSES = tuple(range(NUM_CLASSES))

# base colours (RGB, 0..1); each instance jitters its own, then the picture's light changes all
_BASE = {
    ROAD: (0.33, 0.32, 0.34),
    SIDEWALK: (0.62, 0.52, 0.58),
    BUILDING: (0.50, 0.42, 0.36),
    WALL: (0.78, 0.72, 0.55),
    FENCE: (0.55, 0.45, 0.30),
    POLE: (0.60, 0.60, 0.62),
    LIGHT: (0.10, 0.10, 0.10),
    SIGN: (0.95, 0.80, 0.10),
    VEGETATION: (0.20, 0.50, 0.15),
    TERRAIN: (0.55, 0.62, 0.30),
    SKY: (0.45, 0.65, 0.92),
    PERSON: (0.80, 0.20, 0.25),
    RIDER: (0.95, 0.50, 0.10),
    CAR: (0.15, 0.25, 0.75),
    TRUCK: (0.10, 0.15, 0.40),
    BUS: (0.10, 0.45, 0.50),
    TRAIN: (0.40, 0.75, 0.80),
    MOTORCYCLE: (0.75, 0.15, 0.75),
    BICYCLE: (0.55, 0.05, 0.15),
}


_SHIFT = 32  # largest offset of a texture's noise window


@dataclass(frozen=True)
class Scene:
    image: np.ndarray  # [H, W, 3] uint8 RGB
    train_ids: np.ndarray  # [H, W] uint8, 0..18 or 255
    label_ids: np.ndarray  # [H, W] uint8, Cityscapes label ids


class _Canvas:
    """Paints class regions front to back: later paint occludes earlier paint."""

    def __init__(self, rng: np.random.Generator, height: int, width: int) -> None:
        self.rng, self.h, self.w = rng, height, width
        self.rgb = np.zeros((height, width, 3), np.float32)
        self.train = np.full((height, width), IGNORE, np.uint8)
        self.label = np.zeros((height, width), np.uint8)
        self.yy, self.xx = np.mgrid[0:height, 0:width].astype(np.float32)
        # one field of unit noise per scene; each texture takes a shifted window of it (drawing
        # fresh noise for every texture was most of the generator's time)
        self._field = rng.standard_normal((height + _SHIFT, width + _SHIFT), dtype=np.float32)

    def colour(self, cls: int, spread: float = 0.08) -> np.ndarray:
        base = np.array(_BASE[cls], np.float32)
        return np.clip(base + self.rng.normal(0.0, spread, 3).astype(np.float32), 0.0, 1.0)

    def paint(self, mask: np.ndarray, cls: int, rgb: np.ndarray, label_id: int = -1) -> None:
        """rgb: [3] or [H, W, 3]; cls: train id or IGNORE (then label_id says which void id)."""
        if not mask.any():
            return
        self.rgb[mask] = rgb[mask] if rgb.ndim == 3 else rgb
        self.train[mask] = cls
        self.label[mask] = CITYSCAPES_LABEL_IDS[cls] if cls != IGNORE else label_id

    # textures: [H, W] multipliers around 1, computed on the whole canvas (cheap at these sizes)
    def noise(self, amount: float) -> np.ndarray:
        dy, dx = self.rng.integers(0, _SHIFT + 1, 2)
        return 1.0 + amount * self._field[dy : dy + self.h, dx : dx + self.w]

    def stripes(self, period: float, vertical: bool, depth: float) -> np.ndarray:
        coord = self.xx if vertical else self.yy
        phase = self.rng.uniform(0, period)
        return 1.0 - depth * (((coord + phase) % period) < period / 2)

    def grid(self, period_y: float, period_x: float, depth: float) -> np.ndarray:
        on = ((self.yy % period_y) < period_y * 0.45) & ((self.xx % period_x) < period_x * 0.5)
        return 1.0 - depth * on

    def rect(self, y0: float, y1: float, x0: float, x1: float) -> np.ndarray:
        return (self.yy >= y0) & (self.yy < y1) & (self.xx >= x0) & (self.xx < x1)

    def ellipse(self, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
        return ((self.yy - cy) / max(ry, 0.5)) ** 2 + ((self.xx - cx) / max(rx, 0.5)) ** 2 <= 1.0


def _textured(c: _Canvas, cls: int, texture: np.ndarray) -> np.ndarray:
    return c.colour(cls)[None, None, :] * texture[:, :, None]


def _sky_and_ground(c: _Canvas, horizon: float) -> None:
    rng = c.rng
    sky = c.yy < horizon
    gradient = 1.0 + 0.35 * (c.yy / max(horizon, 1.0))[:, :, None]  # brighter towards the horizon
    c.paint(sky, SKY, np.clip(c.colour(SKY)[None, None, :] * gradient, 0, 1))
    ground = ~sky
    # road: a trapezoid narrowing to a vanishing point on the horizon
    vx = c.w * rng.uniform(0.35, 0.65)
    t = np.clip((c.yy - horizon) / max(c.h - horizon, 1.0), 0, 1)
    half = t * c.w * rng.uniform(0.35, 0.6)
    centre = vx + t * (c.w / 2 - vx)
    road = ground & (np.abs(c.xx - centre) <= half)
    walk = ground & ~road & (np.abs(c.xx - centre) <= half + t * c.w * rng.uniform(0.08, 0.2))
    beyond = ground & ~road & ~walk
    verge = TERRAIN if rng.random() < 0.7 else VEGETATION
    c.paint(beyond, verge, _textured(c, verge, c.noise(0.15 if verge == TERRAIN else 0.3)))
    if rng.random() < 0.85:
        c.paint(walk, SIDEWALK, _textured(c, SIDEWALK, c.grid(6, 10, 0.18) * c.noise(0.04)))
    else:
        c.paint(walk, ROAD, _textured(c, ROAD, c.noise(0.05)))
    lane = road & (np.abs(c.xx - centre) < 0.6 + t * 1.5) & ((c.yy // 5) % 2 == 0)
    road_rgb = _textured(c, ROAD, c.noise(0.05))
    road_rgb[lane] = 0.9  # white lane dashes, still road
    c.paint(road, ROAD, road_rgb)


def _background(c: _Canvas, horizon: float) -> None:
    rng = c.rng
    for _ in range(rng.integers(0, 6)):  # buildings standing on the horizon
        x0 = rng.uniform(-0.1, 0.9) * c.w
        x1 = x0 + rng.uniform(0.1, 0.35) * c.w
        top = horizon - rng.uniform(0.1, 0.45) * c.h
        tex = c.grid(rng.uniform(5, 9), rng.uniform(5, 9), rng.uniform(0.3, 0.5)) * c.noise(0.03)
        c.paint(c.rect(top, horizon + 2, x0, x1), BUILDING, _textured(c, BUILDING, tex))
    for _ in range(rng.integers(0, 4)):  # trees: noisy green blobs
        cy = horizon - rng.uniform(0.0, 0.25) * c.h
        ry, rx = rng.uniform(0.06, 0.16) * c.h, rng.uniform(0.05, 0.14) * c.w
        blob = c.ellipse(cy, rng.uniform(0, c.w), ry, rx) & (c.noise(0.6) > 0.7)
        c.paint(blob, VEGETATION, _textured(c, VEGETATION, c.noise(0.25)))
    if rng.random() < 0.4:  # a low wall
        x0 = rng.uniform(0, 0.7) * c.w
        c.paint(
            c.rect(horizon - 0.08 * c.h, horizon + 0.04 * c.h, x0, x0 + rng.uniform(0.15, 0.4) * c.w),
            WALL,
            _textured(c, WALL, c.stripes(4, False, 0.12) * c.noise(0.03)),
        )
    if rng.random() < 0.4:  # a fence: bars with the background showing through
        x0 = rng.uniform(0, 0.7) * c.w
        region = c.rect(horizon - 0.1 * c.h, horizon + 0.05 * c.h, x0, x0 + rng.uniform(0.15, 0.4) * c.w)
        bars = region & ((c.xx.astype(np.int32) + int(rng.integers(0, 4))) % 4 < 2)
        c.paint(bars, FENCE, _textured(c, FENCE, c.noise(0.05)))
    if rng.random() < 0.35:  # a train on the far side of the road
        x0 = rng.uniform(-0.3, 0.5) * c.w
        base = horizon + 0.03 * c.h
        body = c.rect(base - 0.16 * c.h, base, x0, x0 + rng.uniform(0.5, 0.9) * c.w)
        c.paint(body, TRAIN, _textured(c, TRAIN, c.stripes(3, False, 0.25) * c.noise(0.03)))


def _poles(c: _Canvas, horizon: float) -> None:
    rng = c.rng
    for _ in range(rng.integers(0, 4)):
        x = rng.uniform(0.02, 0.95) * c.w
        bottom = horizon + rng.uniform(0.1, 0.4) * (c.h - horizon)
        top = horizon - rng.uniform(0.15, 0.4) * c.h
        width = rng.uniform(1.5, 3.5)
        c.paint(c.rect(top, bottom, x, x + width), POLE, _textured(c, POLE, c.noise(0.03)))
        kind = rng.random()
        if kind < 0.4:  # traffic light: dark box with one lit lamp
            box = c.rect(top - 8, top, x - 2, x + width + 2)
            rgb = _textured(c, LIGHT, c.noise(0.05))
            lamp = box & c.ellipse(top - rng.choice([2.0, 4.0, 6.0]), x + width / 2, 1.2, 1.2)
            rgb[lamp] = ((1.0, 0.1, 0.1), (1.0, 0.8, 0.0), (0.1, 1.0, 0.3))[int(rng.integers(0, 3))]
            c.paint(box, LIGHT, rgb)
        elif kind < 0.8:  # traffic sign: yellow disc with a dark border
            r = rng.uniform(3, 5)
            disc = c.ellipse(top - r, x + width / 2, r, r)
            rgb = _textured(c, SIGN, c.noise(0.03))
            rgb[disc & ~c.ellipse(top - r, x + width / 2, r - 1.2, r - 1.2)] = 0.15
            c.paint(disc, SIGN, rgb)


def _figure(c: _Canvas, cls: int, foot: float, x: float, height: float) -> None:
    """A person or rider: head over an elongated body, with a clothing stripe."""
    body = c.ellipse(foot - height * 0.4, x, height * 0.38, height * 0.14)
    head = c.ellipse(foot - height * 0.86, x, height * 0.11, height * 0.09)
    rgb = _textured(c, cls, c.stripes(max(height / 5, 2), False, 0.3) * c.noise(0.05))
    c.paint(body | head, cls, rgb)


def _road_users(c: _Canvas, horizon: float) -> None:
    rng = c.rng
    users: List[Tuple[float, Callable[[float], None]]] = []
    for _ in range(rng.integers(0, 9)):
        foot = horizon + rng.uniform(0.05, 1.0) * (c.h - horizon)
        scale = 0.15 + 0.85 * (foot - horizon) / max(c.h - horizon, 1.0)  # nearer is bigger
        x = rng.uniform(-0.05, 1.05) * c.w
        kind = int(rng.choice([CAR, CAR, CAR, TRUCK, BUS, PERSON, PERSON, MOTORCYCLE, BICYCLE]))
        users.append((foot, lambda f, k=kind, s=scale, xx=x: _road_user(c, k, f, xx, s)))
    for foot, draw in sorted(users, key=lambda u: u[0]):  # far ones first, near ones occlude
        draw(foot)


def _road_user(c: _Canvas, kind: int, foot: float, x: float, scale: float) -> None:
    rng = c.rng
    unit = c.h * scale
    if kind == CAR:
        w, h = unit * rng.uniform(0.5, 0.8), unit * rng.uniform(0.22, 0.3)
        body = c.rect(foot - h, foot - h * 0.2, x - w / 2, x + w / 2) | c.ellipse(foot - h * 0.95, x, h * 0.35, w * 0.3)
        wheels = c.ellipse(foot - h * 0.2, x - w * 0.3, h * 0.2, h * 0.2) | c.ellipse(
            foot - h * 0.2, x + w * 0.3, h * 0.2, h * 0.2
        )
        rgb = _textured(c, CAR, c.noise(0.03))
        rgb[wheels] = 0.05
        c.paint(body | wheels, CAR, rgb)
    elif kind in (TRUCK, BUS):
        w = unit * rng.uniform(0.7, 1.1)
        h = unit * (rng.uniform(0.45, 0.6) if kind == TRUCK else rng.uniform(0.5, 0.65))
        body = c.rect(foot - h, foot, x - w / 2, x + w / 2)
        # a truck has a cab and a plain box; a bus has a band of windows along its length
        tex = c.noise(0.03) * (c.stripes(max(h / 6, 2), True, 0.5) if kind == BUS else 1.0)
        rgb = _textured(c, kind, tex)
        if kind == BUS:
            band = c.rect(foot - h * 0.8, foot - h * 0.55, x - w / 2, x + w / 2)
            rgb = np.where(band[:, :, None], rgb, c.colour(BUS)[None, None, :])
        else:
            cab = c.rect(foot - h * 0.6, foot, x + w / 2 - w * 0.2, x + w / 2)
            rgb[cab] = c.colour(TRUCK) * 1.6
        c.paint(body, kind, np.clip(rgb, 0, 1))
    elif kind == PERSON:
        _figure(c, PERSON, foot, x, unit * rng.uniform(0.45, 0.6))
    else:  # a two-wheeler, ridden or parked
        w, h = unit * rng.uniform(0.3, 0.4), unit * 0.18

        def ring(cx: float) -> np.ndarray:
            return c.ellipse(foot - h / 2, cx, h / 2, h / 2) & ~c.ellipse(foot - h / 2, cx, h / 2 - 1.2, h / 2 - 1.2)

        if kind == BICYCLE:
            shape = ring(x - w / 3) | ring(x + w / 3) | c.rect(foot - h * 0.8, foot - h * 0.5, x - w / 3, x + w / 3)
        else:
            shape = c.ellipse(foot - h / 2, x, h / 2, w / 2)
        if rng.random() < 0.6:
            _figure(c, RIDER, foot - h * 0.4, x, unit * 0.5)
        c.paint(shape, kind, _textured(c, kind, c.noise(0.05)))


def _void(c: _Canvas) -> None:
    rng = c.rng
    if rng.random() < 0.5:  # the ego vehicle's bonnet along the bottom edge
        top = c.h * rng.uniform(0.88, 0.95)
        bonnet = c.yy >= top + 0.02 * c.h * np.cos((c.xx / c.w - 0.5) * np.pi)
        c.paint(bonnet, IGNORE, c.colour(CAR, 0.3) * 0.3, EGO_VEHICLE_LABEL_ID)
    for _ in range(rng.integers(1, 4)):  # unlabelled clutter of any colour
        blob = c.ellipse(
            rng.uniform(0, c.h), rng.uniform(0, c.w), rng.uniform(2, 0.08 * c.h + 3), rng.uniform(2, 0.08 * c.w + 3)
        )
        c.paint(blob, IGNORE, rng.uniform(0, 1, 3).astype(np.float32), int(rng.choice(VOID_LABEL_IDS)))


def _light(c: _Canvas) -> np.ndarray:
    """Exposure, colour cast, a brightness ramp (shade), gamma and sensor noise."""
    rng = c.rng
    rgb = c.rgb * rng.uniform(0.6, 1.3) * rng.uniform(0.85, 1.15, 3).astype(np.float32)
    ramp = 1.0 + rng.uniform(-0.3, 0.3) * (c.xx / c.w - 0.5)
    rgb = np.clip(rgb * ramp[:, :, None], 0, 1) ** rng.uniform(0.8, 1.25)
    rgb = rgb + rng.normal(0, rng.uniform(0.01, 0.05), rgb.shape).astype(np.float32)
    return (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)


def make_scene(seed: int, index: int, height: int, width: int) -> Scene:
    """Scene number `index` of the set `seed`, at height x width (any size from 32x32 up)."""
    rng = np.random.default_rng([int(seed), int(index)])
    c = _Canvas(rng, int(height), int(width))
    horizon = c.h * rng.uniform(0.3, 0.5)
    _sky_and_ground(c, horizon)
    _background(c, horizon)
    _poles(c, horizon)
    _road_users(c, horizon)
    _void(c)
    return Scene(_light(c), c.train, c.label)


def scene_batch(seed: int, start: int, count: int, height: int, width: int) -> Tuple[np.ndarray, np.ndarray]:
    """Scenes start..start+count-1 stacked: images [N, H, W, 3] uint8, train ids [N, H, W] uint8."""
    scenes = [make_scene(seed, start + i, height, width) for i in range(count)]
    return np.stack([s.image for s in scenes]), np.stack([s.train_ids for s in scenes])


def to_label_ids(train_ids: np.ndarray, void_id: int = 0) -> np.ndarray:
    """Train ids -> Cityscapes label ids; ignore (255) becomes `void_id`."""
    table = np.full(256, void_id, np.uint8)
    table[:NUM_CLASSES] = cityscapes_train_to_label()[:NUM_CLASSES]
    return table[train_ids]


def to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """Cityscapes label ids -> train ids (every id outside the 19 classes becomes 255)."""
    return cityscapes_label_to_train()[label_ids]


def write_cityscapes(
    root: "str | Path",
    count: int,
    height: int,
    width: int,
    *,
    seed: int = 1000,
    split: str = "val",
    cities: Sequence[str] = ("synthburg", "procville"),
) -> List[Dict[str, Path]]:
    """Write `count` scenes in the Cityscapes layout under `root`; return the written pairs.

    Scene i goes to city cities[i % len(cities)] as <city>_000000_<i:06d>_leftImg8bit.png and
    <city>_000000_<i:06d>_gtFine_labelIds.png (label ids, void as ignored label ids), written by
    the same layout writer as evaluate's test datasets (msla_deploy.evaluate.synthetic).
    """
    from msla_deploy.evaluate.synthetic import write_sample

    written = []
    for i in range(count):
        scene = make_scene(seed, i, height, width)
        city = cities[i % len(cities)]
        image_path, label_path, _ = write_sample(
            Path(root), "cityscapes", f"{city}_000000_{i:06d}", scene.image, scene.label_ids, city=city, split=split
        )
        written.append({"image": image_path, "label": label_path})
    return written
