"""`msla-deploy models`: both tasks, a task column and --task filter, checkpoint status, torch-free."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from msla_deploy.cli import app
from msla_deploy.zoo.listing import checkpoint_patterns, zoo_rows
from tests.fixtures import one_error_line, run_without_torch
from tests.zoo.test_zoo import ADE20K, CITYSCAPES, CLASSIFIERS

runner = CliRunner()


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_rows_carry_the_task_and_filter_by_it(tmp_path):
    (tmp_path / "efficientvit_l2_r384.pt").write_bytes(b"")
    rows = zoo_rows(tmp_path)
    assert [r["name"] for r in rows] == CITYSCAPES + ADE20K + CLASSIFIERS + SAM_MODELS + [SAM_STANDIN]
    assert {r["name"]: r["task"] for r in rows} == {
        **{n: "segmentation" for n in CITYSCAPES + ADE20K},
        **{n: "classification" for n in CLASSIFIERS},
        **{n: "sam" for n in SAM_MODELS + [SAM_STANDIN]},
    }
    assert [r["name"] for r in rows if r["present"]] == ["efficientvit-l2-r384"]
    classifiers = zoo_rows(tmp_path, "classification")
    assert [r["name"] for r in classifiers] == CLASSIFIERS
    l2 = classifiers[-6]
    assert (l2["name"], l2["checkpoint_file"], l2["resolution"]) == (
        "efficientvit-l2-r384",
        "efficientvit_l2_r384.pt",
        [384, 384],
    )
    assert l2["gmacs"] == 20_397_642_752 / 1e9 and l2["params"] == 63_707_016


#: upstream's sam_model_zoo names, in its order
SAM_MODELS = [f"efficientvit-sam-{v}" for v in ("l0", "l1", "l2", "xl0", "xl1")]
#: the project's own, listed after upstream's (tests/zoo/test_sam_standin.py)
SAM_STANDIN = "efficientvit-sam-standin"


def test_checkpoint_patterns_name_every_task():
    assert checkpoint_patterns() == [
        "efficientvit_seg_<variant>_<dataset>.pt",
        "efficientvit_<variant>_r<res>.pt",
        "efficientvit_sam_<variant>.pt",
    ]
    assert checkpoint_patterns("classification") == ["efficientvit_<variant>_r<res>.pt"]


def test_table_lists_both_tasks_with_a_task_column(tmp_path):
    (tmp_path / "efficientvit_b1_r224.pt").write_bytes(b"")
    result = cli("models", "--models-dir", tmp_path)
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "EfficientViT zoo" in text and "EfficientViT-Seg zoo" not in text
    header = next(line for line in text.splitlines() if "name" in line and "checkpoint" in line)
    assert header.split()[:2] == ["name", "task"]
    b1 = next(line for line in text.splitlines() if line.split()[:1] == ["efficientvit-b1-r224"])
    assert b1.split() == ["efficientvit-b1-r224", "classification", "1000", "9.10M", "0.52", "224x224", "found"]
    seg = next(line for line in text.splitlines() if line.split()[:1] == ["efficientvit-seg-b0-cityscapes"])
    assert seg.split()[1] == "segmentation" and seg.split()[-1] == "missing"
    flat = " ".join(text.split())
    assert "efficientvit_seg_<variant>_<dataset>.pt" in flat and "efficientvit_<variant>_r<res>.pt" in flat


def test_json_with_task_filter(tmp_path):
    result = cli("models", "--models-dir", tmp_path, "--task", "segmentation", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows] == CITYSCAPES + ADE20K
    assert {r["task"] for r in rows} == {"segmentation"}


def test_unknown_task_is_one_line_exit_2():
    result = cli("models", "--task", "detection")
    assert result.exit_code == 2
    assert "detection" in one_error_line(result)


def test_listing_needs_no_torch(tmp_path):
    proc = run_without_torch("models", "--task", "classification", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert [r["name"] for r in json.loads(proc.stdout)] == CLASSIFIERS
