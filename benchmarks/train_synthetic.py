"""Train a stand-in for an official checkpoint: EfficientViT-Seg b0 on procedural street scenes.

Random weights give smooth logits whose argmax says little about what deployment does to
labels, and the official checkpoints cannot be downloaded on our machines. This script trains
`efficientvit-seg-b0-cityscapes` (19 classes) for a few minutes on the CPU on the scenes of
`benchmarks/scenes.py` (fresh scenes every step: nothing is seen twice), then

* recomputes the BatchNorm running statistics from data: the running stats are reset, momentum
  set to None (cumulative average) and `--bn-batches` batches of *fresh* scenes run through the
  model in train mode without gradients, so each BN holds the population statistics of the
  final weights rather than an exponential average over weights that kept changing;
* scores the model on a held-out set (upstream's protocol: logits bicubically upsampled to the
  label size, argmax, per-class intersection and union summed over the set);
* writes `<out>/efficientvit_seg_b0_cityscapes.pt` (a plain state dict: what
  `msla_deploy.zoo.load_checkpoint` loads strictly with weights_only=True) and
  `<out>/efficientvit_seg_b0_cityscapes.train.json` beside it.

    python benchmarks/train_synthetic.py --out /work/standin/models --minutes 8
    python benchmarks/train_synthetic.py --out DIR --steps 3 --res 64x128        # smoke run
    python benchmarks/train_synthetic.py --write-val /work/standin/val --val-count 50
    python benchmarks/train_synthetic.py --evaluate /work/standin/val --weights DIR/efficientvit_seg_b0_cityscapes.pt

Not CI: a script people run by hand. The stand-in is not a Cityscapes model and not the
official weights; it is a model that has learned *something*, so label-level comparisons
(torch vs ONNX fp32/fp16/int8) mean more than on random weights.
"""

from __future__ import annotations

import argparse
import io
import math
import platform
import sys
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))  # scenes.py beside this file

import scenes  # noqa: E402

from msla_deploy import zoo  # noqa: E402
from msla_deploy.artifact.files import write_bytes_atomic, write_json_atomic  # noqa: E402
from msla_deploy.artifact.reference import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from msla_deploy.nn.planning import clear_plans, plan_static  # noqa: E402

MODEL = "efficientvit-seg-b0-cityscapes"
#: the held-out scenes' seed (also write_cityscapes' default); training must use another one
VAL_SEED = 1000
#: BN recomputation reads scenes from the training seed, from this index on (never trained on)
BN_INDEX_OFFSET = 10**9


def parse_res(text: str) -> Tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise SystemExit(f"--res {text!r}: expected HxW, e.g. 128x128") from None
    if h % 32 or w % 32 or h < 32 or w < 32:
        raise SystemExit(f"--res {text}: both sides must be positive multiples of 32 (the model's stride)")
    return h, w


def to_input(images: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W, 3] RGB -> normalised float [N, 3, H, W], as the reference inputs."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


class SceneStream(torch.utils.data.IterableDataset):
    """Batches of scenes seed/start.., start+batch.., ... (one worker keeps the order)."""

    def __init__(self, seed: int, start: int, batch: int, res: Tuple[int, int], count: Optional[int] = None) -> None:
        super().__init__()
        self.seed, self.start, self.batch, self.res, self.count = seed, start, batch, res, count

    def __iter__(self) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        i = 0
        while self.count is None or i < self.count:
            images, labels = scenes.scene_batch(self.seed, self.start + i * self.batch, self.batch, *self.res)
            yield to_input(images), torch.from_numpy(labels.astype(np.int64))
            i += 1


def batches(stream: SceneStream, workers: int):
    if workers <= 0:
        return iter(stream)
    # one worker process draws the scenes while this one trains (the order stays deterministic)
    return iter(torch.utils.data.DataLoader(stream, batch_size=None, num_workers=min(workers, 1), prefetch_factor=4))


def branches(model: nn.Module, res: Tuple[int, int]) -> Dict[str, str]:
    """Which LiteMLA branch (linear / quadratic) each attention module takes at `res`."""
    was_training = model.training
    model.eval()
    _, plans = plan_static(model, torch.zeros(1, 3, *res))
    clear_plans(model)
    model.train(was_training)
    return {name: plan.branch for name, plan in plans.items()}


def lr_at(progress: float, base: float, warmup: float = 0.03) -> float:
    """Linear warm-up then cosine decay to 2 % of base, over progress in [0, 1]."""
    if progress < warmup:
        return base * max(progress / warmup, 0.02)
    t = min((progress - warmup) / (1.0 - warmup), 1.0)
    return base * (0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * t)))


def train(model: nn.Module, args: argparse.Namespace) -> Dict[str, float]:
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    stream = batches(SceneStream(args.seed, 0, args.batch, args.res, count=args.steps), args.workers)
    budget = None if args.steps else args.minutes * 60.0
    losses: List[float] = []
    started = time.perf_counter()
    step = 0
    window_start, window_images = started, 0
    ema = None
    for x, y in stream:
        elapsed = time.perf_counter() - started
        progress = step / args.steps if args.steps else elapsed / budget
        if progress >= 1.0:
            break
        for group in optimizer.param_groups:
            group["lr"] = lr_at(progress, args.lr)
        logits = F.interpolate(model(x), size=y.shape[-2:], mode="bilinear", align_corners=False)
        loss = F.cross_entropy(logits, y, ignore_index=scenes.IGNORE)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        value = float(loss.detach())
        losses.append(value)
        ema = value if ema is None else 0.9 * ema + 0.1 * value
        window_images += x.shape[0]
        if step % args.log_every == 0 or step == args.steps:
            now = time.perf_counter()
            rate = window_images / max(now - window_start, 1e-9)
            lr = optimizer.param_groups[0]["lr"]
            print(
                f"step {step:5d}  {now - started:6.0f} s  loss {value:.3f} (ema {ema:.3f})  {rate:5.1f} img/s  lr "
                f"{lr:.2e}",
                flush=True,
            )
            window_start, window_images = now, 0
    seconds = time.perf_counter() - started
    tail = losses[-20:] or [float("nan")]
    return {
        "steps": step,
        "images": step * args.batch,
        "seconds": round(seconds, 1),
        "final_loss": float(np.mean(tail)),
        "final_loss_steps": len(tail),
        "last_loss": losses[-1] if losses else float("nan"),
    }


@torch.no_grad()
def recompute_bn(model: nn.Module, seed: int, batch: int, res: Tuple[int, int], count: int) -> int:
    """Reset every BatchNorm's running stats and average them over `count` batches of fresh scenes."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average of the batch statistics, equal weight per batch
    model.train()
    for x, _ in SceneStream(seed, BN_INDEX_OFFSET, batch, res, count=count):
        model(x)
    for m, momentum in zip(norms, saved):
        m.momentum = momentum
    return count * batch


def confusion_matrix(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """[K, K] pixel counts, rows the target class, columns the prediction; ignore pixels skipped."""
    k = scenes.NUM_CLASSES
    valid = target != scenes.IGNORE
    return np.bincount(target[valid].astype(np.int64) * k + pred[valid], minlength=k * k).reshape(k, k)


def metrics(confusion: np.ndarray) -> Dict[str, object]:
    """Pixel accuracy and mIoU from intersections and unions summed over the set; the mean is
    over classes with a non-empty union (in the labels or the predictions)."""
    inter = np.diag(confusion).astype(np.float64)
    union = confusion.sum(0) + confusion.sum(1) - inter
    present = union > 0
    iou = np.where(present, inter / np.maximum(union, 1), np.nan)
    return {
        "pixel_accuracy": float(inter.sum() / max(confusion.sum(), 1)),
        "miou": float(np.nanmean(iou)),
        "classes_scored": int(present.sum()),
        "pixels": int(confusion.sum()),
        "iou": {str(c): (None if np.isnan(v) else round(float(v), 4)) for c, v in enumerate(iou)},
    }


def labels_from_logits(logits: torch.Tensor, size: Tuple[int, int]) -> np.ndarray:
    """Upstream's protocol: bicubic (align_corners=False) to the label size, then argmax."""
    return (
        F.interpolate(logits.float(), size=size, mode="bicubic", align_corners=False).argmax(1).numpy().astype(np.int64)
    )


@torch.no_grad()
def predict_torch(model: nn.Module, images: np.ndarray, batch: int = 8) -> np.ndarray:
    model.eval()
    return np.concatenate(
        [
            labels_from_logits(model(to_input(images[i : i + batch])), images.shape[1:3])
            for i in range(0, len(images), batch)
        ]
    )


def predict_onnx(path: Path, images: np.ndarray, threads: int) -> np.ndarray:
    """Labels from an exported ONNX run by ONNX Runtime on the CPU, one picture per run (static batch 1)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0]
    dtype = np.float16 if feed.type == "tensor(float16)" else np.float32
    out = []
    for i in range(len(images)):
        (logits,) = session.run(None, {feed.name: to_input(images[i : i + 1]).numpy().astype(dtype)})
        out.append(labels_from_logits(torch.from_numpy(np.asarray(logits, np.float32)), images.shape[1:3]))
    return np.concatenate(out)


def score(model: nn.Module, images: np.ndarray, labels: np.ndarray) -> Dict[str, object]:
    return metrics(confusion_matrix(predict_torch(model, images), labels))


def compare(pred: np.ndarray, reference: np.ndarray, labels: np.ndarray) -> Dict[str, object]:
    """Scores of `pred` against the labels, and how far its labels are from `reference`'s: the
    share of all pixels with the same label, and the mIoU of pred taking reference as truth."""
    result = metrics(confusion_matrix(pred, labels))
    result["agreement"] = float((pred == reference).mean())
    result["pred_vs_pred_miou"] = metrics(confusion_matrix(pred, reference.astype(np.uint8)))["miou"]
    result["differing_pixels"] = int((pred != reference).sum())
    return result


def read_cityscapes(root: Path, split: str = "val") -> Tuple[np.ndarray, np.ndarray, List[str]]:
    """Pictures and train-id maps of a Cityscapes-layout folder (label ids mapped to train ids)."""
    from PIL import Image

    images, labels, names = [], [], []
    for path in sorted((root / "leftImg8bit" / split).glob("*/*_leftImg8bit.png")):
        stem = path.name[: -len("_leftImg8bit.png")]
        label_path = root / "gtFine" / split / path.parent.name / f"{stem}_gtFine_labelIds.png"
        images.append(np.asarray(Image.open(path).convert("RGB")))
        labels.append(scenes.to_train_ids(np.asarray(Image.open(label_path))))
        names.append(stem)
    if not images:
        raise SystemExit(f"{root}: no leftImg8bit/{split}/<city>/*_leftImg8bit.png found")
    return np.stack(images), np.stack(labels), names


def save_checkpoint(model: nn.Module, path: Path) -> None:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)  # plain tensors only: loads with weights_only=True
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, buffer.getvalue())


def print_scores(title: str, result: Dict[str, object]) -> None:
    print(
        f"{title}: pixel accuracy {100 * result['pixel_accuracy']:.2f} %, mIoU {100 * result['miou']:.2f} "
        f"({result['classes_scored']} classes, {result['pixels']} pixels)"
    )
    ious = result["iou"]
    print("  per class IoU: " + ", ".join(f"{c}:{'-' if v is None else f'{100 * v:.0f}'}" for c, v in ious.items()))


def evaluate(args: argparse.Namespace) -> int:
    """Score the checkpoint (and exported ONNX files, the fp16 proxy) on a Cityscapes-layout folder."""
    model = zoo.build(MODEL)
    zoo.load_checkpoint(model, args.weights)
    model.eval()
    images, labels, _ = read_cityscapes(args.evaluate)
    size = f"{images.shape[1]}x{images.shape[2]}"
    reference = predict_torch(model, images)
    results = {"pytorch fp32": compare(reference, reference, labels)}
    if args.fp16_proxy:
        from msla_deploy.nn.precision import PrecisionPolicy, apply_policy, fp16_storage_proxy

        with fp16_storage_proxy(apply_policy(model, PrecisionPolicy(precision="fp16"))) as proxy:
            results["pytorch fp16 proxy"] = compare(predict_torch(proxy, images), reference, labels)
    for path in args.onnx:
        results[f"onnxruntime {path.parent.name}/{path.name}"] = compare(
            predict_onnx(path, images, args.threads), reference, labels
        )
    print(
        f"{args.weights} on {args.evaluate}: {len(images)} images at {size} (the model's input; logits x8 bicubic to "
        "the labels)"
    )
    width = max(len(k) for k in results)
    print(f"{'':{width}}  pixel acc     mIoU   agree w/ torch   pred-vs-pred mIoU   differing px")
    for name, r in results.items():
        print(
            f"{name:{width}}  {100 * r['pixel_accuracy']:8.2f} %  {100 * r['miou']:7.3f}   "
            f"{100 * r['agreement']:12.3f} %"
            f"   {100 * r['pred_vs_pred_miou']:15.3f} %   {r['differing_pixels']:12d}"
        )
    print_scores("per class (pytorch fp32)", results["pytorch fp32"])
    if args.json:
        write_json_atomic(
            args.json,
            {
                "weights": str(args.weights),
                "data": str(args.evaluate),
                "images": len(images),
                "resolution": [int(images.shape[1]), int(images.shape[2])],
                "results": results,
            },
        )
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, help="folder for the checkpoint and its JSON (created)")
    parser.add_argument(
        "--res",
        type=parse_res,
        default=(128, 128),
        help=(
            "training HxW (default 128x128: LiteMLA takes the linear branch at stride 16 and the quadratic one at "
            "stride 32)"
        ),
    )
    parser.add_argument("--minutes", type=float, default=8.0, help="training wall time (ignored with --steps)")
    parser.add_argument("--steps", type=int, default=None, help="train this many steps instead of --minutes")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0, help="weights and training scenes (must differ from --val-seed)")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--bn-batches", type=int, default=16, help="batches of fresh scenes for the BN statistics")
    parser.add_argument(
        "--val-count", type=int, default=50, help="held-out scenes (seed --val-seed, training resolution)"
    )
    parser.add_argument("--val-seed", type=int, default=VAL_SEED)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads (1 is fastest on a shared 2-core machine)"
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="scene-drawing processes (0: draw in the training process)"
    )
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument(
        "--write-val", type=Path, metavar="DIR", help="write the held-out scenes in the Cityscapes layout to DIR"
    )
    parser.add_argument(
        "--evaluate", type=Path, metavar="DIR", help="score --weights on a Cityscapes-layout folder and exit"
    )
    parser.add_argument("--weights", type=Path, help="checkpoint for --evaluate")
    parser.add_argument(
        "--onnx",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="--evaluate: also score this exported ONNX (ONNX Runtime CPU) against the PyTorch labels; repeatable",
    )
    parser.add_argument(
        "--fp16-proxy",
        action="store_true",
        help="--evaluate: also score msla-deploy's PyTorch fp16 proxy (fp16 policy)",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="--evaluate: write the figures here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    if args.write_val:
        written = scenes.write_cityscapes(args.write_val, args.val_count, *args.res, seed=args.val_seed)
        print(f"wrote {len(written)} scenes ({args.res[0]}x{args.res[1]}, seed {args.val_seed}) to {args.write_val}")
    if args.evaluate:
        if not args.weights:
            parser.error("--evaluate needs --weights")
        return evaluate(args)
    if args.out is None:
        if args.write_val:
            return 0
        parser.error("--out DIR is required for training")
    if args.seed == args.val_seed:
        parser.error(f"--seed {args.seed} is the held-out set's seed; choose another")

    torch.manual_seed(args.seed)
    model = zoo.build(MODEL)
    plan = branches(model, args.res)
    counts = {b: sum(1 for v in plan.values() if v == b) for b in sorted(set(plan.values()))}
    print(
        f"{MODEL} at {args.res[0]}x{args.res[1]}, batch {args.batch}, {args.threads} thread(s); LiteMLA modules per "
        "branch: " + ", ".join(f"{b} {n}" for b, n in counts.items()),
        flush=True,
    )
    figures = train(model, args)
    bn_images = recompute_bn(model, args.seed, args.batch, args.res, args.bn_batches)
    print(f"BatchNorm statistics recomputed over {bn_images} fresh scenes", flush=True)
    val_images, val_labels = scenes.scene_batch(args.val_seed, 0, args.val_count, *args.res)
    held_out = score(model, val_images, val_labels)
    print_scores(f"held-out ({args.val_count} scenes, seed {args.val_seed})", held_out)

    checkpoint = args.out / zoo.get_spec(MODEL).checkpoint_file
    save_checkpoint(model, checkpoint)
    sha256 = zoo.load_checkpoint(zoo.build(MODEL), checkpoint)  # proves it loads strictly, weights only
    record = {
        "model": MODEL,
        "checkpoint": checkpoint.name,
        "sha256": sha256,
        "resolution": list(args.res),
        "batch": args.batch,
        "seed": args.seed,
        "lr": args.lr,
        "weight_decay": args.weight_decay,
        "threads": args.threads,
        **figures,
        "bn_statistics": {
            "method": "recomputed: reset, cumulative average (momentum None) in train mode",
            "images": bn_images,
            "scenes": f"seed {args.seed}, index {BN_INDEX_OFFSET}+",
        },
        "held_out": {"scenes": args.val_count, "seed": args.val_seed, **held_out},
        "liteMLA_branches": plan,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    json_path = checkpoint.with_suffix(".train.json")
    write_json_atomic(json_path, record)
    print(
        f"wrote {checkpoint} and {json_path.name}: {figures['steps']} steps in {figures['seconds'] / 60:.1f} min, "
        f"final loss {figures['final_loss']:.3f}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
