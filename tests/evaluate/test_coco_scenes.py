"""The procedural COCO instance set: deterministic, and what it writes decodes back exactly."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image
from pycocotools import mask as coco_mask

from msla_deploy.evaluate.coco_scenes import CATEGORIES, make_coco_scene, write_coco_scenes

SMALL = ((72, 96), (80, 112))


def _decode(segmentation, h, w):
    """As COCO's own annToMask: polygons -> RLE -> merged; an RLE dict decodes as it is."""
    if isinstance(segmentation, list):
        rle = coco_mask.merge(coco_mask.frPyObjects(segmentation, h, w))
    else:
        rle = segmentation
    return coco_mask.decode(rle).astype(bool), rle


def test_a_scene_is_the_same_for_the_same_seed_and_index():
    a, b, other = make_coco_scene(3, 5, SMALL), make_coco_scene(3, 5, SMALL), make_coco_scene(3, 6, SMALL)
    assert np.array_equal(a.picture, b.picture) and np.array_equal(a.masks, b.masks)
    assert a.segmentations == b.segmentations and a.categories == b.categories
    assert not np.array_equal(a.picture, make_coco_scene(4, 5, SMALL).picture)
    assert a.picture.shape != other.picture.shape or not np.array_equal(a.picture, other.picture)


def test_masks_are_visible_parts_and_span_the_coco_area_ranges():
    areas, kinds = [], set()
    for i in range(10):
        scene = make_coco_scene(0, i)
        h, w = scene.picture.shape[:2]
        assert scene.masks.shape == (len(scene.categories), h, w)
        # visible parts: no pixel belongs to two instances
        assert scene.masks.sum(axis=0).max() <= 1
        areas += [int(m.sum()) for m in scene.masks]
        kinds |= {type(s) for s in scene.segmentations}
        assert set(scene.categories) <= set(range(1, len(CATEGORIES) + 1))
        xyxy = scene.boxes_xyxy
        assert np.array_equal(xyxy[:, 2:] - xyxy[:, :2], scene.boxes[:, 2:])
    areas = np.array(areas)
    assert (areas < 32**2).any() and ((areas >= 32**2) & (areas < 96**2)).any() and (areas >= 96**2).any()
    assert kinds == {list, dict}  # polygons for whole shapes, RLE for occluded or cut ones


def test_written_annotations_decode_to_the_instance_masks(tmp_path):
    path = write_coco_scenes(tmp_path, 4, seed=7, size=SMALL, split="val")
    assert path == tmp_path / "annotations" / "instances_val.json"
    document = json.loads(path.read_text())
    assert [c["name"] for c in document["categories"]] == list(CATEGORIES)
    ids = [a["id"] for a in document["annotations"]]
    assert len(set(ids)) == len(ids) and document["annotations"]
    for image in document["images"]:
        scene = make_coco_scene(7, image["id"] - 1, SMALL)
        h, w = image["height"], image["width"]
        picture = np.asarray(Image.open(tmp_path / "images" / image["file_name"]))
        assert np.array_equal(picture, scene.picture) and picture.shape == (h, w, 3)
        annotations = [a for a in document["annotations"] if a["image_id"] == image["id"]]
        assert len(annotations) == len(scene.masks)
        for annotation, mask in zip(annotations, scene.masks):
            decoded, rle = _decode(annotation["segmentation"], h, w)
            assert np.array_equal(decoded, mask)
            assert annotation["area"] == int(mask.sum()) == int(coco_mask.area(rle))
            assert annotation["bbox"] == [float(v) for v in coco_mask.toBbox(rle)]
            assert annotation["iscrowd"] == 0
            if isinstance(annotation["segmentation"], list):  # polygons lie inside the picture
                xy = np.asarray(annotation["segmentation"][0]).reshape(-1, 2)
                assert (xy >= 0).all() and (xy[:, 0] < w).all() and (xy[:, 1] < h).all()
