"""Train a stand-in for EfficientViT-SAM on the CPU: `efficientvit-sam-standin` on procedural shape scenes.

Random weights give masks that say nothing about what fp16, int8 or segment-everything do to a
SAM, and the official checkpoints cannot be downloaded here. This script trains the zoo's
`efficientvit-sam-standin` (zoo/variants.py: L0's encoder layout at a quarter of its widths, SAM's
own prompt encoder and mask decoder; no upstream checkpoint exists for it) on the scenes of
msla_deploy/evaluate/coco_scenes.py (fresh scenes every step: nothing is seen twice). SAM's own
decoder is never trained from scratch upstream (EfficientViT-SAM starts from SAM's), and trained
from scratch with SAM's recipe it learns one prompt-blind mask per picture. So the recipe differs
from SAM's where that was measured to matter:

* the warm-up (--geometry-minutes): the prompt encoder and decoder alone learn to fill boxes
  (the instances' boxes and as many random ones), the encoder frozen, before anything else;
* the token<->image attentions start with equal query and key projections, so that the
  positional encodings of a prompt and of the image match from the first step;
* mask loss: balanced cross-entropy (the mask's pixels and the rest weigh half each) + dice on
  the low-res logits (the decoder's 256 x 256, against the mask resized into that frame), where
  SAM's 20 x focal + dice keeps a model from scratch at empty masks;
* prompts: the ground-truth box of an instance (half of them jittered); with --box-share < 1
  also single points (the farthest-from-border one, as upstream's evaluation clicks, or a random
  one). A box trains all four masks; a point only the best of the multimask outputs 1-3 (it may
  mean several masks: SAM's rule). IoU head: MSE against each mask's actual IoU (evaluate keeps
  the mask with the highest predicted IoU, segment-everything filters on it);
* AdamW, learning rate warmed up, then cosine-decayed over the *wall time* (--minutes: the machine
  is shared, so the step count is whatever fits); at each checkpoint the BatchNorm running
  statistics are recomputed from fresh scenes (cumulative average, no gradients) on a copy.

It writes into --out (outside the repository):

    sam_standin.pt      a plain state dict: `msla-deploy export --model efficientvit-sam-standin --weights it`
    val/                the held-out COCO set (write_coco_scenes, --val-seed, --val-count scenes)
    calib/              --calib-count pictures for int8 calibration (another seed, never trained on)
    train_log.json      the run: steps, losses, mIoU at each checkpoint, the final figures
    README.txt          what the files are, the export command and the measured mIoU

and scores the model on val/ with upstream's protocol (box: the ground-truth box xywh -> xyxy;
point: the interior point farthest from the mask's border; multimask, the mask with the highest
predicted IoU, upsampled to the picture; IoU*100 averaged over instances, and by COCO area).

    python benchmarks/train_sam.py --out /work/standin --geometry-minutes 8 --minutes 36 --prompts 10 --lr 1e-3
    python benchmarks/train_sam.py --out /tmp/smoke --steps 2 --val-count 2 --calib-count 2   # smoke run
    python benchmarks/train_sam.py --out /work/standin --evaluate-only                          # re-score

Not CI: a script people run by hand.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from msla_deploy import zoo  # noqa: E402
from msla_deploy.artifact.files import write_bytes_atomic, write_json_atomic  # noqa: E402
from msla_deploy.evaluate.coco_scenes import make_coco_scene, write_coco_scenes  # noqa: E402
from msla_deploy.runtime.sam_transforms import (  # noqa: E402
    LOW_RES_SIDE,
    boxes_to_prompt_frame,
    encoder_input,
    postprocess_masks,
    preprocess_shape,
    to_prompt_frame,
)
from msla_deploy.zoo.variants import SAM_STANDIN  # noqa: E402

MODEL = SAM_STANDIN
CHECKPOINT = "sam_standin.pt"
TRAIN_SEED, VAL_SEED, CALIB_SEED = 0, 1000, 2000
#: BN recomputation reads training-seed scenes from this index on (never trained on)
BN_INDEX_OFFSET = 10**9
DICE_WEIGHT, IOU_WEIGHT = 1.0, 1.0


@dataclass
class Recipe:
    """What the command line sets for the whole run."""

    #: the share of prompts that are boxes (the rest are single points)
    box_share: float = 1.0


RECIPE = Recipe()
AREA_RANGES = {"small": (0, 32**2), "medium": (32**2, 96**2), "large": (96**2, float("inf"))}


# --- prompts and targets --------------------------------------------------------------------------


def farthest_point(mask: np.ndarray) -> Tuple[float, float]:
    """(x, y) of the interior point farthest from the mask's border (upstream's first click: the
    distance transform of the zero-padded mask, the first maximum in row-major order)."""
    from scipy.ndimage import distance_transform_edt

    distance = distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return float(x), float(y)


def low_res_target(mask: np.ndarray) -> np.ndarray:
    """A picture-size mask in the decoder's 256 x 256 frame (the padded square), as 0..1 coverage."""
    from PIL import Image

    h, w = preprocess_shape(*mask.shape, LOW_RES_SIDE)
    small = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((w, h), Image.BILINEAR), np.float32)
    out = np.zeros((LOW_RES_SIDE, LOW_RES_SIDE), np.float32)
    out[:h, :w] = small / 255.0
    return out


def jitter(box: np.ndarray, rng: np.random.Generator, size: Tuple[int, int]) -> np.ndarray:
    """SAM's box noise, milder: each side moved by N(0, 5% of the box's extent), at most 10 pixels."""
    w, h = box[2] - box[0], box[3] - box[1]
    noise = np.clip(rng.normal(0, 0.05, 4) * np.array([w, h, w, h]), -10, 10)
    out = box + noise
    out[[0, 2]] = np.clip(out[[0, 2]], 0, size[1])
    out[[1, 3]] = np.clip(out[[1, 3]], 0, size[0])
    return out


# --- the model's steps ----------------------------------------------------------------------------


#: --curriculum: the pool of scenes grows 4x every N steps (1, 4, 16, ...) until this size, then fresh scenes
CURRICULUM_END = 1024
#: cells of the embedding grid the upscaling runs on in training (of 64; None: all of it)
WINDOW = 48


def windows(targets: np.ndarray, rng: np.random.Generator, window: int) -> List[Tuple[int, int]]:
    """Per target, the top-left cell of a `window`-cell square holding its mask, placed at random."""
    scale = LOW_RES_SIDE // 64  # low-res pixels per embedding cell
    out = []
    for target in targets:
        ys, xs = np.nonzero(target > 0)
        lo = np.array([ys.min(), xs.min()]) // scale if len(ys) else np.zeros(2, int)
        hi = np.array([ys.max(), xs.max()]) // scale if len(ys) else np.zeros(2, int)
        first = np.clip(hi - window + 1, 0, 64 - window)
        last = np.clip(lo, 0, 64 - window)
        out.append(tuple(int(rng.integers(min(a, b), max(a, b) + 1)) for a, b in zip(first, last)))
    return out


def decode_all(model: nn.Module, embeddings: torch.Tensor, points=None, boxes=None, crops=None, window: int = 64):
    """One image's embeddings [1, C, 64, 64] and B prompts -> all four masks [B, 4, S, S] and IoUs [B, 4].

    With `crops` (a top-left cell per prompt), the upscaling runs on a `window`-cell square only
    (S = 4 * window): it is per cell (2x2 transposed convs, a per-pixel LayerNorm, GELU), so the
    crop of the full output is exact and a quarter of the cost; the transformer sees the whole grid.
    """
    sparse, dense = model.prompt_encoder(points=points, boxes=boxes, masks=None)
    decoder = model.mask_decoder
    if crops is None:
        return decoder.predict_masks(embeddings, model.prompt_encoder.get_dense_pe(), sparse, dense)
    batch = sparse.shape[0]
    tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
    tokens = torch.cat([tokens.unsqueeze(0).expand(batch, -1, -1), sparse], dim=1)
    hs, src = decoder.transformer(embeddings + dense, model.prompt_encoder.get_dense_pe(), tokens)
    src = src.transpose(1, 2).reshape(batch, decoder.transformer_dim, 64, 64)
    src = torch.stack([src[b, :, y : y + window, x : x + window] for b, (y, x) in enumerate(crops)])
    upscaled = decoder.output_upscaling(src).flatten(2)
    mask_tokens = hs[:, 1 : 1 + decoder.num_mask_tokens, :]
    hyper = torch.stack([mlp(mask_tokens[:, i]) for i, mlp in enumerate(decoder.output_hypernetworks_mlps)], dim=1)
    masks = (hyper @ upscaled).reshape(batch, decoder.num_mask_tokens, 4 * window, 4 * window)
    return masks, decoder.iou_prediction_head(hs[:, 0]).reshape(batch, decoder.num_mask_tokens)


def mask_losses(logits: torch.Tensor, target: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """logits [B, M, S, S], target [B, S, S] (0..1) -> (balanced cross-entropy + dice per mask [B, M], IoU [B, M]).

    Balanced: the mask's pixels and the rest weigh half each. SAM's 20 x focal + dice collapses a
    model trained from scratch to empty masks and it stays there (measured: box-fill IoU 0 for
    300 steps); with the balance an empty mask costs as much as a full one, and it climbs.
    """
    t = target[:, None].expand_as(logits)
    ce = F.binary_cross_entropy_with_logits(logits, t, reduction="none").flatten(2)
    inside = t.flatten(2)
    positive = (ce * inside).sum(-1) / inside.sum(-1).clamp(min=1)
    negative = (ce * (1 - inside)).sum(-1) / (1 - inside).sum(-1).clamp(min=1)
    p = torch.sigmoid(logits)
    dice = 1 - (2 * (p * t).flatten(2).sum(-1) + 1) / (p.flatten(2).sum(-1) + t.flatten(2).sum(-1) + 1)
    with torch.no_grad():
        pred, truth = logits > 0, t > 0.5
        inter = (pred & truth).flatten(2).sum(-1).float()
        union = (pred | truth).flatten(2).sum(-1).float()
        iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
    return positive + negative + DICE_WEIGHT * dice, iou


def prompt_loss(model, embeddings, targets, is_box, rng, points=None, boxes=None) -> Tuple[torch.Tensor, Dict]:
    crops = windows(targets, rng, WINDOW) if WINDOW else None
    masks, iou_pred = decode_all(model, embeddings, points=points, boxes=boxes, crops=crops, window=WINDOW or 64)
    targets = torch.from_numpy(targets)
    if crops is not None:
        side = 4 * WINDOW
        targets = torch.stack([t[4 * y : 4 * y + side, 4 * x : 4 * x + side] for t, (y, x) in zip(targets, crops)])
    per_mask, iou = mask_losses(masks, targets)
    # a box is unambiguous here: every mask learns it; a point may mean several masks, so only the
    # best of the multimask outputs 1-3 learns (SAM's rule)
    loss = per_mask.mean() if is_box else per_mask[:, 1:].min(dim=1).values.mean()
    iou_loss = F.mse_loss(iou_pred, iou)
    chosen = iou[torch.arange(len(iou)), iou_pred[:, 1:].argmax(dim=1) + 1]
    return loss + IOU_WEIGHT * iou_loss, {
        "mask": float(loss.detach() if torch.is_tensor(loss) else loss),
        "iou_mse": float(iou_loss.detach()),
        "iou": float(chosen.mean()),
    }


def scene_prompts(scene, rng: np.random.Generator, count: int):
    """Up to `count` instances of a scene: their low-res targets, box prompts and point prompts (prompt frame)."""
    size = scene.picture.shape[:2]
    chosen = rng.permutation(len(scene.masks))[:count]
    boxes, box_targets, points, point_targets = [], [], [], []
    for k in chosen:
        mask = scene.masks[k]
        target = low_res_target(mask)
        if rng.random() < RECIPE.box_share:
            box = scene.boxes_xyxy[k]
            boxes.append(jitter(box, rng, size) if rng.random() < 0.5 else box)
            box_targets.append(target)
        else:
            if rng.random() < 0.5:
                xy = farthest_point(mask)
            else:
                ys, xs = np.nonzero(mask)
                i = int(rng.integers(0, len(xs)))
                xy = (float(xs[i]), float(ys[i]))
            points.append(xy)
            point_targets.append(target)
    out = {}
    if boxes:
        out["box"] = (torch.from_numpy(boxes_to_prompt_frame(np.array(boxes), size)), np.stack(box_targets))
    if points:
        coords = torch.from_numpy(to_prompt_frame(np.array(points)[:, None, :], size))
        out["point"] = ((coords, torch.ones(len(points), 1)), np.stack(point_targets))
    return out


def picture_batch(pictures: List[np.ndarray], side: int) -> torch.Tensor:
    return torch.from_numpy(np.concatenate([encoder_input(p, side) for p in pictures]))


def align_cross_attention(model: nn.Module, gain: float = 1.5) -> None:
    """Start each token<->image attention with its key projection equal to its query projection.

    The decoder finds where a prompt is only through the positional encodings added to queries and
    keys; with independent random projections their match is noise, and from scratch the model
    settles on one prompt-blind "salient shapes" mask (measured: two far-apart boxes gave masks
    differing by 0.1 % of their magnitude or less). With k = q the logits start as the encodings' own inner
    product, a kernel that peaks where the prompt is.
    """
    for module in model.mask_decoder.transformer.modules():
        if hasattr(module, "q_proj") and module.q_proj.out_features < module.q_proj.in_features:
            with torch.no_grad():
                module.q_proj.weight.mul_(gain)
                module.k_proj.weight.copy_(module.q_proj.weight)


def box_fill(box: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """The picture-size mask of a box's pixels (x0, y0, x1, y1; x1, y1 exclusive as evaluate's prompt)."""
    out = np.zeros(size, bool)
    out[int(box[1]) : int(math.ceil(box[3])), int(box[0]) : int(math.ceil(box[2]))] = True
    return out


def geometry_step(model, optimizer, scene, rng, prompts: int, side: int) -> Dict[str, float]:
    """The warm-up: the prompt encoder and decoder learn to fill boxes (the instances' own, jittered,
    and as many random ones), the encoder frozen, so that the main phase starts from a decoder that
    reads a box. (It does not yet get far enough in a CPU budget for that: benchmarks/README.md.)"""
    size = scene.picture.shape[:2]
    with torch.no_grad():
        embeddings = model.image_encoder(picture_batch([scene.picture], side))
    boxes = [jitter(b, rng, size) if rng.random() < 0.5 else b for b in scene.boxes_xyxy[:prompts]]
    while len(boxes) < 2 * prompts:
        (x0, x1), (y0, y1) = np.sort(rng.uniform(0, size[1], 2)), np.sort(rng.uniform(0, size[0], 2))
        boxes.append(np.array([x0, y0, max(x1, x0 + 4), max(y1, y0 + 4)]))
    targets = np.stack([low_res_target(box_fill(b, size)) for b in boxes])
    prompt = torch.from_numpy(boxes_to_prompt_frame(np.array(boxes), size))
    loss, info = prompt_loss(model, embeddings, targets, True, rng, boxes=prompt)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], 1.0)
    optimizer.step()
    return info


def train_step(model, optimizer, scenes, rng, prompts_per_image: int, side: int) -> Dict[str, float]:
    embeddings = model.image_encoder(picture_batch([s.picture for s in scenes], side))
    total, stats = 0.0, []
    for i, scene in enumerate(scenes):
        for kind, (prompt, targets) in scene_prompts(scene, rng, prompts_per_image).items():
            kwargs = {"boxes": prompt} if kind == "box" else {"points": prompt}
            loss, info = prompt_loss(model, embeddings[i : i + 1], targets, kind == "box", rng, **kwargs)
            total = total + loss * len(targets)
            stats.append((len(targets), info))
    count = sum(n for n, _ in stats)
    optimizer.zero_grad(set_to_none=True)
    (total / max(count, 1)).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    return {key: sum(n * info[key] for n, info in stats) / max(count, 1) for key in ("mask", "iou_mse", "iou")}


def recompute_bn(model: nn.Module, seed: int, images: int, side: int) -> nn.Module:
    """A copy of the model whose BatchNorm running statistics are the population statistics of its
    current weights on fresh scenes (cumulative average, train mode, no gradients)."""
    twin = copy.deepcopy(model)
    norms = [m for m in twin.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    twin.train()
    with torch.no_grad():
        for i in range(0, images, 2):
            pictures = [make_coco_scene(seed, BN_INDEX_OFFSET + i + k).picture for k in range(2)]
            twin.image_encoder(picture_batch(pictures, side))
    for m in norms:
        m.momentum = 0.1
    return twin.eval()


# --- evaluation (upstream's protocol, torch inference) ---------------------------------------------


def read_coco(root: Path, split: str = "val"):
    """(image record, picture, [(mask, area)]) per image of a COCO set, decoded by pycocotools."""
    from PIL import Image
    from pycocotools import mask as coco_mask

    document = json.loads((root / "annotations" / f"instances_{split}.json").read_text())
    by_image: Dict[int, list] = {}
    for a in document["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    for image in document["images"]:
        h, w = image["height"], image["width"]
        picture = np.asarray(Image.open(root / "images" / image["file_name"]).convert("RGB"))
        instances = []
        for a in by_image.get(image["id"], []):
            segmentation = a["segmentation"]
            rle = (
                coco_mask.merge(coco_mask.frPyObjects(segmentation, h, w))
                if isinstance(segmentation, list)
                else segmentation
            )
            if a["area"] >= 1:
                instances.append((coco_mask.decode(rle).astype(bool), a["bbox"], a["area"]))
        yield image, picture, instances


@torch.no_grad()
def evaluate(model: nn.Module, root: Path, side: int, prompt: str, limit: Optional[int] = None) -> Dict[str, float]:
    model.eval()
    ious, areas = [], []
    for n, (_, picture, instances) in enumerate(read_coco(root)):
        if limit is not None and n >= limit:
            break
        if not instances:
            continue
        size = picture.shape[:2]
        embeddings = model.image_encoder(picture_batch([picture], side))
        if prompt == "box":
            xyxy = np.array([[x, y, x + w, y + h] for _, (x, y, w, h), _ in instances])
            masks, iou_pred = model.decode(embeddings, boxes=torch.from_numpy(boxes_to_prompt_frame(xyxy, size)))
        else:
            xy = np.array([farthest_point(m) for m, _, _ in instances])[:, None, :]
            coords = torch.from_numpy(to_prompt_frame(xy, size))
            masks, iou_pred = model.decode(embeddings, points=(coords, torch.ones(len(xy), 1)))
        best = iou_pred.argmax(dim=1)
        chosen = masks[torch.arange(len(best)), best][:, None].numpy()
        predicted = postprocess_masks(chosen, size)[:, 0]
        for (mask, _, area), pred in zip(instances, predicted):
            union = np.logical_or(mask, pred).sum()
            ious.append(np.logical_and(mask, pred).sum() / union if union else 1.0)
            areas.append(area)
    ious, areas = np.array(ious), np.array(areas)
    out = {"miou": float(ious.mean() * 100) if len(ious) else float("nan"), "instances": int(len(ious))}
    for name, (lo, hi) in AREA_RANGES.items():
        picked = (areas >= lo) & (areas < hi)
        out[name] = float(ious[picked].mean() * 100) if picked.any() else float("nan")
    return out


def box_fill_miou(root: Path) -> float:
    """The mIoU of answering every box prompt with the filled box: what a model that reads the box
    but not the picture scores (the bar a stand-in must clear to show it segments)."""
    ious = []
    for _, picture, instances in read_coco(root):
        for mask, (x, y, w, h), _ in instances:
            filled = box_fill(np.array([x, y, x + w, y + h]), picture.shape[:2])
            ious.append(np.logical_and(mask, filled).sum() / np.logical_or(mask, filled).sum())
    return float(np.mean(ious) * 100)


# --- the run --------------------------------------------------------------------------------------


def write_sets(out: Path, val_count: int, calib_count: int) -> None:
    if not (out / "val" / "annotations" / "instances_val.json").is_file():
        write_coco_scenes(out / "val", val_count, seed=VAL_SEED, split="val")
    from msla_deploy.drawing import save_picture

    for i in range(calib_count):
        path = out / "calib" / f"calib_{i:04d}.png"
        if not path.is_file():
            save_picture(path, make_coco_scene(CALIB_SEED, i).picture)


def save_checkpoint(model: nn.Module, path: Path) -> None:
    import io

    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    write_bytes_atomic(path, buffer.getvalue())


def write_readme(out: Path, log: Dict) -> None:
    final = log.get("final") or log["checkpoints"][-1]
    lines = [
        "EfficientViT-SAM stand-in (msla-deploy benchmarks/train_sam.py): NOT upstream's weights and not a",
        "segment-anything model; a small SAM (zoo name efficientvit-sam-standin) trained on procedural shape",
        "scenes so that fp16 / int8 / segment-everything figures mean something.",
        "",
        f"sam_standin.pt   state dict after {log['steps']} steps"
        f" ({log['train_seconds'] / 60:.1f} min on {log['machine']})",
        f"val/             held-out COCO set: {log['val_count']} scenes, seed {VAL_SEED}",
        f"calib/           {log['calib_count']} pictures for int8 calibration, seed {CALIB_SEED}",
        "",
        "export:",
        f"  msla-deploy export --model {MODEL} --weights {out / CHECKPOINT}",
        "",
        "measured on val/ (torch, upstream's protocol: multimask, highest predicted IoU; IoU*100 over instances):",
    ]
    for prompt in ("box", "point"):
        figures = final.get(prompt)
        if figures:
            lines.append(
                f"  {prompt:5s} mIoU {figures['miou']:.1f}  (small {figures['small']:.1f},"
                f" medium {figures['medium']:.1f}, large {figures['large']:.1f}; {figures['instances']} instances)"
            )
    if "box_fill_baseline" in log:
        lines.append(f"  box-fill baseline (every box answered by itself, filled) mIoU {log['box_fill_baseline']:.1f}")
    lines += ["", "remake: python benchmarks/train_sam.py " + " ".join(log["argv"])]
    write_bytes_atomic(out / "README.txt", ("\n".join(lines) + "\n").encode())


def checkpoint(model, args, log, step, final: bool = False) -> None:
    twin = recompute_bn(model, args.seed, args.bn_images, args.side)
    limit = None if final else args.quick_eval
    figures = {"step": step, "box": evaluate(twin, args.out / "val", args.side, "box", limit)}
    if final or args.point_eval:
        figures["point"] = evaluate(twin, args.out / "val", args.side, "point", limit)
    save_checkpoint(twin, args.out / CHECKPOINT)
    log["checkpoints"].append(figures)
    if final:
        log["final"] = figures
        log["box_fill_baseline"] = box_fill_miou(args.out / "val")
    write_json_atomic(args.out / "train_log.json", log)
    write_readme(args.out, log)
    print(
        f"checkpoint at step {step}: box mIoU {figures['box']['miou']:.1f}"
        + (f", point {figures['point']['miou']:.1f}" if "point" in figures else ""),
        flush=True,
    )


def warm_up_geometry(model: nn.Module, args, rng: np.random.Generator) -> int:
    """--geometry-minutes of geometry_step on fresh scenes (warm-up, then cosine to a tenth); the step count."""
    model.image_encoder.eval()  # frozen: BatchNorm keeps its initial statistics
    params = list(model.prompt_encoder.parameters()) + list(model.mask_decoder.parameters())
    optimizer = torch.optim.AdamW(params, lr=args.geometry_lr, weight_decay=args.weight_decay)
    budget, start, step, recent = args.geometry_minutes * 60, time.time(), 0, []
    while time.time() - start < budget:
        progress = (time.time() - start) / budget
        cosine = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))
        lr = args.geometry_lr * min(1.0, (step + 1) / args.warmup) * cosine
        for group in optimizer.param_groups:
            group["lr"] = lr
        scene = make_coco_scene(args.seed, 2 * BN_INDEX_OFFSET + step)  # apart from the main phase's scenes
        if not len(scene.masks):
            step += 1
            continue
        recent = (recent + [geometry_step(model, optimizer, scene, rng, args.prompts, args.side)["iou"]])[-20:]
        step += 1
        if step % 20 == 0:
            minutes = (time.time() - start) / 60
            print(f"geometry step {step} {minutes:.1f} min box-fill IoU {np.mean(recent):.3f}", flush=True)
    return step


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the checkpoint and the sets (created)")
    parser.add_argument("--minutes", type=float, default=35.0, help="training wall time (ignored with --steps)")
    parser.add_argument("--steps", type=int, default=None, help="train this many steps instead of --minutes")
    parser.add_argument("--images", type=int, default=2, help="pictures per step")
    parser.add_argument("--prompts", type=int, default=4, help="prompts per picture")
    parser.add_argument("--lr", type=float, default=6e-4)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--warmup", type=int, default=20, help="warm-up steps")
    parser.add_argument("--seed", type=int, default=TRAIN_SEED)
    parser.add_argument("--side", type=int, default=512, help="encoder side (the zoo model's)")
    parser.add_argument("--val-count", type=int, default=40)
    parser.add_argument("--calib-count", type=int, default=16)
    parser.add_argument("--bn-images", type=int, default=16)
    parser.add_argument("--checkpoint-minutes", type=float, default=6.0, help="save and score this often")
    parser.add_argument("--quick-eval", type=int, default=12, help="scenes scored at intermediate checkpoints")
    parser.add_argument("--point-eval", action="store_true", help="score points at intermediate checkpoints too")
    parser.add_argument(
        "--curriculum",
        type=int,
        default=0,
        help="steps per pool size: train on 1 scene, then 4, 16, ... (4x every N steps), then fresh scenes",
    )
    parser.add_argument(
        "--geometry-minutes", type=float, default=12.0, help="first, the decoder alone learns to fill boxes (0: skip)"
    )
    parser.add_argument("--geometry-lr", type=float, default=2e-3)
    parser.add_argument("--box-share", type=float, default=RECIPE.box_share, help="share of box prompts")
    parser.add_argument("--resume", type=Path, help="start from these weights (no warm-up, no alignment)")
    parser.add_argument("--evaluate-only", action="store_true", help="score --out's checkpoint on --out/val")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    write_sets(args.out, args.val_count, args.calib_count)
    model = zoo.build(MODEL)
    if args.evaluate_only or args.resume:
        zoo.load_checkpoint(model, args.resume or args.out / CHECKPOINT)
    if args.evaluate_only:
        model.eval()
        for prompt in ("box", "point"):
            print(prompt, json.dumps(evaluate(model, args.out / "val", args.side, prompt)))
        print("box-fill baseline", json.dumps({"miou": box_fill_miou(args.out / "val")}))
        return 0
    RECIPE.box_share = args.box_share
    rng = np.random.default_rng([args.seed, 1])
    if not args.resume:
        align_cross_attention(model)
    geometry_steps = 0
    if args.geometry_minutes > 0 and not args.resume:
        geometry_steps = warm_up_geometry(model, args, rng)
    model.train()
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    rest = [p for n, p in model.named_parameters() if p.ndim <= 1]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": rest, "weight_decay": 0.0}], lr=args.lr
    )
    log: Dict = {
        "geometry_steps": geometry_steps,
        "model": MODEL,
        "argv": sys.argv[1:] if argv is None else argv,
        "machine": f"{platform.processor() or platform.machine()}, {args.threads} threads, torch {torch.__version__}",
        "val_count": args.val_count,
        "calib_count": args.calib_count,
        "history": [],
        "checkpoints": [],
        "steps": 0,
        "train_seconds": 0.0,
    }
    budget = args.minutes * 60
    start = last_checkpoint = time.time()
    step, index = 0, 0
    while True:
        elapsed = time.time() - start
        done = step >= args.steps if args.steps is not None else elapsed >= budget
        if done:
            break
        progress = step / args.steps if args.steps is not None else elapsed / budget
        lr = args.lr * min(1.0, (step + 1) / args.warmup) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))
        for group in optimizer.param_groups:
            group["lr"] = lr
        scenes = []
        pool = 4 ** (step // args.curriculum) if args.curriculum else None
        while len(scenes) < args.images:
            if pool is not None and pool < CURRICULUM_END:  # a small pool first: prompts must tell its objects apart
                scene = make_coco_scene(args.seed, (step * args.images + len(scenes)) % pool)
            else:
                scene = make_coco_scene(args.seed, CURRICULUM_END + index)
                index += 1
            if len(scene.masks):
                scenes.append(scene)
            elif pool is not None and pool < CURRICULUM_END:
                pool += 1  # an empty scene in the pool: take one more
        t = time.time()
        info = train_step(model, optimizer, scenes, rng, args.prompts, args.side)
        step += 1
        log["history"].append({"step": step, "lr": lr, "seconds": round(time.time() - t, 2), **info})
        log["steps"], log["train_seconds"] = step, time.time() - start
        if step % 5 == 0 or step == 1:
            recent = log["history"][-5:]
            mean = {k: np.mean([h[k] for h in recent]) for k in ("mask", "iou_mse", "iou", "seconds")}
            print(
                f"step {step} {elapsed / 60:.1f} min lr {lr:.2e} mask {mean['mask']:.3f} iou_mse {mean['iou_mse']:.3f}"
                f" train IoU {mean['iou']:.3f} ({mean['seconds']:.1f} s/step)",
                flush=True,
            )
        if time.time() - last_checkpoint >= args.checkpoint_minutes * 60:
            scoring = time.time()
            checkpoint(model, args, log, step)
            last_checkpoint = time.time()
            start += last_checkpoint - scoring  # scoring is not training time
    log["train_seconds"] = time.time() - start
    checkpoint(model, args, log, step, final=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    sys.exit(main())
