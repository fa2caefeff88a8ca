"""int8 vs fp16 vs fp32: label agreement with the fp32 graph, LiteMLA cores in fp32 or in int8.

    .venv/bin/python benchmarks/int8_agreement.py [--model NAME] [--res HxW] [--calib N] [--eval N]
        [--pictures DIR] [--weights CHECKPOINT] [--calib-method max|entropy|percentile] [--sensitivity] [--json FILE]

For seeded and for stress weights (msla_deploy/nn/stress.py), one `msla-deploy export --precision
fp16` is run (it writes the fp16 graph and the fp32 graph beside it); the fp32 graph is then
quantized twice by the export's own int8 code, calibrated on the same pictures: the default plan
(every conv block int8, LiteMLA cores fp32) and the plan a generic quantizer produces (cores in
int8 too). Every graph runs in ONNX Runtime on the CPU (real int8 kernels) on held-out pictures,
and is scored against the fp32 graph's labels: argmax agreement and prediction-vs-prediction mIoU.

Pictures: `--pictures DIR` (a folder or a dataset root, as `--calib-images` takes), split into
calibration and evaluation sets; without it, procedural street-like scenes (tests/export/test_int8.py's
generator), which say nothing about a trained model's accuracy, only about the graph's numerics.
With `--sensitivity`, the per-module sweep on stress weights with the cores as candidates.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from msla_deploy.artifact.names import FP32_ONNX_NAME, ONNX_NAME  # noqa: E402
from msla_deploy.artifact.options import DEFAULT_CALIB_METHOD  # noqa: E402
from msla_deploy.export import int8, int8_sensitivity  # noqa: E402
from msla_deploy.export.calibration import find_pictures, load_calibration  # noqa: E402
from msla_deploy.parity.metrics import class_iou, mean_iou  # noqa: E402


def procedural(folder: Path, count: int) -> Path:
    from tests.test_int8 import write_pictures

    return write_pictures(folder, count)


def score(reference: np.ndarray, candidate: np.ndarray) -> dict:
    ref, cand = reference.argmax(1), candidate.argmax(1)
    return {
        "agreement": float((ref == cand).mean()),
        "miou": mean_iou(class_iou(ref, cand, reference.shape[1])),
        "nan": int(np.isnan(candidate).sum()),
        "cosine": int8_sensitivity.cosine(reference, candidate),
    }


def weights_label(args, stress: bool) -> str:
    return ("trained" if args.weights else "seeded") + ("+stress" if stress else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientvit-seg-b1-cityscapes")
    parser.add_argument("--res", default="256x512")
    parser.add_argument("--calib", type=int, default=16)
    parser.add_argument("--eval", type=int, default=8)
    parser.add_argument("--pictures", type=Path)
    parser.add_argument("--weights", type=Path, help="a checkpoint (e.g. the trained stand-in); default: seeded random")
    parser.add_argument(
        "--calib-method", default=DEFAULT_CALIB_METHOD, help="as export --calib-method (default: the export's)"
    )
    parser.add_argument("--sensitivity", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    h, w = (int(v) for v in args.res.lower().split("x"))
    work = Path(tempfile.mkdtemp(prefix="int8-bench-"))
    source = args.pictures or procedural(work / "pictures", args.calib + args.eval)
    files = find_pictures(source)
    calib_dir, eval_dir = work / "calib", work / "eval"
    for i, f in enumerate(files[: args.calib + args.eval]):
        target = calib_dir if i % (args.calib + args.eval) < args.calib else eval_dir
        target.mkdir(parents=True, exist_ok=True)
        (target / f.name).symlink_to(f.resolve())
    calib = load_calibration(calib_dir, h, w, count=args.calib)
    held_out = load_calibration(eval_dir, h, w, count=args.eval).batches(1)
    rows = []
    results = {
        "model": args.model,
        "weights": str(args.weights) if args.weights else "seeded random",
        "res": [h, w],
        "pictures": "given" if args.pictures else "procedural",
        "calibration": len(calib.files),
        "calib_method": args.calib_method,
        "evaluation": len(held_out),
        "rows": rows,
    }
    for stress in (False, True):
        out = work / ("stress" if stress else "seeded")
        cmd = [
            sys.executable,
            "-m",
            "msla_deploy",
            "export",
            "-m",
            args.model,
            "--res",
            args.res,
            "--precision",
            "fp16",
            "--out",
            str(out),
            "--json",
        ]
        cmd += (["--stress-weights"] if stress else []) + (["--weights", str(args.weights)] if args.weights else [])
        subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        fp32_path = out / FP32_ONNX_NAME
        import onnx

        fp32 = onnx.load(str(fp32_path))
        reference = int8.run_batches(fp32, held_out)
        fp16 = int8.run_batches(onnx.load(str(out / ONNX_NAME)), held_out)
        (work / f"calib-{weights_label(args, stress)}").mkdir(exist_ok=True)  # one cache per calibration
        calibration = int8.calibrate(
            fp32_path, calib.batches(1), args.calib_method, work / f"calib-{weights_label(args, stress)}"
        )
        units = int8.graph_units(fp32)
        plans = {
            "int8, LiteMLA cores fp32 (default)": None,
            "int8, LiteMLA cores int8 too": [u.module for u in units],
        }
        weights = weights_label(args, stress)
        rows.append({"weights": weights, "graph": "fp16 (fp32 island)", **score(reference, fp16)})
        for label, plan in plans.items():
            graph = int8.quantize(fp32_path, calibration, plan)
            rows.append(
                {"weights": weights, "graph": label, **score(reference, int8.run_batches(graph.proto, held_out))}
            )
        if stress and args.sensitivity:
            result = int8_sensitivity.sweep(fp32_path, calibration, include_attention=True, min_agreement=0.999)
            results["sensitivity"] = result.to_dict()
            int8_sensitivity.write_plot(result, work / "sensitivity.png")
            results["sensitivity_plot"] = str(work / "sensitivity.png")
    print(f"calibration: {args.calib_method}, {len(calib.files)} pictures; scored on {len(held_out)}")
    for r in rows:
        print(
            f"{r['weights']:14s} {r['graph']:38s} agreement {100 * r['agreement']:8.3f}%  mIoU "
            f"{100 * r['miou']:8.3f}%  "
            f"cosine {r['cosine']:.6f}  NaN {r['nan']}"
        )
    if "sensitivity" in results:
        for i, r in enumerate(results["sensitivity"]["ranking"][:8]):
            print(
                f"{i + 1:2d} {r['module']:55s} {r['kind']:9s} changed {100 * r['cost']:7.3f}%  "
                f"1-cos {1 - r['alone_cosine']:.2e}  all-but {100 * r['all_but']:.3f}%"
            )
        print("keep fp32 for 99.9%:", results["sensitivity"]["keep_fp32"], results["sensitivity"]["achieved_agreement"])
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
