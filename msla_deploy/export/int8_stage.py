"""The int8 part of `export`: the calibration pictures, and the Q/DQ graph made from the fp32 one.

export/int8.py knows how a Q/DQ graph is made and checked; this module runs it as export steps
(timed, with warnings) on the user's options and says what the manifest records of it.
export/pipeline.py's Int8Recipe calls it; the parity checks of the result live there.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import onnx

from ..artifact.files import write_json_atomic
from ..artifact.names import FP32_ONNX_NAME, INT8_SENSITIVITY_NAME, INT8_SENSITIVITY_PLOT
from ..artifact.options import ExportOptions
from ..errors import BadInput, CheckFailed
from ..progress import Steps
from . import int8 as int8_q
from . import int8_sensitivity as int8_sweep
from . import sam_int8
from . import sam_int8_sensitivity as sam_sweep
from .calibration import CalibrationSet, load_calibration


def calibration_batch(options: ExportOptions) -> int:
    """Pictures per calibration feed: the static batch, or one for a dynamic batch (every picture used)."""
    return 1 if options.dynamic_batch else options.batch


def load_int8_calibration(options: ExportOptions, steps: Steps) -> CalibrationSet:
    """--calib-images, read and checked before any model is built (bad pictures never cost one)."""
    height, width = options.resolution
    calib = load_calibration(
        Path(options.calib_images), height, width, options.calib_count, options.calib_method, task=options.task
    )
    found, batch = len(calib.files), options.batch
    if found < batch and not options.dynamic_batch:
        raise BadInput(
            f"--calib-images {options.calib_images}: {found} picture(s) for a batch-{batch} model",
            f"give at least {batch} pictures (whole batches are fed)",
        )
    for warning in calib.warnings:
        steps.warn(warning)
    used = calib.used(calibration_batch(options))
    if used < found:
        steps.warn(
            f"{used} of the {found} calibration pictures are fed (whole batches of {batch}); "
            f"give a multiple of {batch}, or export with --batch dynamic, to use them all"
        )
    return calib


@dataclass
class EncoderPolicy:
    """SAM's encoder: the policy naming the blocks kept float (export/sam_int8.py), the PyTorch block
    family of every module (read while the model existed), and the decoder its sweep judges by."""

    name: str
    families: Dict[str, str]
    decoder: Path


@dataclass
class QuantizedExport:
    """The int8 graph (in memory, not yet written), what the manifest records of it
    (precision.int8) and the files the sensitivity sweep wrote."""

    graph: int8_q.QuantizedGraph
    record: Dict
    files: List[str]


def quantize_export(
    options: ExportOptions,
    calib: CalibrationSet,
    staging: Path,
    steps: Steps,
    fp32_name: str = FP32_ONNX_NAME,
    policy: Optional[EncoderPolicy] = None,
) -> QuantizedExport:
    """Calibrate once on the pictures, optionally sweep the modules, quantize the fp32 graph
    written at `staging`/`fp32_name` (model_fp32.onnx; SAM's encoder_fp32.onnx, with its `policy`),
    and check that TensorRT can consume the result."""
    fp32_path = staging / fp32_name
    with tempfile.TemporaryDirectory(prefix="msla-int8-") as work:
        feeds = calib.batches(calibration_batch(options))
        pictures = sum(len(f) for f in feeds)
        with steps.step("calibrate", f"Calibrating int8 ranges on {pictures} picture(s) ({options.calib_method})"):
            calibration = int8_q.calibrate(fp32_path, feeds, options.calib_method, Path(work), progress=steps.advance)
        units = int8_q.graph_units(onnx.load(str(fp32_path)))
        candidates = [u for u in units if options.int8_attention or u.kind == "block"]
        plan = None if policy is None else sam_int8.plan(policy.name, units, policy.families)
        if plan is None:
            sensitivity, files = _sweep(options, fp32_path, calibration, len(candidates), staging, steps)
            kept = set() if sensitivity is None else set(sensitivity.keep_fp32)
        else:
            sensitivity, files = _sam_sweep(options, fp32_path, calibration, candidates, policy, plan, staging, steps)
            kept = set(plan.kept_float)
        quantized_modules = [u.module for u in candidates if u.module not in kept]
        attention = "int8" if options.int8_attention else "fp32"
        kept_text = "" if plan is None else f", policy {plan.name}: {len(plan.kept_float)} block(s) float"
        with steps.step("quantize", f"Writing the int8 Q/DQ graph (LiteMLA cores {attention}{kept_text})"):
            quantized = int8_q.quantize(fp32_path, calibration, quantized_modules, Path(work))
    if plan is not None:
        int8_q.set_policy_metadata(quantized.proto, plan.name, plan.kept_float)
    problems = int8_q.check_qdq(quantized.proto, quantized.fp32_nodes)
    record = _record(options, calib, quantized, problems, sensitivity)
    if plan is not None:
        record["policy"] = plan.to_dict()
    if problems:
        raise CheckFailed(
            f"the int8 Q/DQ graph is not what TensorRT consumes: {problems[0]}", "please report this model"
        )
    return QuantizedExport(quantized, record, files)


def _sweep(
    options: ExportOptions,
    fp32_path: Path,
    calibration: int8_q.Calibration,
    candidates: int,
    staging: Path,
    steps: Steps,
):
    """--sensitivity / --min-argmax-agreement: quantize module by module (no sweep: None). With
    --sensitivity the table and its plot are written beside the graphs; returns (sweep, files)."""
    if not (options.sensitivity or options.min_argmax_agreement is not None):
        return None, []
    with steps.step("sensitivity", f"Quantizing {candidates} module(s) one at a time (and all but one)"):
        sensitivity = int8_sweep.sweep(
            fp32_path, calibration, options.int8_attention, options.min_argmax_agreement, progress=steps.advance
        )
    files: List[str] = []
    if options.sensitivity:
        write_json_atomic(staging / INT8_SENSITIVITY_NAME, sensitivity.to_dict())
        int8_sweep.write_plot(sensitivity, staging / INT8_SENSITIVITY_PLOT)
        files = [INT8_SENSITIVITY_NAME, INT8_SENSITIVITY_PLOT]
    return sensitivity, files


def _sam_sweep(
    options: ExportOptions,
    fp32_path: Path,
    calibration: int8_q.Calibration,
    candidates: List[int8_q.Unit],
    policy: EncoderPolicy,
    plan: sam_int8.PolicyPlan,
    staging: Path,
    steps: Steps,
):
    """SAM's --sensitivity: each encoder unit judged by the masks of the pair (sam_int8_sensitivity.py);
    the table and its plot beside the graphs. Returns (table, files); (None, []) without --sensitivity."""
    if not options.sensitivity:
        return None, []
    with steps.step("sensitivity", f"Quantizing {len(candidates)} encoder module(s) one at a time (and all but one)"):
        table = sam_sweep.sweep(
            fp32_path,
            policy.decoder,
            calibration,
            candidates,
            plan.families,
            plan.name,
            plan.kept_float,
            options.int8_attention,
            progress=steps.advance,
        )
    write_json_atomic(staging / INT8_SENSITIVITY_NAME, table.to_dict())
    sam_sweep.write_plot(table, staging / INT8_SENSITIVITY_PLOT)
    return table, [INT8_SENSITIVITY_NAME, INT8_SENSITIVITY_PLOT]


def _record(
    options: ExportOptions,
    calib: CalibrationSet,
    quantized: int8_q.QuantizedGraph,
    problems: List[str],
    sensitivity,
) -> Dict:
    """The manifest's precision.int8: the quantizer's record, the pictures, the Q/DQ check."""
    used = calib.used(calibration_batch(options))
    record = {
        **quantized.record(),
        "calibration": {**calib.to_dict(), "used": used, "method": options.calib_method},
        "qdq_check": {"passed": not problems, "problems": problems},
        "residual_adds": int8_q.residual_adds(quantized.proto),
    }
    if isinstance(sensitivity, sam_sweep.SamSensitivityTable):
        record["sensitivity"] = {
            "file": INT8_SENSITIVITY_NAME,
            "all_int8_mask_iou": sensitivity.all_int8_mask_iou,
            "policy_mask_iou": sensitivity.policy_mask_iou,
            "most_costly": [r.module for r in sensitivity.ranking[:3]],
        }
    elif sensitivity is not None:
        record["sensitivity"] = {
            "file": INT8_SENSITIVITY_NAME if options.sensitivity else None,
            "keep_fp32": sensitivity.keep_fp32,
            "achieved_agreement": sensitivity.achieved,
            "all_int8_agreement": sensitivity.all_int8,
            "min_argmax_agreement": options.min_argmax_agreement,
            "met": sensitivity.met,  # False: a verdict (export exits 1), the best mix written all the same
        }
    return record


def int8_target_failure(int8_record: Optional[Dict]) -> Optional[str]:
    """What an export whose --min-argmax-agreement was out of reach failed on (None: met, or no
    target): the target, what the best mix reached and how many modules it kept in fp32."""
    sweep = (int8_record or {}).get("sensitivity") or {}
    if sweep.get("met") is not False:
        return None
    return (
        f"--min-argmax-agreement {sweep['min_argmax_agreement']:g} is out of reach: the best mix found keeps "
        f"{len(sweep['keep_fp32'])} module(s) in fp32 and agrees with the fp32 graph on "
        f"{100 * sweep['achieved_agreement']:.3f}% of the calibration pictures' labels (all int8: "
        f"{100 * sweep['all_int8_agreement']:.3f}%); that mix was written"
    )
