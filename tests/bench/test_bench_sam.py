"""`msla-deploy bench` of a SAM artifact: the encoder, the decoder at B=1 and B=16 prompts and the
pair, as the bench's rows; options that do not apply are refused on one line. Nothing here asserts
a time: only that times exist and are consistent with each other (the encoder of l0 at 512 takes
seconds on two cores, hence one iteration and `slow`)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from msla_deploy.bench.command import results_table, table_notes
from msla_deploy.bench.report import BenchReport
from msla_deploy.bench.sam import box_prompts
from msla_deploy.cli import app
from tests.fixtures import one_error_line

runner = CliRunner()
LABELS = ["encoder", "decoder B=1", "decoder B=16", "pair (encoder + decoder B=1)"]


def bench(*args):
    return runner.invoke(app, ["bench", *map(str, args)])


@pytest.mark.slow
def test_encoder_decoder_at_two_batches_and_the_pair(sam_artifact):
    result = bench(sam_artifact, "--backend", "ort-cpu", "--iterations", 1, "--warmup", 0, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    rows = report["results"]
    assert [r["label"] for r in rows] == LABELS
    assert [r["graph"] for r in rows] == ["encoder", "decoder", "decoder", "pair"]
    assert [r.get("prompts") for r in rows] == [None, 1, 16, 1]
    assert [r["batch"] for r in rows] == [1, 1, 16, 1]
    for r in rows:
        s = r["stats"]
        assert s["iterations"] == 1 == len(r["latencies_ms"]) and s["p50_ms"] > 0
        assert r["nonfinite"] == 0 and r["backend"] == "ort-cpu" and r.get("p50_ratio") is None
    encoder, one, sixteen, pair = rows
    assert one["per_prompt_ms"] == pytest.approx(one["stats"]["p50_ms"])
    assert sixteen["per_prompt_ms"] == pytest.approx(sixteen["stats"]["p50_ms"] / 16)
    assert "per_prompt_ms" not in encoder and "per_prompt_ms" not in pair
    assert sixteen["stats"]["throughput_ips"] == pytest.approx(16 / (sixteen["stats"]["mean_ms"] / 1e3))
    # the pair runs the encoder and a decoder call: it cannot be much faster than the encoder alone
    assert pair["stats"]["p50_ms"] > 0.5 * encoder["stats"]["p50_ms"]
    assert report["settings"]["interleaved"] is True and report["settings"]["batch"] is None
    # the table: a median per prompt, no ratio between different graphs
    read = BenchReport.from_dict(report)
    console = Console(width=120, record=True)
    console.print(results_table(read))
    text = console.export_text()
    assert "ms/prompt" in text and "x p50" not in text and "decoder B=16" in text
    assert any(note.startswith("SAM: ms/prompt") for note in table_notes(read))


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, needle",
    [
        (["--batch", "2"], "--batch does not apply to SAM"),
        (["--compare", "ort-cpu"], "--compare does not apply to SAM"),
        (["--backend", "torch"], "does not support SAM"),
        (["--backend", "trt"], "no TensorRT engine of the encoder"),
    ],
)
def test_options_that_do_not_apply_are_one_line(sam_artifact, args, needle):
    result = bench(sam_artifact, "--iterations", 1, *args)
    assert result.exit_code == 2, result.output
    assert needle in one_error_line(result)


def test_box_prompts_are_a_box_and_a_pad_point():
    feed = box_prompts(16, 3)
    assert feed["point_coords"].shape == (16, 3, 2) and feed["point_labels"].shape == (16, 3)
    assert (feed["point_labels"] == np.array([2, 3, -1], np.float32)).all()
    corners = feed["point_coords"]
    assert (corners[:, 1] > corners[:, 0]).all() and corners.max() <= 1024  # a box, inside the prompt frame
    assert feed["mask_input"].shape == (16, 1, 256, 256) and not feed["has_mask_input"].any()
    assert box_prompts(4, 2)["point_labels"].shape == (4, 2)  # a profile of 2 points: the box alone
