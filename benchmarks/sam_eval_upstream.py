"""SAM evaluate against upstream's own metric code, on the same predictions.

    python benchmarks/sam_eval_upstream.py --upstream /tmp/evit --data DIR --report REPORT.json --predictions PRED_DIR

Given an `msla-deploy evaluate` report of a SAM artifact and its `--save-predictions` folder, this
recomputes every figure with upstream's code (efficientvit's applications/efficientvit_sam):
the ground-truth masks with eval_efficientvit_sam_model.py's ann_to_mask (which refuses
compressed RLE: those are decoded with pycocotools.mask.decode, said in the output), the IoU of
each saved mask with sam_eval_utils.iou, the means with sam_eval_utils.get_iou_metric (by
filter_results_by_area per bin where a bin is empty, since get_iou_metric divides by zero there),
the prompts with bbox_xywh_to_xyxy and with the first click of sam_eval_utils.Clicker (on
cv2.distanceTransform). Every figure must equal the report's within 1e-6; exit 1 otherwise.

Upstream's modules are imported as they are, with inert stand-ins for what this does not call
(lvis, efficientvit's model zoo and predictor, tqdm where missing). Needs cv2 (pip install opencv-python-headless) and
torch; not a dependency of msla-deploy, not run in CI.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import types
from pathlib import Path

import numpy as np
from PIL import Image

TOLERANCE = 1e-6


def _stand_in(name: str, **attributes) -> None:
    module = types.ModuleType(name)
    module.__path__ = []  # a package, so that its submodules' stand-ins import
    vars(module).update(attributes)
    sys.modules[name] = module


def load_upstream(checkout: Path):
    """(sam_eval_utils, eval_efficientvit_sam_model) from the checkout, as upstream's code."""
    folder = checkout / "applications" / "efficientvit_sam"
    if not (folder / "sam_eval_utils.py").is_file():
        raise SystemExit(f"{folder}/sam_eval_utils.py is missing: pass an efficientvit checkout as --upstream")
    inert = type("Inert", (), {})
    _stand_in("lvis", LVIS=inert, LVISEval=inert, LVISResults=inert)
    for package in ("efficientvit", "efficientvit.models", "efficientvit.models.efficientvit"):
        _stand_in(package)
    _stand_in("efficientvit.models.efficientvit.sam", EfficientViTSamPredictor=inert)
    _stand_in("efficientvit.sam_model_zoo", create_efficientvit_sam_model=inert)
    try:
        import tqdm  # noqa: F401
    except ImportError:
        _stand_in("tqdm", tqdm=inert)
    sys.path.insert(0, str(folder))
    return importlib.import_module("sam_eval_utils"), importlib.import_module("eval_efficientvit_sam_model")


def annotations_of(data: Path):
    found = sorted((data / "annotations").glob("instances_*.json")) if data.is_dir() else [data]
    if len(found) != 1:
        raise SystemExit(f"--data {data}: expected one annotations/instances_*.json, found {len(found)}")
    root = found[0].parent.parent
    split = found[0].stem[len("instances_") :]
    images = root / "images" / split if (root / "images" / split).is_dir() else root / "images"
    return json.loads(found[0].read_text()), images


def recompute(utils, upstream, document, images: Path, predictions: dict, prompt: str):
    """(upstream's metric dict, per-instance IoU differences, prompt mismatches, compressed RLEs)."""
    from pycocotools import mask as mask_util

    anns = {a["id"]: a for a in document["annotations"]}
    files = {i["id"]: images / i["file_name"] for i in document["images"]}
    shapes = {}
    results, differences, mismatches, compressed = [], [], [], 0
    for p in predictions["instances"]:
        ann = anns[p["annotation_id"]]
        if ann["image_id"] not in shapes:  # the picture's own size, as upstream decodes it
            shapes[ann["image_id"]] = np.array(Image.open(files[ann["image_id"]]).convert("RGB")).shape[:2]
        h, w = shapes[ann["image_id"]]
        try:
            gt = upstream.ann_to_mask(ann, h, w)
        except NotImplementedError:  # compressed RLE: upstream's ann_to_mask does not read it
            compressed += 1
            gt = mask_util.decode(dict(ann["segmentation"], counts=ann["segmentation"]["counts"].encode())) > 0
        seg = p["segmentation"]
        predicted = mask_util.decode(dict(seg, counts=seg["counts"].encode())) > 0
        iou = utils.iou(predicted, gt)
        differences.append(abs(iou - p["iou"]))
        results.append({"area": ann["area"], "iou": iou})
        if prompt == "box":
            expected = [float(v) for v in upstream.bbox_xywh_to_xyxy(ann["bbox"])]
        else:
            clicker = utils.Clicker(gt_mask=gt)
            clicker.make_next_click(np.zeros_like(gt))
            click = clicker.clicks_list[-1]
            expected = [float(v) for v in click.coords[::-1]] + [float(int(click.is_positive))]
        if expected != p["prompt"]:
            mismatches.append((p["annotation_id"], expected, p["prompt"]))
    kept = sum(1 for a in document["annotations"] if a["area"] >= 1 and a["image_id"] in shapes)
    return _metric(utils, results), differences, mismatches, compressed, kept


def _metric(utils, results):
    try:
        return utils.get_iou_metric(results)
    except ZeroDivisionError:  # an empty bin: upstream's own filter and mean, bin by bin
        bins = {"all": results, "large": utils.filter_results_by_area(results, 96**2, None)}
        bins["medium"] = utils.filter_results_by_area(results, 32**2, 96**2)
        bins["small"] = utils.filter_results_by_area(results, None, 32**2)
        return {k: (sum(r["iou"] for r in v) / len(v) if v else None) for k, v in bins.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", type=Path, required=True, help="an efficientvit checkout")
    parser.add_argument("--data", type=Path, required=True, help="the COCO root (or its instances json) evaluated")
    parser.add_argument("--report", type=Path, required=True, help="evaluate's report.json")
    parser.add_argument("--predictions", type=Path, required=True, help="evaluate's --save-predictions folder")
    args = parser.parse_args()
    utils, upstream = load_upstream(args.upstream)
    document, images = annotations_of(args.data)
    report = json.loads(args.report.read_text())
    prompt = report["protocol"]["prompt"]
    worst, failed = 0.0, False
    for backend in report["backends"]:
        name = backend["backend"]
        path = args.predictions / f"{name}.json"
        predictions = json.loads(path.read_text())
        metric, differences, mismatches, compressed, kept = recompute(
            utils, upstream, document, images, predictions, prompt
        )
        count = len(predictions["instances"])
        print(f"{name}: {count} instance(s) ({kept} with area >= 1 in the pictures evaluated); prompt {prompt}; "
              f"{compressed} compressed RLE(s) decoded by pycocotools")  # fmt: skip
        print(f"  per-instance IoU: max |ours - upstream's iou()| = {max(differences):.3g}")
        failed |= count != kept or max(differences) > TOLERANCE or bool(mismatches)
        for ann, expected, ours in mismatches[:5]:
            print(f"  annotation {ann}: upstream's prompt {expected}, ours {ours}")
        print(f"  prompts equal to upstream's: {count - len(mismatches)}/{count}")
        for scope in ("all", "small", "medium", "large"):
            ours, theirs = backend["miou"][scope], metric[scope]
            if ours is None or theirs is None:
                same = ours is None and theirs is None
                print(f"  mIoU {scope:6}: ours {ours}, upstream's {theirs} (empty bin)")
            else:
                worst = max(worst, abs(ours - theirs))
                same = abs(ours - theirs) <= TOLERANCE
                print(f"  mIoU {scope:6}: ours {ours:.9f}, upstream's {theirs:.9f}, |diff| {abs(ours - theirs):.3g}")
            failed |= not same
    print(f"{'FAIL' if failed else 'PASS'}: largest mIoU difference {worst:.3g} (tolerance {TOLERANCE:g})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
