"""EfficientViT-SAM segment-everything: ours (SamPredictor.everything on ONNX Runtime, CPU) against
upstream's EfficientViTSamAutomaticMaskGenerator (PyTorch, CPU) on the same weights and picture.

    .venv/bin/python benchmarks/sam_everything.py --upstream EFFICIENTVIT --segment-anything SEGMENT_ANYTHING \
        [--weights W.pt | --artifact DIR] [--points-per-side 16] [--threads 1] [--runs 2] [--json FILE] \
        [--pred-iou-thresh ...] [--stability-score-thresh ...] [--box-nms-thresh ...]

EFFICIENTVIT: a checkout of https://github.com/mit-han-lab/efficientvit; SEGMENT_ANYTHING: one of
https://github.com/facebookresearch/segment-anything. Neither is a dependency: they are imported
here only. Upstream's generator runs unmodified; the one harness piece is torchvision, which is
not installed: segment-anything's generator imports `torchvision.ops.boxes.batched_nms` (and
`box_area`, used for crops only), and upstream's EfficientViTSam preprocesses with
`torchvision.transforms` (Compose, ToTensor, Normalize, and a PIL resize). Both are given here as
small stand-ins written from torchvision's documented behaviour: batched_nms runs torchvision's CPU
nms algorithm in torch (boxes sorted by torch.sort(descending=True), greedy, IoU > threshold
suppressed, IoU without the +1), the transforms are the tensor arithmetic and PIL call they name.

The weights: `--artifact DIR` with `--weights W.pt` (a checkpoint the export was made from: a
trained stand-in, see benchmarks/README.md), or by default the seeded weights of
tests/zoo/sam_golden.py, exported here with `msla-deploy export` as a user runs it. The seeded
weights are not trained: their predicted IoUs exceed 1 and their masks are a few large blobs, so
the default thresholds keep almost nothing; the run says which thresholds it used.

The picture: benchmarks/scenes.py's street scene (seed 0, 384 x 512) unless --picture is given.

What is reported: the masks of both, matched one to one by mask IoU >= 0.9 (greedy, best pairs
first): matched / ours / upstream, and the largest differences of predicted IoU and stability
score over the matched pairs; the time of each pipeline on this CPU, interleaved (ours, upstream,
upstream, ours, ...), with the same grid and the same number of threads (torch.set_num_threads
and ONNX Runtime's intra-op threads), the encoder included in both; the ratio of medians.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Dict, List

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MODELS = ("efficientvit-sam-l0", "efficientvit-sam-standin")
MATCH_IOU = 0.9


# --- the harness piece: torchvision stand-ins --------------------------------------------------
def _torchvision_stand_in() -> None:
    """torchvision.ops.boxes (batched_nms, box_area) and torchvision.transforms (Compose,
    ToTensor, Normalize, functional.resize / to_pil_image) as upstream calls them."""
    import torch
    from PIL import Image

    def nms(boxes, scores, iou_threshold: float):
        # torchvision's CPU kernel: order by a descending (not stable) sort, greedy suppression
        x0, y0, x1, y1 = boxes.unbind(1)
        areas = (x1 - x0) * (y1 - y0)
        order = scores.sort(0, descending=True)[1]
        suppressed = torch.zeros(len(boxes), dtype=torch.bool)
        keep = []
        for position in range(len(order)):
            i = int(order[position])
            if suppressed[i]:
                continue
            keep.append(i)
            rest = order[position + 1 :]
            w = (torch.minimum(x1[i], x1[rest]) - torch.maximum(x0[i], x0[rest])).clamp(min=0)
            h = (torch.minimum(y1[i], y1[rest]) - torch.maximum(y0[i], y0[rest])).clamp(min=0)
            inter = w * h
            iou = inter / (areas[i] + areas[rest] - inter)
            suppressed[rest[iou > iou_threshold]] = True
        return torch.as_tensor(keep, dtype=torch.int64)

    def batched_nms(boxes, scores, idxs, iou_threshold: float):
        # torchvision's coordinate trick: boxes of different classes never overlap
        if boxes.numel() == 0:
            return torch.empty((0,), dtype=torch.int64)
        offsets = idxs.to(boxes) * (boxes.max() + 1)
        return nms(boxes + offsets[:, None], scores, iou_threshold)

    def box_area(boxes):
        return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])

    class Compose:
        def __init__(self, steps):
            self.steps = steps

        def __call__(self, value):
            for step in self.steps:
                value = step(value)
            return value

    class ToTensor:
        def __call__(self, picture):
            array = np.asarray(picture)
            return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).float().div(255)

    class Normalize:
        def __init__(self, mean, std):
            self.mean = torch.tensor(mean).view(-1, 1, 1)
            self.std = torch.tensor(std).view(-1, 1, 1)

        def __call__(self, tensor):
            return (tensor - self.mean) / self.std

    def to_pil_image(array):
        return Image.fromarray(np.asarray(array))

    def resize(picture, size):  # a PIL picture to (h, w), bilinear: torchvision's PIL path
        return picture.resize((int(size[1]), int(size[0])), Image.BILINEAR)

    modules = {
        "torchvision": types.ModuleType("torchvision"),
        "torchvision.ops": types.ModuleType("torchvision.ops"),
        "torchvision.ops.boxes": types.ModuleType("torchvision.ops.boxes"),
        "torchvision.transforms": types.ModuleType("torchvision.transforms"),
        "torchvision.transforms.functional": types.ModuleType("torchvision.transforms.functional"),
    }
    modules["torchvision.ops.boxes"].__dict__.update(batched_nms=batched_nms, box_area=box_area, nms=nms)
    modules["torchvision.ops"].boxes = modules["torchvision.ops.boxes"]
    modules["torchvision.transforms.functional"].__dict__.update(resize=resize, to_pil_image=to_pil_image)
    transforms = modules["torchvision.transforms"]
    transforms.__dict__.update(Compose=Compose, ToTensor=ToTensor, Normalize=Normalize)
    transforms.functional = modules["torchvision.transforms.functional"]
    modules["torchvision"].ops = modules["torchvision.ops"]
    modules["torchvision"].transforms = transforms
    sys.modules.update(modules)


def load_upstream(efficientvit: Path, segment_anything: Path):
    """upstream's sam_model_zoo and EfficientViTSamAutomaticMaskGenerator over the real
    segment_anything package (its generator, predictor and amg utilities)."""
    sys.path.insert(0, str(REPO))
    import torch._dynamo  # noqa: F401 (before any triton stand-in exists: torch probes for triton)

    from tests.data.upstream.make_cls_data import load_upstream_zoo

    _torchvision_stand_in()
    sys.path.insert(0, str(segment_anything))
    importlib.import_module("segment_anything")
    load_upstream_zoo(efficientvit)
    sam = importlib.import_module("efficientvit.models.efficientvit.sam")
    vars(sys.modules["efficientvit.models.efficientvit"]).update({name: getattr(sam, name) for name in sam.__all__})
    zoo = importlib.import_module("efficientvit.sam_model_zoo")
    for name in ("triton", "triton.language"):
        sys.modules.pop(name, None)
    return zoo, sam.EfficientViTSamAutomaticMaskGenerator


def upstream_model(zoo, name: str):
    """Upstream's EfficientViTSam for `name`: its model zoo for l0; for the stand-in (no upstream
    variant), upstream's own classes built with the stand-in's dimensions (zoo/sam/architecture.py:
    L0's backbone and neck at the stand-in's widths and depths, SAM's decoder with its one-block
    transformer), so that the same state dict loads into both."""
    if name != "efficientvit-sam-standin":
        return zoo.create_efficientvit_sam_model(name, pretrained=False)
    from efficientvit.models.efficientvit import backbone as upstream_backbone
    from efficientvit.models.efficientvit import sam as upstream_sam
    from segment_anything.modeling import MaskDecoder, TwoWayTransformer

    from msla_deploy.zoo.sam import architecture

    dims, transformer = architecture.ENCODERS[name], architecture.transformer_dims(name)
    backbone = upstream_backbone.EfficientViTLargeBackbone(
        width_list=list(dims.backbone.widths),
        depth_list=list(dims.backbone.depths),
        qkv_dim=dims.backbone.attention_dim,
    )
    neck = upstream_sam.SamNeck(
        fid_list=[key for key, _ in dims.neck.features],
        in_channel_list=[channels for _, channels in dims.neck.features],
        head_width=dims.neck.width,
        head_depth=dims.neck.depth,
        expand_ratio=dims.neck.expand_ratio,
        middle_op="fmb",
    )
    model = upstream_sam.build_efficientvit_sam(upstream_sam.EfficientViTSamImageEncoder(backbone, neck), 512)
    embed = architecture.EMBED_DIM
    model.mask_decoder = MaskDecoder(
        num_multimask_outputs=architecture.NUM_MULTIMASK_OUTPUTS,
        transformer=TwoWayTransformer(
            depth=transformer.depth,
            embedding_dim=embed,
            mlp_dim=transformer.mlp_dim,
            num_heads=transformer.heads,
            attention_downsample_rate=transformer.attention_downsample,
        ),
        transformer_dim=embed,
        iou_head_depth=architecture.IOU_HEAD_DEPTH,
        iou_head_hidden_dim=architecture.IOU_HEAD_HIDDEN_DIM,
    )
    return model


# --- the steps ---------------------------------------------------------------------------------
def seeded_weights(path: Path, name: str) -> None:
    sys.path.insert(0, str(REPO))
    import torch

    from msla_deploy.zoo.sam import build_sam
    from tests.zoo import sam_golden

    torch.save(sam_golden.fill_model(build_sam(name)).state_dict(), path)


def export(weights: Path, out: Path, name: str) -> float:
    command = [sys.executable, "-m", "msla_deploy", "export", "--model", name, "--weights", str(weights)]
    command += ["--exporter", "torchscript", "--out", str(out), "--json"]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if done.returncode not in (0, 1):
        raise SystemExit(f"msla-deploy export failed ({done.returncode}): {done.stderr.strip()[-400:]}")
    return time.perf_counter() - started


def picture(args) -> np.ndarray:
    if args.picture:
        from PIL import Image

        return np.asarray(Image.open(args.picture).convert("RGB"))
    sys.path.insert(0, str(REPO / "benchmarks"))
    from scenes import make_scene

    return make_scene(0, 0, 384, 512).image


def decode(rle: Dict) -> np.ndarray:
    from pycocotools import mask as coco_mask

    counts = rle["counts"]
    return coco_mask.decode({"size": rle["size"], "counts": counts.encode() if isinstance(counts, str) else counts})


def match(ours: List[Dict], theirs: List[Dict]) -> Dict:
    """One-to-one pairs of mask IoU >= MATCH_IOU, best first (greedy)."""
    a = np.stack([decode(r["segmentation"]).ravel() for r in ours]).astype(np.float32) if ours else None
    b = np.stack([decode(r["segmentation"]).ravel() for r in theirs]).astype(np.float32) if theirs else None
    pairs = []
    if a is not None and b is not None:
        inter = a @ b.T
        union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = np.where(union > 0, inter / union, 1.0)
        used_a, used_b = set(), set()
        for flat in np.argsort(-iou, axis=None, kind="stable"):
            i, j = np.unravel_index(flat, iou.shape)
            if iou[i, j] < MATCH_IOU:
                break
            if i in used_a or j in used_b:
                continue
            used_a.add(i)
            used_b.add(j)
            pairs.append((int(i), int(j), float(iou[i, j])))
    diff_iou = [abs(ours[i]["predicted_iou"] - theirs[j]["predicted_iou"]) for i, j, _ in pairs]
    diff_stab = [abs(ours[i]["stability_score"] - theirs[j]["stability_score"]) for i, j, _ in pairs]
    return {
        "matched": len(pairs),
        "ours": len(ours),
        "upstream": len(theirs),
        "count_difference": abs(len(ours) - len(theirs)) / max(1, len(theirs)),
        "min_pair_iou": min((p[2] for p in pairs), default=None),
        "mean_pair_iou": statistics.mean(p[2] for p in pairs) if pairs else None,
        "max_predicted_iou_difference": max(diff_iou, default=None),
        "max_stability_difference": max(diff_stab, default=None),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", type=Path, required=True, help="efficientvit checkout")
    parser.add_argument("--segment-anything", type=Path, required=True, help="segment-anything checkout")
    parser.add_argument("--model", choices=MODELS, default=MODELS[0])
    parser.add_argument("--weights", type=Path, help="a checkpoint of --model (default: seeded)")
    parser.add_argument("--artifact", type=Path, help="our export of --weights (default: exported here)")
    parser.add_argument("--picture", type=Path)
    parser.add_argument("--points-per-side", type=int, default=16)
    parser.add_argument("--points-per-batch", type=int, default=64)
    parser.add_argument("--pred-iou-thresh", type=float, default=0.88)
    parser.add_argument("--stability-score-thresh", type=float, default=0.95)
    parser.add_argument("--box-nms-thresh", type=float, default=0.7)
    parser.add_argument("--min-mask-region-area", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=2, help="timed runs of each (interleaved)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    sys.path.insert(0, str(REPO))
    import torch

    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    zoo, Generator = load_upstream(args.upstream.resolve(), args.segment_anything.resolve())
    from msla_deploy.runtime.sam_everything import EverythingParams, generate
    from msla_deploy.runtime.sam_predictor import SamPredictor

    work = Path(tempfile.mkdtemp(prefix="sam-everything-"))
    weights = args.weights
    if weights is None:
        weights = work / "seeded.pt"
        seeded_weights(weights, args.model)
    artifact = args.artifact
    export_s = None
    if artifact is None:
        artifact = work / "export"
        export_s = export(weights, artifact, args.model)

    model = upstream_model(zoo, args.model)
    state = torch.load(weights, map_location="cpu")
    model.load_state_dict(state.get("state_dict", state) if isinstance(state, dict) else state)
    model.eval()
    params = dict(
        points_per_side=args.points_per_side,
        points_per_batch=args.points_per_batch,
        pred_iou_thresh=args.pred_iou_thresh,
        stability_score_thresh=args.stability_score_thresh,
        box_nms_thresh=args.box_nms_thresh,
        min_mask_region_area=args.min_mask_region_area,
    )
    upstream = Generator(model, output_mode="coco_rle", **params)
    if args.min_mask_region_area > 0:
        raise SystemExit("--min-mask-region-area > 0: upstream needs OpenCV (not installed here)")
    ours = SamPredictor(artifact, "ort-cpu", threads=args.threads)
    ours_params = EverythingParams(**params)
    image = picture(args)

    times: Dict[str, List[float]] = {"ours": [], "upstream": []}
    results = {}
    steps = {}

    def run_ours():
        result = generate(ours, image, ours_params)
        steps["ours"] = result.timings_s
        results["ours"] = result.records
        results["ours_counts"] = result.counts

    def run_upstream():
        results["upstream"] = upstream.generate(image)

    order = []
    for r in range(args.runs):
        order += [("ours", run_ours), ("upstream", run_upstream)][:: 1 if r % 2 == 0 else -1]
    for name, call in order:
        started = time.perf_counter()
        call()
        times[name].append(time.perf_counter() - started)
        print(f"{name}: {times[name][-1]:.2f} s", flush=True)

    matched = match(results["ours"], results["upstream"])
    ratio = statistics.median(times["upstream"]) / statistics.median(times["ours"])
    report = {
        "model": args.model,
        "weights": str(args.weights) if args.weights else "tests/zoo/sam_golden.py seeded weights",
        "picture": str(args.picture) if args.picture else "benchmarks/scenes.py make_scene(0, 0, 384, 512)",
        "size": list(image.shape[:2]),
        "params": params,
        "threads": args.threads,
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "export_s": export_s,
        "match": matched,
        "ours_counts": results["ours_counts"],
        "ours_steps_s": steps["ours"],
        "ours_s": times["ours"],
        "upstream_s": times["upstream"],
        "speedup_median": ratio,
    }
    print(json.dumps(report, indent=1))
    print(
        f"masks matched {matched['matched']} / ours {matched['ours']} / upstream {matched['upstream']} "
        f"(count difference {100 * matched['count_difference']:.1f}%); time ours {statistics.median(times['ours']):.2f}"
        f" s, upstream {statistics.median(times['upstream']):.2f} s: {ratio:.2f}x"
    )
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
