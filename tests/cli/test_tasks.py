"""Tasks as data (msla_deploy/tasks.py): the registry, its defaults, and what the stages read from it."""

from __future__ import annotations

import pytest

from msla_deploy.choices import HEADS, TaskName
from msla_deploy.errors import BadInput
from msla_deploy.tasks import CLASSIFICATION, DEFAULT_TASK, SEGMENTATION, TASKS, OutputKind, get_task


def test_no_task_recorded_is_segmentation():
    assert DEFAULT_TASK == SEGMENTATION
    assert get_task(None).name == get_task("").name == SEGMENTATION


def test_an_unknown_task_is_bad_input_with_a_suggestion():
    with pytest.raises(BadInput) as raised:
        get_task("clasification")
    assert "did you mean classification" in str(raised.value)


def test_each_task_s_heads_and_outputs():
    seg, cls = TASKS[SEGMENTATION], TASKS[CLASSIFICATION]
    assert seg.head_names == ("logits", "labels", "both")
    assert cls.head_names == ("logits", "probs", "topk")
    assert seg.output_names("both") == ("logits", "labels")
    assert cls.output_names("topk") == ("topk_indices", "topk_scores")
    assert cls.output_kinds["topk_indices"] == OutputKind.TOPK_INDICES
    # every head of every task is a choice of --head, and every task one of --task
    assert {h for t in TASKS.values() for h in t.head_names} == set(HEADS)
    assert set(TaskName.values()) == set(TASKS)


def test_a_head_of_the_other_task_is_refused_with_the_heads_it_takes():
    with pytest.raises(BadInput) as raised:
        TASKS[CLASSIFICATION].check_head("labels")
    assert "logits|probs|topk" in str(raised.value)


def test_classes_come_from_logits_of_the_task_s_rank_only():
    assert TASKS[SEGMENTATION].num_classes((1, 19, 128, 256)) == 19
    assert TASKS[SEGMENTATION].num_classes((1, 1000)) is None
    assert TASKS[CLASSIFICATION].num_classes((4, 1000)) == 1000
    assert TASKS[CLASSIFICATION].num_classes((1, 19, 128, 256)) is None
