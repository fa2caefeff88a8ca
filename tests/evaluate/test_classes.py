"""classes.py: label sets, palettes and label-id tables."""

from __future__ import annotations

import numpy as np

from msla_deploy import classes
from msla_deploy.parity import pictures


def test_cityscapes_label_ids_map_to_the_19_train_ids_and_the_rest_is_ignored():
    table = classes.cityscapes_label_to_train()
    expected = {
        7: 0,
        8: 1,
        11: 2,
        12: 3,
        13: 4,
        17: 5,
        19: 6,
        20: 7,
        21: 8,
        22: 9,
        23: 10,
        24: 11,
        25: 12,
        26: 13,
        27: 14,
        28: 15,
        31: 16,
        32: 17,
        33: 18,
    }
    for label_id in range(256):
        assert table[label_id] == expected.get(label_id, classes.IGNORE_INDEX)
    back = classes.cityscapes_train_to_label()
    assert [int(back[t]) for t in range(19)] == sorted(expected)


def test_ade20k_annotations_shift_by_one_and_zero_is_ignored():
    table = classes.ade20k_annotation_to_train()
    assert (
        table[0] == classes.IGNORE_INDEX and table[1] == 0 and table[150] == 149 and table[151] == classes.IGNORE_INDEX
    )
    assert len(classes.ADE20K_CLASSES) == len(set(classes.ADE20K_CLASSES)) == 150


def test_dataset_for_follows_the_name_then_the_class_count():
    assert classes.dataset_for("efficientvit-seg-b0-cityscapes", 19) is classes.CITYSCAPES
    assert classes.dataset_for("efficientvit-seg-b1-ade20k", 150) is classes.ADE20K
    assert classes.dataset_for("efficientvit-seg-b1-ade20k", 19) is None  # the name and the head disagree
    assert classes.dataset_for("my_model.py:build", 19) is classes.CITYSCAPES
    assert classes.dataset_for("my_model.py:build", 7) is None


def test_palettes_are_fixed_and_shared_with_the_report_pictures():
    assert classes.palette(19).tolist() == [list(c) for c in classes.CITYSCAPES_COLORS]
    assert classes.ADE20K.palette.shape == (150, 3) and classes.ADE20K.palette.dtype == np.uint8
    np.testing.assert_array_equal(pictures.palette(150), classes.ADE20K.palette)
    np.testing.assert_array_equal(classes.palette(7), classes.palette(7))  # seeded: the same every call
    assert pictures.class_names(19, "efficientvit-seg-b0-cityscapes")[0] == "road"
