"""Which int8 default keeps the most labels: calibration method (and one module in fp32) per split.

    .venv/bin/python benchmarks/int8_calibration.py --onnx FP32_EXPORT/model.onnx --pictures DATASET_ROOT \
        [--res HxW] [--calib 16] [--splits 0,16,32] [--keep-fp32 MODULE] [--json FILE]

The fp32 graph (an fp32 export's model.onnx, or an fp16/int8 export's model_fp32.onnx) is
quantized by the export's own int8 code with the default plan (every conv block int8, LiteMLA
cores fp32). For each split, `--calib` consecutive pictures (sorted, starting at each offset of
`--splits`) calibrate, the rest of the set is scored against the fp32 graph's labels: argmax
agreement, prediction-vs-prediction mIoU, the logits' cosine; all in ONNX Runtime on the CPU
(real int8 kernels), as benchmarks/int8_agreement.py scores. `--keep-fp32 MODULE` adds the same
plan with that module in fp32 (e.g. the costliest one of a `--sensitivity` sweep).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import onnx  # noqa: E402

from msla_deploy.choices import CALIB_METHODS  # noqa: E402
from msla_deploy.export import int8  # noqa: E402
from msla_deploy.export.calibration import find_pictures, load_calibration  # noqa: E402
from msla_deploy.export.int8_sensitivity import cosine  # noqa: E402
from msla_deploy.parity.metrics import class_iou, mean_iou  # noqa: E402


def _folder(root: Path, files) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for f in files:
        (root / f.name).symlink_to(f.resolve())
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", type=Path, required=True)
    parser.add_argument("--pictures", type=Path, required=True)
    parser.add_argument("--res", default="128x128")
    parser.add_argument("--calib", type=int, default=16)
    parser.add_argument("--splits", default="0,16,32")
    parser.add_argument("--keep-fp32", action="append", default=[])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    h, w = (int(v) for v in args.res.lower().split("x"))
    files = find_pictures(args.pictures)
    fp32 = onnx.load(str(args.onnx))
    blocks = int8.default_quantized(int8.graph_units(fp32))
    work = Path(tempfile.mkdtemp(prefix="int8-calib-"))
    rows = []
    for start in (int(s) for s in args.splits.split(",")):
        chosen = set(range(start, start + args.calib))
        split = f"{start}-{start + args.calib - 1}"
        calib = load_calibration(
            _folder(work / split / "calib", [f for i, f in enumerate(files) if i in chosen]), h, w, count=args.calib
        )
        rest = [f for i, f in enumerate(files) if i not in chosen]
        held = load_calibration(_folder(work / split / "eval", rest), h, w, count=len(rest)).batches(1)
        reference = int8.run_batches(fp32, held)
        for method in CALIB_METHODS:
            started = time.time()
            calibration = int8.calibrate(args.onnx, calib.batches(1), method, work / split)
            seconds = time.time() - started
            for keep in [None, *args.keep_fp32]:
                graph = int8.quantize(
                    args.onnx, calibration, None if keep is None else [b for b in blocks if b != keep]
                )
                candidate = int8.run_batches(graph.proto, held)
                ref, cand = reference.argmax(1), candidate.argmax(1)
                row = {
                    "split": split,
                    "scored": len(held),
                    "method": method,
                    "fp32": keep,
                    "calibrate_s": round(seconds, 1),
                    "agreement": float((ref == cand).mean()),
                    "miou": mean_iou(class_iou(ref, cand, reference.shape[1])),
                    "cosine": cosine(reference, candidate),
                }
                rows.append(row)
                print(
                    f"{split:7s} {method:10s} {keep or '-':32s} agreement {100 * row['agreement']:7.3f}%  "
                    f"mIoU {100 * row['miou']:7.3f}%  cosine {row['cosine']:.6f}  calibrate {seconds:.1f} s",
                    flush=True,
                )
    if args.json:
        args.json.write_text(
            json.dumps({"onnx": str(args.onnx), "pictures": str(args.pictures), "res": [h, w], "rows": rows}, indent=2)
        )


if __name__ == "__main__":
    main()
