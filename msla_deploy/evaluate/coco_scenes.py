"""Procedural COCO-format instance sets: scenes of shapes with their visible masks.

SAM's counterpart of benchmarks/scenes.py: a picture holds a few shapes (ellipses, rectangles,
triangles, convex polygons, rings) of random colour and texture on a varied background (a
two-colour gradient, soft blotches, a faint texture), under random lighting and sensor noise.
Shapes are painted back to front, so a later shape occludes an earlier one and an instance's
mask is what is *visible* of it (possibly in pieces, with holes). Instance areas are drawn
log-uniformly from a few dozen pixels to about a third of the picture, so that at the default
picture sizes COCO's three area ranges (small < 32^2 <= medium < 96^2 <= large) all occur.

Each instance's outline is a polygon (a ring: two), rasterised by pycocotools itself, so the mask
*is* the polygon's COCO raster: an instance that is whole and inside the picture is written as
its polygon, one that is occluded, cut by the border or a ring as COCO RLE; either decodes back
to the mask exactly. area is the mask's pixel count, bbox (x, y, w, h) the mask's extent, as
pycocotools computes them.

Deterministic by (seed, index): numpy's PCG64 from `default_rng([seed, index])`, no global state.

    make_coco_scene(seed, index, size) -> CocoScene (picture, masks, boxes, categories, segmentations)
    write_coco_scenes(root, count, seed=0, size=..., split="val") -> the annotation file's path

torch-free (numpy, Pillow, pycocotools); Python 3.8.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Sequence, Tuple, Union

import numpy as np

from .. import rle

#: category ids 1.. in this order (COCO ids start at 1)
CATEGORIES = ("ellipse", "rectangle", "triangle", "polygon", "ring")
#: picture size (height, width) drawn per scene from these ranges (both ends included)
DEFAULT_SIZE = ((240, 384), (240, 384))
MAX_SHAPES = 10
MIN_AREA = 24  # a shape smaller than this (or mostly hidden) is left unannotated clutter
MIN_VISIBLE = 0.3  # the least visible fraction of a shape for it to be an instance

Size = Union[Tuple[int, int], Tuple[Tuple[int, int], Tuple[int, int]]]


@dataclass(frozen=True)
class CocoScene:
    picture: np.ndarray  # [H, W, 3] uint8 RGB
    masks: np.ndarray  # [N, H, W] bool, each instance's visible pixels
    boxes: np.ndarray  # [N, 4] float64, COCO xywh of each mask
    categories: Tuple[int, ...]  # N category ids (1-based, CATEGORIES order)
    segmentations: Tuple[Any, ...]  # N COCO segmentations: a list of polygons or an RLE dict

    @property
    def boxes_xyxy(self) -> np.ndarray:
        """[N, 4] x0, y0, x1, y1 (as evaluate prompts: x1 = x + w)."""
        out = self.boxes.copy()
        out[:, 2:] += out[:, :2]
        return out


def _coco_mask():
    from pycocotools import mask as coco_mask

    return coco_mask


def picture_size(seed: int, index: int, size: Size) -> Tuple[int, int]:
    """(height, width): `size` itself, or drawn for scene `index` from ((h_lo, h_hi), (w_lo, w_hi))."""
    h, w = size
    if isinstance(h, (int, np.integer)) and isinstance(w, (int, np.integer)):
        return int(h), int(w)
    rng = np.random.default_rng([int(seed), int(index), 1])
    return int(rng.integers(h[0], h[1] + 1)), int(rng.integers(w[0], w[1] + 1))


def _raster(polygons: Sequence[Sequence[float]], h: int, w: int) -> np.ndarray:
    """pycocotools' raster of polygons (flat x, y lists), merged: [H, W] bool."""
    cm = _coco_mask()
    rles = cm.frPyObjects([list(map(float, p)) for p in polygons], h, w)
    return cm.decode(rles).any(axis=2)


def _ellipse(cx: float, cy: float, rx: float, ry: float, turn: float, vertices: int = 40) -> List[float]:
    t = np.linspace(0, 2 * np.pi, vertices, endpoint=False)
    x, y = rx * np.cos(t), ry * np.sin(t)
    c, s = np.cos(turn), np.sin(turn)
    return list(np.stack([cx + c * x - s * y, cy + s * x + c * y], axis=1).round(2).ravel())


def _outline(rng: np.random.Generator, kind: str, cx: float, cy: float, r: float) -> List[List[float]]:
    """The shape's polygons, about `r` in radius; a ring is its outer outline then its hole."""
    turn = rng.uniform(0, np.pi)
    if kind == "ellipse":
        aspect = rng.uniform(0.45, 1.0)
        return [_ellipse(cx, cy, r, r * aspect, turn)]
    if kind == "rectangle":
        half_w, half_h = r, r * rng.uniform(0.35, 1.0)
        turn = 0.0 if rng.random() < 0.5 else turn  # half of them axis-aligned, like boxes are
        x = np.array([-half_w, half_w, half_w, -half_w])
        y = np.array([-half_h, -half_h, half_h, half_h])
        c, s = np.cos(turn), np.sin(turn)
        return [list(np.stack([cx + c * x - s * y, cy + s * x + c * y], axis=1).round(2).ravel())]
    if kind == "ring":
        aspect = rng.uniform(0.6, 1.0)
        inner = rng.uniform(0.35, 0.7)
        return [_ellipse(cx, cy, r, r * aspect, turn), _ellipse(cx, cy, r * inner, r * aspect * inner, turn)]
    # triangle or convex polygon: sorted random angles on a circle, at most a half-turn apart
    count = 3 if kind == "triangle" else int(rng.integers(5, 9))
    for _ in range(20):
        angles = np.sort(rng.uniform(0, 2 * np.pi, count))
        if np.diff(np.append(angles, angles[0] + 2 * np.pi)).max() < np.pi * 0.9:
            break
    else:
        angles = np.linspace(0, 2 * np.pi, count, endpoint=False) + turn
    radii = r * rng.uniform(0.8, 1.0, count)
    return [list(np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], 1).round(2).ravel())]


def _shape_mask(polygons: List[List[float]], h: int, w: int) -> np.ndarray:
    outer = _raster(polygons[:1], h, w)
    return outer & ~_raster(polygons[1:], h, w) if len(polygons) > 1 else outer


def _inside(polygons: List[List[float]], h: int, w: int) -> bool:
    xy = np.asarray(polygons[0], np.float64).reshape(-1, 2)
    return bool((xy >= 0).all() and (xy[:, 0] <= w - 1).all() and (xy[:, 1] <= h - 1).all())


def _colour_far_from(rng: np.random.Generator, other: np.ndarray, distance: float) -> np.ndarray:
    for _ in range(50):
        colour = rng.uniform(0, 1, 3)
        if np.linalg.norm(colour - other) >= distance:
            return colour
    return 1.0 - other


class _Canvas:
    def __init__(self, rng: np.random.Generator, h: int, w: int) -> None:
        self.rng, self.h, self.w = rng, h, w
        self.yy, self.xx = np.mgrid[0:h, 0:w].astype(np.float32)

    def texture(self) -> np.ndarray:
        """[H, W] in 0..1: where a region takes its second colour (plain, stripes, checker, noise)."""
        rng, kind = self.rng, self.rng.integers(0, 4)
        period = rng.uniform(4, 16)
        if kind == 0:
            return np.zeros((self.h, self.w), np.float32)
        if kind == 1:
            turn = rng.uniform(0, np.pi)
            u = self.xx * np.cos(turn) + self.yy * np.sin(turn)
            return (np.sin(2 * np.pi * u / period) > 0).astype(np.float32)
        if kind == 2:
            return ((np.floor(self.xx / period) + np.floor(self.yy / period)) % 2).astype(np.float32)
        return np.clip(rng.standard_normal((self.h, self.w)).astype(np.float32) * 0.5 + 0.5, 0, 1)

    def background(self) -> np.ndarray:
        rng = self.rng
        a, b = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
        angle = rng.uniform(0, 2 * np.pi)
        short = float(min(self.h, self.w))
        t = (self.xx - self.w / 2) * np.cos(angle) + (self.yy - self.h / 2) * np.sin(angle)
        t = np.clip(t / short + 0.5, 0, 1)[..., None]
        rgb = a * (1 - t) + b * t
        for _ in range(rng.integers(0, 5)):  # soft blotches
            by, bx, size = rng.uniform(0, self.h), rng.uniform(0, self.w), rng.uniform(0.05, 0.3) * short
            weight = np.exp(-((self.xx - bx) ** 2 + (self.yy - by) ** 2) / (2 * size * size))[..., None]
            rgb = rgb * (1 - 0.6 * weight) + 0.6 * weight * rng.uniform(0, 1, 3)
        faint = self.texture()[..., None] * rng.uniform(0.0, 0.12)
        return (rgb * (1 - faint)).astype(np.float32)

    def fill(self, rgb: np.ndarray, mask: np.ndarray) -> None:
        """Paint `mask` in one colour, or two laid out by a texture."""
        rng = self.rng
        first = _colour_far_from(rng, rgb[mask].mean(axis=0), 0.35)
        second = first * rng.uniform(0.4, 1.0) if rng.random() < 0.7 else _colour_far_from(rng, first, 0.3)
        t = self.texture()[mask][:, None]
        rgb[mask] = first * (1 - t) + second * t


def _light(rng: np.random.Generator, rgb: np.ndarray) -> np.ndarray:
    rgb = rgb * rng.uniform(0.7, 1.2) * rng.uniform(0.9, 1.1, 3) + rng.uniform(-0.06, 0.06)
    rgb = rgb + rng.normal(0, rng.uniform(0.005, 0.04), rgb.shape)
    return (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)


def make_coco_scene(seed: int, index: int, size: Size = DEFAULT_SIZE) -> CocoScene:
    """Scene number `index` of the set `seed`; `size` is (H, W) or ((h_lo, h_hi), (w_lo, w_hi))."""
    h, w = picture_size(seed, index, size)
    rng = np.random.default_rng([int(seed), int(index)])
    c = _Canvas(rng, h, w)
    rgb = c.background()
    shapes = []  # (category id, polygons, full mask), back to front
    count = int(rng.integers(3, MAX_SHAPES + 1))
    areas = np.exp(rng.uniform(np.log(100.0), np.log(0.5 * h * w), count))
    for area in sorted(areas * rng.uniform(0.6, 1.6, count), reverse=True):  # mostly big behind small
        kind = CATEGORIES[int(rng.integers(0, len(CATEGORIES)))]
        r = float(np.sqrt(area / np.pi))
        cx, cy = rng.uniform(-0.05, 1.05) * w, rng.uniform(-0.05, 1.05) * h
        polygons = _outline(rng, kind, cx, cy, r)
        mask = _shape_mask(polygons, h, w)
        if mask.sum() < MIN_AREA:
            continue
        c.fill(rgb, mask)
        shapes.append((CATEGORIES.index(kind) + 1, polygons, mask))
    masks, categories, segmentations = [], [], []
    covered = np.zeros((h, w), bool)
    for category, polygons, mask in reversed(shapes):  # front to back: what is in front hides the rest
        visible = mask & ~covered
        covered |= mask
        area = int(visible.sum())
        if area < MIN_AREA or area < MIN_VISIBLE * mask.sum():
            continue
        whole = area == int(mask.sum()) and len(polygons) == 1 and _inside(polygons, h, w)
        masks.append(visible)
        categories.append(category)
        segmentations.append([list(map(float, polygons[0]))] if whole else rle.encode(visible))
    masks, categories, segmentations = masks[::-1], categories[::-1], segmentations[::-1]
    stacked = np.stack(masks) if masks else np.zeros((0, h, w), bool)
    return CocoScene(
        picture=_light(rng, rgb),
        masks=stacked,
        boxes=np.array([mask_box(m) for m in masks], np.float64).reshape(-1, 4),
        categories=tuple(categories),
        segmentations=tuple(segmentations),
    )


def mask_box(mask: np.ndarray) -> List[float]:
    """COCO xywh of a mask's pixels, as pycocotools' toBbox gives it (w = x_max - x_min + 1)."""
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return [0.0, 0.0, 0.0, 0.0]
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


def file_name(split: str, index: int) -> str:
    return f"{split}_{index:06d}.png"


def write_coco_scenes(
    root: "str | Path", count: int, *, seed: int = 0, size: Size = DEFAULT_SIZE, split: str = "val"
) -> Path:
    """Write `count` scenes as a COCO instance set: root/images/<file>, root/annotations/instances_<split>.json.

    Image ids are 1..count (scene index + 1), annotation ids 1.. in scene order; returns the
    annotation file's path.
    """
    from ..atomic import write_bytes_atomic
    from ..drawing import save_picture

    root = Path(root)
    images, annotations = [], []
    for i in range(count):
        scene = make_coco_scene(seed, i, size)
        h, w = scene.picture.shape[:2]
        name = file_name(split, i)
        save_picture(root / "images" / name, scene.picture)
        images.append({"id": i + 1, "file_name": name, "height": h, "width": w})
        for mask, box, category, segmentation in zip(scene.masks, scene.boxes, scene.categories, scene.segmentations):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": category,
                    "segmentation": segmentation,
                    "area": int(mask.sum()),
                    "bbox": [float(v) for v in box],
                    "iscrowd": 0,
                }
            )
    document = {
        "info": {"description": f"msla-deploy procedural shape scenes, seed {seed}", "version": "1"},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": k + 1, "name": name, "supercategory": "shape"} for k, name in enumerate(CATEGORIES)],
    }
    path = root / "annotations" / f"instances_{split}.json"
    write_bytes_atomic(path, json.dumps(document).encode("utf-8"))
    return path
