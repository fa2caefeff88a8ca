"""A COCO-format instance dataset as SAM's evaluate reads it (torch-free).

Layout (`--data`):

    ROOT/annotations/instances_<split>.json     exactly one such file (or name it: --data that.json)
    ROOT/images/<split>/<file_name>             the pictures, if that folder exists; else
    ROOT/images/<file_name>

`--data` is ROOT, or the json itself (ROOT is then its folder's parent). The pictures are the
json's `images` (id, file_name, height, width); the instances its `annotations` (id, image_id,
bbox [x, y, w, h], area, segmentation: polygons, or RLE with list counts (uncompressed) or string
counts (compressed)). Masks are decoded as upstream's ann_to_mask decodes them (pycocotools:
polygons frPyObjects + merge, uncompressed RLE frPyObjects; upstream refuses compressed RLE, read
here with pycocotools.mask.decode). Instances with area < 1 are skipped, as upstream does, and
counted.

Everything but the pictures' pixels is checked when the dataset is read (one line, BadInput):
an unreadable json, no annotations, an annotation of an image not listed, a polygon or box
outside its image, an RLE of another size, a listed image whose file is missing.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..errors import BadInput, one_line_text
from .sam_protocol import MIN_AREA

ANNOTATIONS_DIR = "annotations"
IMAGES_DIR = "images"
ANNOTATIONS_GLOB = "instances_*.json"
LAYOUT = f"ROOT/{ANNOTATIONS_DIR}/{ANNOTATIONS_GLOB} and ROOT/{IMAGES_DIR}/"


@dataclass(frozen=True)
class CocoInstance:
    annotation_id: Any  # the annotation's id (an int in COCO)
    image_id: Any
    area: float
    bbox: Tuple[float, float, float, float]  # x, y, w, h
    segmentation: Any  # polygons (list of coordinate lists) or an RLE dict


@dataclass
class CocoPicture:
    image_id: Any
    file_name: str
    path: Path
    height: int
    width: int
    instances: List[CocoInstance] = field(default_factory=list)


@dataclass
class SkippedInstance:
    annotation_id: Any
    image_id: Any
    area: float
    reason: str


@dataclass
class CocoDataset:
    root: Path
    annotations_file: Path
    images_dir: Path
    images: int  # listed in the json
    annotations: int  # listed in the json
    pictures: List[CocoPicture]  # the images with an instance to evaluate, in the json's order
    skipped: List[SkippedInstance]  # area < 1

    @property
    def instances(self) -> int:
        return sum(len(p.instances) for p in self.pictures)


def _bad(problem: str, fix: str = f"fix the annotations file (layout: {LAYOUT})") -> BadInput:
    return BadInput(problem, fix)


def find_annotations(data: Path) -> Tuple[Path, Path]:
    """(the annotations json, the folder of the pictures) that --data names."""
    data = Path(data)
    if data.is_file():
        root, found = data.parent.parent, data
    elif data.is_dir():
        candidates = sorted((data / ANNOTATIONS_DIR).glob(ANNOTATIONS_GLOB))
        if not candidates:
            raise BadInput(f"--data {data}: no {ANNOTATIONS_DIR}/{ANNOTATIONS_GLOB}", f"a COCO dataset is {LAYOUT}")
        if len(candidates) > 1:
            names = ", ".join(c.name for c in candidates)
            raise BadInput(
                f"--data {data}: {len(candidates)} annotation files ({names})",
                f"name one: --data {data / ANNOTATIONS_DIR / candidates[0].name}",
            )
        root, found = data, candidates[0]
    else:
        raise BadInput(f"--data {data} does not exist", f"a COCO dataset is {LAYOUT}")
    split = found.stem[len("instances_") :] if found.stem.startswith("instances_") else ""
    images = root / IMAGES_DIR
    if split and (images / split).is_dir():
        images = images / split
    if not images.is_dir():
        raise BadInput(
            f"--data {data}: no {IMAGES_DIR}/ folder beside {ANNOTATIONS_DIR}/", f"a COCO dataset is {LAYOUT}"
        )
    return found, images


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _read_json(path: Path) -> Dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise _bad(f"{path} is not readable JSON ({one_line_text(exc, 120)})") from None
    if not isinstance(document, dict):
        raise _bad(f"{path} is not a COCO annotations object (a JSON object with images and annotations)")
    return document


def _pictures(document: Dict[str, Any], path: Path, images_dir: Path) -> Dict[Any, CocoPicture]:
    images = document.get("images")
    if not isinstance(images, list) or not images:
        raise _bad(f"{path} lists no images")
    pictures: Dict[Any, CocoPicture] = {}
    for i, entry in enumerate(images):
        fields = entry if isinstance(entry, dict) else {}
        image_id, name = fields.get("id"), fields.get("file_name")
        height, width = fields.get("height"), fields.get("width")
        if (
            image_id is None
            or not isinstance(name, str)
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (height, width))
        ):
            raise _bad(f"{path}: images[{i}] needs id, file_name, and height and width in pixels")
        if image_id in pictures:
            raise _bad(f"{path}: image id {image_id} is listed twice")
        pictures[image_id] = CocoPicture(image_id, name, images_dir / name, height, width)
    return pictures


def _check_polygons(segmentation: List[Any], where: str, picture: CocoPicture) -> None:
    for polygon in segmentation:
        if not isinstance(polygon, list) or len(polygon) < 4 or len(polygon) % 2 or not all(map(_number, polygon)):
            raise _bad(f"{where}: a polygon is not a list of x, y coordinates")
        xy = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
        outside = (xy[:, 0] < 0) | (xy[:, 0] > picture.width) | (xy[:, 1] < 0) | (xy[:, 1] > picture.height)
        if outside.any():
            x, y = xy[np.argmax(outside)]
            raise _bad(f"{where}: polygon point ({x:g}, {y:g}) is outside the {picture.width}x{picture.height} image")


def _check_rle(segmentation: Dict[str, Any], where: str, picture: CocoPicture) -> None:
    size, counts = segmentation.get("size"), segmentation.get("counts")
    if not isinstance(counts, (list, str)):
        raise _bad(f"{where}: an RLE needs counts (a list, or a compressed string) and size [height, width]")
    if size != [picture.height, picture.width]:
        raise _bad(f"{where}: the RLE's size {size} is not the image's [{picture.height}, {picture.width}]")


def _instance(ann: Any, index: int, path: Path, pictures: Dict[Any, CocoPicture]) -> CocoInstance:
    fields = ann if isinstance(ann, dict) else {}
    ann_id = fields.get("id", f"#{index}")
    picture = pictures.get(fields.get("image_id"))
    if picture is None:
        raise _bad(f"{path}: annotation {ann_id} is of image {fields.get('image_id')}, which images does not list")
    where = f"{path.name}: annotation {ann_id} (image {picture.image_id}, {picture.file_name})"
    area, bbox, segmentation = fields.get("area"), fields.get("bbox"), fields.get("segmentation")
    if not _number(area):
        raise _bad(f"{where} has no area")
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(map(_number, bbox)) or min(bbox[2:]) < 0:
        raise _bad(f"{where}: bbox is not [x, y, width, height]")
    instance = CocoInstance(ann_id, picture.image_id, float(area), tuple(float(v) for v in bbox), segmentation)
    if area < MIN_AREA:  # skipped before its mask is decoded, as upstream does
        return instance
    x, y, w, h = instance.bbox
    if x < 0 or y < 0 or x + w > picture.width or y + h > picture.height:
        raise _bad(f"{where}: bbox {list(instance.bbox)} is outside the {picture.width}x{picture.height} image")
    if isinstance(segmentation, list) and segmentation:
        _check_polygons(segmentation, where, picture)
    elif isinstance(segmentation, dict):
        _check_rle(segmentation, where, picture)
    else:
        raise _bad(f"{where}: segmentation is neither polygons nor an RLE")
    return instance


def read_coco(data: Path) -> CocoDataset:
    """The dataset --data names, checked (everything but the pixels)."""
    path, images_dir = find_annotations(data)
    document = _read_json(path)
    annotations = document.get("annotations")
    if not isinstance(annotations, list) or not annotations:
        raise _bad(f"{path} has no annotations", "evaluate needs instance annotations (COCO's instances_*.json)")
    pictures = _pictures(document, path, images_dir)
    skipped: List[SkippedInstance] = []
    for i, ann in enumerate(annotations):
        instance = _instance(ann, i, path, pictures)
        if instance.area < MIN_AREA:
            skipped.append(SkippedInstance(instance.annotation_id, instance.image_id, instance.area, "area < 1"))
        else:
            pictures[instance.image_id].instances.append(instance)
    for picture in pictures.values():
        if not picture.path.is_file():
            raise BadInput(
                f"image {picture.image_id}: {picture.path} is missing", f"put {picture.file_name} under {images_dir}"
            )
    return CocoDataset(
        root=path.parent.parent,
        annotations_file=path,
        images_dir=images_dir,
        images=len(pictures),
        annotations=len(annotations),
        pictures=[p for p in pictures.values() if p.instances],
        skipped=skipped,
    )


def ground_truth_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """An instance's mask (H x W bool), decoded as upstream's ann_to_mask decodes it."""
    from pycocotools import mask as mask_util

    if isinstance(segmentation, list):
        rle = mask_util.merge(mask_util.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation["counts"], list):
        rle = mask_util.frPyObjects(segmentation, height, width)
    else:  # compressed counts (upstream raises NotImplementedError here)
        rle = {"size": segmentation["size"], "counts": segmentation["counts"].encode("ascii")}
    return mask_util.decode(rle) > 0


def describe(dataset: CocoDataset) -> Dict[str, Optional[object]]:
    return {
        "root": str(dataset.root),
        "annotations_file": str(dataset.annotations_file),
        "images_dir": str(dataset.images_dir),
        "images": dataset.images,
        "annotations": dataset.annotations,
    }
