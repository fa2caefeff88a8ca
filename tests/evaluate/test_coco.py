"""The COCO reader of SAM's evaluate (evaluate/coco.py): layouts, masks as upstream's ann_to_mask
decodes them, and every bad input on one line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from msla_deploy.errors import BadInput
from msla_deploy.evaluate.coco import ground_truth_mask, read_coco
from msla_deploy.rle import encode as encode_mask
from tests.evaluate.coco_data import HEIGHT, WIDTH, coco_document, write_coco


def test_reads_the_pictures_and_instances_and_skips_area_below_one(tmp_path):
    data = read_coco(write_coco(tmp_path / "coco"))
    assert (data.images, data.annotations, data.instances) == (2, 5, 4)
    assert [p.image_id for p in data.pictures] == [1, 2]
    assert [i.annotation_id for p in data.pictures for i in p.instances] == [11, 12, 21, 22]
    assert [(s.annotation_id, s.reason) for s in data.skipped] == [(23, "area < 1")]
    assert data.pictures[0].path == tmp_path / "coco" / "images" / "one.png"


def test_masks_from_polygons_and_both_rles(tmp_path):
    data = read_coco(write_coco(tmp_path / "coco"))
    masks = {
        i.annotation_id: ground_truth_mask(i.segmentation, HEIGHT, WIDTH) for p in data.pictures for i in p.instances
    }
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    # the two polygons of annotation 11 are merged: one 40 x 30 rectangle (pycocotools rasterises a
    # polygon's edge at the pixel centres it crosses: columns 6-45, rows 10-39)
    expected = (xx >= 6) & (xx < 46) & (yy >= 10) & (yy < 40)
    assert masks[11].dtype == bool and np.array_equal(masks[11], expected)
    assert np.array_equal(masks[12], (xx - 70) ** 2 + (yy - 40) ** 2 <= 14**2)  # uncompressed RLE
    assert np.array_equal(masks[21], (xx >= 50) & (xx < 90) & (yy >= 8) & (yy < 40))  # compressed RLE
    assert 500 < masks[22].sum() < 580  # the triangle, area 540
    # and back: our RLE of a mask decodes to it
    assert np.array_equal(ground_truth_mask(encode_mask(masks[12]), HEIGHT, WIDTH), masks[12])


def test_data_may_name_the_json_and_images_may_be_in_the_split_folder(tmp_path):
    root = write_coco(tmp_path / "coco")
    (root / "images" / "val").mkdir()
    for name in ("one.png", "two.png"):
        (root / "images" / name).rename(root / "images" / "val" / name)
    data = read_coco(root / "annotations" / "instances_val.json")
    assert data.images_dir == root / "images" / "val" and data.instances == 4


def bad(tmp_path, spoil):
    document = coco_document()
    spoil(document)
    return write_coco(tmp_path / "coco", document)


@pytest.mark.parametrize(
    "spoil, message",
    [
        (lambda d: d.pop("annotations"), r"instances_val.json has no annotations"),
        (lambda d: d.__setitem__("annotations", []), r"instances_val.json has no annotations"),
        (
            lambda d: d["annotations"][3]["segmentation"][0].__setitem__(0, 97),
            r"annotation 22 \(image 2, two.png\): polygon point \(97, 56\) is outside the 96x64 image",
        ),
        (
            lambda d: d["annotations"][0]["segmentation"][1].__setitem__(5, 64.5),
            r"annotation 11 \(image 1, one.png\): polygon point \(46, 64.5\) is outside the 96x64 image",
        ),
        (lambda d: d["annotations"][1].__setitem__("image_id", 7), r"annotation 12 is of image 7, which images"),
        (lambda d: d["images"][1].__setitem__("file_name", "gone.png"), r"image 2: .*gone.png is missing"),
        (lambda d: d["annotations"][2]["segmentation"].__setitem__("size", [32, 96]), r"RLE's size \[32, 96\]"),
        (lambda d: d["annotations"][0].__setitem__("bbox", [60, 10, 40, 30]), r"bbox .* is outside the 96x64"),
        (lambda d: d["annotations"][0].__setitem__("segmentation", 5), r"neither polygons nor an RLE"),
    ],
)
def test_bad_annotations_are_one_line(tmp_path, spoil, message):
    root = bad(tmp_path, spoil)
    with pytest.raises(BadInput, match=message) as caught:
        read_coco(root)
    assert "\n" not in caught.value.one_line()


def test_unreadable_json_and_several_jsons_and_no_json(tmp_path):
    root = write_coco(tmp_path / "coco")
    (root / "annotations" / "instances_val.json").write_text("{not json")
    with pytest.raises(BadInput, match=r"instances_val.json is not readable JSON"):
        read_coco(root)
    (root / "annotations" / "instances_train.json").write_text(json.dumps(coco_document()))
    with pytest.raises(BadInput, match=r"2 annotation files \(instances_train.json, instances_val.json\).*name one"):
        read_coco(root)
    with pytest.raises(BadInput, match=r"no annotations/instances_\*.json"):
        read_coco(root / "images")
