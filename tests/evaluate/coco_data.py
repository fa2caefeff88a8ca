"""A tiny COCO-format instance dataset written by the tests (pycocotools for the RLEs): two 96x64
pictures of flat shapes, four instances (polygons, an uncompressed RLE, a compressed RLE) and one
of area < 1 that the protocol skips."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Dict

import numpy as np
from PIL import Image

WIDTH, HEIGHT = 96, 64


def _rle(mask: np.ndarray, compressed: bool) -> Dict[str, Any]:
    from pycocotools import mask as mask_util

    if compressed:
        rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
        return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}
    # COCO's uncompressed RLE: run lengths of the column-major pixels, starting with background
    flat = mask.astype(np.uint8).flatten(order="F")
    counts, value, run = [], 0, 0
    for pixel in flat:
        if pixel != value:
            counts.append(run)
            value, run = pixel, 0
        run += 1
    counts.append(run)
    return {"size": [mask.shape[0], mask.shape[1]], "counts": counts}


def coco_document() -> Dict[str, Any]:
    """The annotations (instances_val.json) as a dict, for tests to spoil."""
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    disc = (xx - 70) ** 2 + (yy - 40) ** 2 <= 14**2
    square = (xx >= 50) & (xx < 90) & (yy >= 8) & (yy < 40)
    annotations = [
        # picture 1: a red rectangle (medium: 40 x 30 = 1200 >= 32^2) as two polygons, a blue disc as uncompressed RLE
        {"id": 11, "image_id": 1, "bbox": [6, 10, 40, 30], "area": 1200.0,
         "segmentation": [[6, 10, 46, 10, 46, 25, 6, 25], [6, 25, 46, 25, 46, 40, 6, 40]]},
        {"id": 12, "image_id": 1, "bbox": [56, 26, 29, 29], "area": float(disc.sum()),
         "segmentation": _rle(disc, compressed=False), "iscrowd": 1},
        # picture 2: a green square as compressed RLE, a yellow triangle polygon, and a speck (area < 1)
        {"id": 21, "image_id": 2, "bbox": [50, 8, 40, 32], "area": float(square.sum()),
         "segmentation": _rle(square, compressed=True)},
        {"id": 22, "image_id": 2, "bbox": [8, 20, 30, 36], "area": 540.0,
         "segmentation": [[8, 56, 23, 20, 38, 56]]},
        {"id": 23, "image_id": 2, "bbox": [1, 1, 0.5, 0.5], "area": 0.25, "segmentation": [[1, 1, 1.5, 1, 1.5, 1.5]]},
    ]  # fmt: skip
    images = [
        {"id": 1, "file_name": "one.png", "height": HEIGHT, "width": WIDTH},
        {"id": 2, "file_name": "two.png", "height": HEIGHT, "width": WIDTH},
    ]
    return {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "shape"}]}


def _pictures() -> Dict[str, np.ndarray]:
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    one = np.full((HEIGHT, WIDTH, 3), (90, 110, 130), np.uint8)
    one[10:40, 6:46] = (210, 50, 40)
    one[(xx - 70) ** 2 + (yy - 40) ** 2 <= 14**2] = (40, 60, 220)
    two = np.full((HEIGHT, WIDTH, 3), (60, 60, 60), np.uint8)
    two[8:40, 50:90] = (40, 200, 70)
    inside = (yy >= 20) & (yy <= 56) & (np.abs(xx - 23) <= (yy - 20) * 15 / 36)
    two[inside] = (230, 220, 40)
    return {"one.png": one, "two.png": two}


def write_coco(root: Path, document: Dict[str, Any] = None) -> Path:
    """root/images/{one,two}.png and root/annotations/instances_val.json; returns root."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(exist_ok=True)
    for name, pixels in _pictures().items():
        Image.fromarray(pixels).save(root / "images" / name)
    document = copy.deepcopy(coco_document() if document is None else document)
    (root / "annotations" / "instances_val.json").write_text(json.dumps(document))
    return root
