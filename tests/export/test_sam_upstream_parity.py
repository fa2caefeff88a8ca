"""Issue 23's proof, through the artifact as a user makes it: `export` of efficientvit-sam-l0 and
-xl0 with upstream's seeded weights in a .pt checkpoint, then ONNX Runtime on encoder.onnx and
decoder.onnx against upstream's own PyTorch (efficientvit + segment-anything, the golden data in
tests/data/upstream/sam/, tests/data/README.md "SAM").

- encoder.onnx on the golden picture gives upstream's image embeddings (the stored summary: a
  16 x 16 grid of every channel, the per-channel mean and RMS) to 1e-4 of their peak;
- decoder.onnx on THOSE embeddings (ONNX Runtime's, as a user chains the two graphs), fed by
  artifact.sam_io.decoder_feed and read by select_masks, gives upstream's binarised masks for every
  golden case (a box, points, two boxes in one call, a box with a point, a refinement round with
  the stored mask_input), mask IoU >= 0.999 and a handful of pixels at most, IoU predictions
  within 1e-3;
- l0 by both torch exporters, xl0 (1024) by one;
- fp16 on stress weights (trained-model magnitudes in every LiteMLA and the neck): the guarded
  export passes its own parity check, naive fp16 fails it (efficientvit #113, reproduced and fixed).

Each export runs once per module (module-scoped fixtures); every test here waits for an export
of a minute or more on two shared cores, so the file is slow (measured times at `pytestmark`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict

import numpy as np
import onnxruntime as ort
import pytest
import torch

from msla_deploy.artifact.names import DECODER_ONNX_NAME, ENCODER_ONNX_NAME
from msla_deploy.artifact.options import ExportOptions
from msla_deploy.artifact.sam_io import DECODER_OUTPUTS, IMAGE, IMAGE_EMBEDDINGS, decoder_feed, select_masks
from msla_deploy.export.pipeline import ExportResult, run_export
from msla_deploy.export.torch_to_onnx import dynamo_available
from msla_deploy.zoo.sam import build_sam, get_sam_spec
from tests.zoo import sam_golden

#: measured on the 2 shared cores (export and its own parity run, wall time, load average 2-9 from
#: other jobs): l0 torchscript 43-100 s, l0 dynamo 51-135 s, xl0 torchscript 88-285 s, the two fp16
#: stress exports 48-75 s each; the whole file 362 s at a load of 3.5 (4 min 17 s of CPU time)
pytestmark = pytest.mark.slow

L0, XL0 = sam_golden.GOLDEN_NAMES
#: the issue's budgets
EMBEDDING_BUDGET = 1e-4  # of the golden embeddings' peak
MASK_IOU = 0.999
IOU_ERROR = 1e-3
#: binarised-mask pixels allowed to differ from upstream's per mask (as tests/export/test_sam_graphs.py)
HANDFUL = 8
#: the fp16 budget of the pair (encoder ORT -> decoder ORT): the issue's mean mask IoU
FP16_MASK_IOU = 0.99

needs_dynamo = pytest.mark.skipif(not dynamo_available(), reason="the dynamo exporter needs onnxscript")

#: (model, exporter): l0 by both exporters, xl0 by torchscript (the faster export of an fp32 graph)
EXPORTS = (
    pytest.param((L0, "torchscript"), id="l0-torchscript"),
    pytest.param((L0, "dynamo"), id="l0-dynamo", marks=needs_dynamo),
    pytest.param((XL0, "torchscript"), id="xl0-torchscript"),
)


def write_weights(name: str, path: Path) -> Path:
    """The recipe's weights as a checkpoint file, loaded by `export --weights` as an official one."""
    torch.save(sam_golden.fill_model(build_sam(name)).state_dict(), path)
    return path


def export(root: Path, name: str, **options) -> ExportResult:
    root.mkdir(parents=True, exist_ok=True)
    weights = write_weights(name, root / f"{name}.pt")
    started = time.perf_counter()
    result = run_export(
        ExportOptions(model=name, weights=weights, out=root / "artifact", models_dir=root / "none", **options)
    )
    print(f"{name} {options}: export {time.perf_counter() - started:.1f} s")
    return result


def session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@dataclass
class Exported:
    name: str
    exporter: str
    result: ExportResult
    embeddings: np.ndarray  # encoder.onnx on the golden picture, [1, 256, 64, 64]
    golden: Dict[str, np.ndarray]


def session_export(directory: Path) -> ExportResult:
    """The session's l0 export (tests/conftest.py sam_artifact: these weights, torchscript), as export returned it."""
    from msla_deploy.artifact.manifest import read_manifest
    from msla_deploy.artifact.names import PARITY_NAME
    from msla_deploy.parity.records import ParityRecord

    return ExportResult(directory, read_manifest(directory), ParityRecord.read(directory / PARITY_NAME))


@pytest.fixture(scope="module", params=EXPORTS)
def exported(request, tmp_path_factory) -> Exported:
    name, exporter = request.param
    golden = sam_golden.read_npz(sam_golden.golden_path(name))
    if (name, exporter) == (L0, "torchscript"):  # the very export the session made already
        result = session_export(request.getfixturevalue("sam_artifact"))
    else:
        result = export(tmp_path_factory.mktemp(f"{name}-{exporter}"), name, exporter=exporter)
    side = get_sam_spec(name).default_resolution[0]
    image = sam_golden.input_from_pixels(golden["pixels"], side)
    (embeddings,) = session(result.directory / ENCODER_ONNX_NAME).run([IMAGE_EMBEDDINGS], {IMAGE: image})
    return Exported(name, exporter, result, embeddings, golden)


def test_export_is_a_passing_sam_artifact_by_the_asked_exporter(exported):
    manifest = exported.result.manifest.to_dict()
    assert manifest["model"]["task"] == "sam"
    assert manifest["exporter"]["used"] == exported.exporter  # no silent fallback
    assert manifest["exporter"]["decoder"] == exported.exporter
    assert [graph["role"] for graph in manifest["graphs"]] == ["encoder", "decoder"]
    assert exported.result.passed, exported.result.parity.failures()


def test_encoder_onnx_gives_upstreams_embeddings(exported):
    """The golden picture (4:3, SAM's padding below) through encoder.onnx under ONNX Runtime."""
    golden = exported.golden
    assert exported.embeddings.shape == (1, 256, 64, 64)
    summary = sam_golden.embedding_summary(exported.embeddings)
    peak = float(np.abs(golden["embeddings_grid"]).max())
    errors = {key: float(np.abs(value - golden[key]).max()) for key, value in summary.items()}
    print(f"{exported.name} {exported.exporter}: embeddings off by {max(errors.values()) / peak:.2g} of the peak")
    for key, error in errors.items():
        assert error <= EMBEDDING_BUDGET * peak, f"{key}: off by {error:.3g} (peak {peak:.3g})"


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def test_decoder_onnx_on_the_encoders_embeddings_gives_upstreams_masks(exported):
    """Every golden case through decoder.onnx, fed as a user feeds it (sam_io.decoder_feed), its
    masks chosen as segment-anything chooses them (select_masks)."""
    golden = exported.golden
    mask_inputs = sam_golden.stored_mask_inputs(golden)
    decoder = session(exported.result.directory / DECODER_ONNX_NAME)
    worst = {"mask IoU": -1.0, "pixels": 0, "IoU error": 0.0}  # the mask IoU negated: the max is the worst
    for case in sam_golden.CASES:
        name, multimask = case["name"], case["multimask"]
        feed = decoder_feed(
            **{key: case[key] for key in ("points", "labels", "boxes") if key in case}, mask_input=mask_inputs.get(name)
        )
        feed[IMAGE_EMBEDDINGS] = exported.embeddings
        masks, iou = select_masks(*decoder.run(list(DECODER_OUTPUTS), feed), multimask)
        bits = sam_golden.unpack_bits(golden[f"{name}__bits"])
        assert masks.shape == bits.shape and iou.shape == golden[f"{name}__iou"].shape, name
        ours = (masks > 0).reshape(-1, 256 * 256)
        ious = [mask_iou(a, b) for a, b in zip(ours, bits.reshape(-1, 256 * 256))]
        assert min(ious) >= MASK_IOU, f"{name}: mask IoUs {ious}"
        flipped = (ours != bits.reshape(-1, 256 * 256)).sum(axis=1)
        assert flipped.max() <= HANDFUL, f"{name}: {flipped.tolist()} pixels differ"
        error = float(np.abs(iou - golden[f"{name}__iou"]).max())
        assert error <= IOU_ERROR, f"{name}: IoU predictions off by {error:.3g}"
        assert 0.05 < bits.mean() < 0.95, name  # the golden masks are not trivially empty or full
        measured = {"mask IoU": -min(ious), "pixels": int(flipped.max()), "IoU error": error}
        worst = {key: max(worst[key], value) for key, value in measured.items()}
    print(
        f"{exported.name} {exported.exporter}: worst mask IoU {-worst['mask IoU']:.5f}, {worst['pixels']} pixels, "
        f"IoU predictions off by {worst['IoU error']:.2g}"
    )


# --- fp16 with stress weights: efficientvit #113 reproduced (naive) and fixed (guarded) -----------


def pair_check(result: ExportResult):
    """parity.json's pair check: encoder ONNX Runtime -> decoder ONNX Runtime, judged by mask IoU."""
    (check,) = [c for c in result.parity.checks if c.label.startswith("pair")]
    return check, {row.name: row for row in check.outputs}


@pytest.fixture(scope="module")
def stress_fp16(tmp_path_factory):
    """l0, stress weights, fp16 encoder: guarded and naive, by the exporter export_sam uses for fp16."""
    root = tmp_path_factory.mktemp("stress-fp16")
    common = {"precision": "fp16", "stress_weights": True, "exporter": "dynamo"}
    return {
        guards: export(root / ("guarded" if guards else "naive"), L0, fp16_guards=guards, **common)
        for guards in (True, False)
    }


@needs_dynamo
def test_guarded_fp16_encoder_on_stress_weights_passes_its_parity(stress_fp16):
    result = stress_fp16[True]
    assert result.manifest.weights["stress"], "stress weights were not applied"
    assert result.passed, result.parity.failures()
    check, rows = pair_check(result)
    masks = rows[DECODER_OUTPUTS[0]]
    assert check.passed and masks.nan_count == 0 and masks.inf_count == 0
    assert masks.mask_iou >= FP16_MASK_IOU, masks.mask_iou
    print(f"guarded fp16, stress weights: pair mask IoU {masks.mask_iou:.5f} (worst {masks.mask_iou_min:.5f})")


@needs_dynamo
def test_naive_fp16_encoder_on_stress_weights_fails_its_parity(stress_fp16):
    result = stress_fp16[False]
    assert not result.passed and not result.parity.passed
    encoder = next(c for c in result.parity.checks if c.label.startswith("encoder fp16"))
    embeddings = {row.name: row for row in encoder.outputs}[IMAGE_EMBEDDINGS]
    _, rows = pair_check(result)
    masks = rows[DECODER_OUTPUTS[0]]
    broken = embeddings.nan_count > 0 or masks.nan_count > 0 or (masks.mask_iou or 0.0) < FP16_MASK_IOU
    assert broken, (embeddings.nan_count, masks.nan_count, masks.mask_iou)
    print(
        f"naive fp16, stress weights: {embeddings.nan_count} NaN embeddings, {masks.nan_count} NaN mask logits, "
        f"pair mask IoU {masks.mask_iou}; failures: {result.parity.failures()[:3]}"
    )
    assert not encoder.passed
