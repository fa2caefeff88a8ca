"""EfficientViT-SAM int8 encoder policies: what each costs in masks, against fp32 and the ground truth.

    .venv/bin/python benchmarks/sam_int8_policies.py --weights W.pt --calib CALIB_DIR --val VAL_DIR \
        [--model efficientvit-sam-l0] [--policies all,ends-float,mbconv-float,neck-float] [--calib-count 64] \
        [--limit N] [--work DIR] [--json FILE]

For the fp32 export and one int8 export per policy (`msla-deploy export --precision int8
--int8-policy P --calib-images CALIB_DIR`, run as a user runs it, in a child process), on every
instance (area >= 1) of the COCO-format VAL_DIR (images/ + annotations/instances_*.json): the
ground-truth box as the prompt (xywh -> xyxy), multimask, the mask with the highest predicted IoU
kept (upstream's box protocol), through msla_deploy.SamPredictor on ONNX Runtime CPU. Per export:
mIoU against the ground truth, the drop against fp32 in points, the mean IoU of its masks with the
fp32 export's masks on the same prompts, and the encoder's median time per picture (set_image).

Without --val, a small synthetic set of drawn shapes (written under --work) is used: figures
against the ground truth then mean nothing for a model not trained on such pictures; the IoU
against fp32 still says what the policy costs that model.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

REPO = Path(__file__).resolve().parents[1]
POLICIES = ("all", "ends-float", "mbconv-float", "neck-float")


def export(model: str, weights: Path, out: Path, precision: str, calib: Path, count: int, policy: str = "") -> None:
    if (out / "manifest.json").exists():
        return
    args = [sys.executable, "-m", "msla_deploy", "export", "-m", model, "--weights", str(weights), "--out", str(out)]
    args += ["-p", precision]
    if precision == "int8":
        args += ["--calib-images", str(calib), "--calib-count", str(count), "--int8-policy", policy]
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True)
    if not (out / "manifest.json").exists():
        raise SystemExit(f"export {out.name} failed:\n{done.stderr[-2000:]}")


def instances(val: Path, limit: int):
    """(picture path, [(box xyxy, mask)]) per image of the COCO set, area >= 1, at most `limit` pictures."""
    from pycocotools.coco import COCO

    annotations = sorted((val / "annotations").glob("instances_*.json"))[0]
    coco = COCO(str(annotations))
    for image_id in sorted(coco.getImgIds())[:limit]:
        info = coco.loadImgs(image_id)[0]
        found = [a for a in coco.loadAnns(coco.getAnnIds(imgIds=image_id)) if a["area"] >= 1]
        if found:
            rows = [(np.asarray([a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]),
                     coco.annToMask(a).astype(bool)) for a in found]  # fmt: skip
            yield val / "images" / info["file_name"], rows


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def predict_all(directory: Path, pictures) -> Dict:
    from msla_deploy import SamPredictor

    predictor = SamPredictor(directory, backend="ort-cpu")
    masks, times = [], []
    for path, rows in pictures:
        start = time.perf_counter()
        predictor.set_image(str(path))
        times.append(time.perf_counter() - start)
        boxes = np.stack([box for box, _ in rows]).astype(np.float32)
        out, scores, _ = predictor.predict(boxes=boxes, multimask=True)
        masks += [m[int(np.argmax(s))] for m, s in zip(out, scores)]
    predictor.close()
    return {"masks": masks, "encoder_ms": 1000 * statistics.median(times)}


def synthetic_val(folder: Path, count: int = 12) -> Path:
    """A COCO-format set of drawn shapes (ellipses and rectangles on a noisy background)."""
    from PIL import Image, ImageDraw
    from pycocotools import mask as rle

    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "annotations").mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    images, annotations = [], []
    for i in range(count):
        height, width = 384, 512
        background = rng.integers(60, 200, (height // 8, width // 8, 3), dtype=np.uint8)
        picture = Image.fromarray(background).resize((width, height))
        draw = ImageDraw.Draw(picture)
        for _ in range(int(rng.integers(2, 5))):
            x0, y0 = rng.integers(0, width - 80), rng.integers(0, height - 80)
            x1, y1 = x0 + rng.integers(40, 200), y0 + rng.integers(40, 160)
            shape = Image.new("L", (width, height))
            (ImageDraw.Draw(shape).ellipse if rng.random() < 0.5 else ImageDraw.Draw(shape).rectangle)(
                [int(x0), int(y0), int(x1), int(y1)], fill=1
            )
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            draw.bitmap((0, 0), shape.point(lambda v: 255 * v), fill=colour)
            mask = np.asfortranarray(np.asarray(shape, dtype=np.uint8))
            encoded = rle.encode(mask)
            encoded["counts"] = encoded["counts"].decode()
            x, y, w, h = (float(v) for v in rle.toBbox(encoded))
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": 1, "iscrowd": 0,
                                "segmentation": encoded, "area": float(mask.sum()), "bbox": [x, y, w, h]})  # fmt: skip
        picture.save(folder / "images" / f"{i:04d}.png")
        images.append({"id": i + 1, "file_name": f"{i:04d}.png", "height": height, "width": width})
    document = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "shape"}]}
    (folder / "annotations" / "instances_val.json").write_text(json.dumps(document))
    return folder


def main(argv: List[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--calib", type=Path, required=True)
    parser.add_argument("--val", type=Path, default=None)
    parser.add_argument("--model", default="efficientvit-sam-l0")
    parser.add_argument("--policies", default=",".join(POLICIES))
    parser.add_argument("--calib-count", type=int, default=64)
    parser.add_argument("--limit", type=int, default=10**9, help="pictures of --val at most")
    parser.add_argument("--work", type=Path, default=REPO / "artifacts" / "sam-int8-policies")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    val = args.val or synthetic_val(args.work / "synthetic-val")
    pictures = list(instances(val, args.limit))
    exports = {"fp32": args.work / "fp32"}
    export(args.model, args.weights, exports["fp32"], "fp32", args.calib, args.calib_count)
    for policy in args.policies.split(","):
        exports[policy] = args.work / f"int8-{policy}"
        export(args.model, args.weights, exports[policy], "int8", args.calib, args.calib_count, policy)
    truth = [mask for _, rows in pictures for _, mask in rows]
    runs = {name: predict_all(directory, pictures) for name, directory in exports.items()}
    reference = runs["fp32"]["masks"]
    rows = []
    for name, run in runs.items():
        miou = 100 * float(np.mean([iou(m, t) for m, t in zip(run["masks"], truth)]))
        rows.append(
            {
                "export": name,
                "miou_vs_gt": miou,
                "vs_fp32_iou": 100 * float(np.mean([iou(m, r) for m, r in zip(run["masks"], reference)])),
                "encoder_ms": run["encoder_ms"],
            }
        )
    base = rows[0]["miou_vs_gt"]
    for row in rows:
        row["drop_points"] = base - row["miou_vs_gt"]
    result = {"model": args.model, "weights": str(args.weights), "val": str(val), "pictures": len(pictures),
              "instances": len(truth), "rows": rows}  # fmt: skip
    print(f"{'export':<14}{'mIoU vs GT':>12}{'drop (points)':>15}{'IoU vs fp32':>13}{'encoder ms':>12}")
    for row in rows:
        print(f"{row['export']:<14}{row['miou_vs_gt']:>12.2f}{row['drop_points']:>15.2f}{row['vs_fp32_iou']:>13.2f}"
              f"{row['encoder_ms']:>12.0f}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
