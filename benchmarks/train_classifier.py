"""Train a stand-in classifier: the zoo's `efficientvit-b0` on the procedural shapes of shapes.py.

The classification counterpart of train_synthetic.py. Random weights put every picture's top-1
on whichever of 1000 nearly equal logits wins by a hair, so "fp16 keeps top-1" says little; a
model that has learned something has margins like a real one. This script trains the zoo's
`efficientvit-b0` architecture *unchanged* (1000 outputs, upstream's state-dict names) on the
first six ImageNet indices, one per shape class (shapes.CLASSES, index = position), so its
checkpoint goes through the real command line as any upstream b0 checkpoint does:
`msla-deploy export --model efficientvit-b0 --weights efficientvit_b0_r224.pt --res 96`
(task, head and the strict state-dict check are the zoo's; no FILE.py:FACTORY, no --task).
The 994 unused logits are trained down by the cross-entropy like any wrong class.

Training pictures have random sizes and go through the classification protocol that evaluate
and int8 calibration use (msla_deploy/runtime/classify_preprocess.py: short side to
ceil(res / 0.95), centre crop), fresh every step. After training the BatchNorm statistics are
recomputed on fresh pictures (as train_synthetic.py does), the held-out top-1 is measured, and
`<out>/efficientvit_b0_r224.pt` (a plain state dict; the official file name, so `--models-dir`
finds it too) and `<out>/efficientvit_b0_r224.train.json` are written.

    python benchmarks/train_classifier.py --out models/standin-cls-400 --steps 400   # benchmarks/README.md's run
    python benchmarks/train_classifier.py --out DIR --steps 3 --bn-batches 1 --val-count 12   # smoke run
    python benchmarks/train_classifier.py --write-val models/standin-cls/val --val-count 600
    python benchmarks/train_classifier.py --evaluate models/standin-cls/val \\
        --weights models/standin-cls-400/efficientvit_b0_r224.pt --onnx A/model.onnx B/model.onnx ...

--evaluate scores PyTorch and each exported ONNX (ONNX Runtime, CPU) on the same held-out folder,
with the same preprocessing: top-1, and top-1 agreement with PyTorch. Not CI: run by hand.
"""

from __future__ import annotations

import argparse
import io
import math
import platform
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))  # shapes.py beside this file

import shapes  # noqa: E402

from msla_deploy import zoo  # noqa: E402
from msla_deploy.artifact.files import write_bytes_atomic, write_json_atomic  # noqa: E402
from msla_deploy.runtime import classify_preprocess  # noqa: E402
from msla_deploy.runtime.picture_files import load_rgb  # noqa: E402

MODEL = "efficientvit-b0"
VAL_SEED = 1000  # the held-out pictures' seed; training uses --seed (must differ)
BN_INDEX_OFFSET = 10**9  # BN recomputation draws training-seed pictures from here on (never trained on)


def preprocess(picture: np.ndarray, res: int) -> np.ndarray:
    """A picture as evaluate feeds the classifier: 3 x res x res float32."""
    return classify_preprocess.preprocess(picture, (res, res))[0]


def lr_at(progress: float, base: float, warmup: float = 0.05) -> float:
    """Linear warm-up then cosine decay to 2 % of base, over progress in [0, 1]."""
    if progress < warmup:
        return base * max(progress / warmup, 0.02)
    t = min((progress - warmup) / (1.0 - warmup), 1.0)
    return base * (0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * t)))


def batch(seed: int, start: int, count: int, res: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Pictures start..start+count-1 of `seed` at random sizes (short side 1 to 1.6 x the
    protocol's resize), preprocessed as evaluate does."""
    inputs, labels = [], []
    for i in range(start, start + count):
        short = int(np.random.default_rng([seed, i, 2]).integers(math.ceil(res / 0.95), int(res * 1.6) + 1))
        picture, label = shapes.make_picture(seed, i, *shapes.random_size(seed, i, short))
        inputs.append(preprocess(picture, res))
        labels.append(label)
    return torch.from_numpy(np.stack(inputs)), torch.tensor(labels, dtype=torch.int64)


def train(model: nn.Module, args: argparse.Namespace) -> Dict[str, float]:
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    budget = None if args.steps else args.minutes * 60.0
    losses: List[float] = []
    correct = 0
    started = time.perf_counter()
    step = 0
    while True:
        elapsed = time.perf_counter() - started
        progress = step / args.steps if args.steps else elapsed / budget
        if progress >= 1.0:
            break
        for group in optimizer.param_groups:
            group["lr"] = lr_at(progress, args.lr)
        x, y = batch(args.seed, step * args.batch, args.batch, args.res)
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        losses.append(float(loss.detach()))
        correct += int((logits.detach().argmax(1) == y).sum())
        if step % args.log_every == 0:
            seen = args.log_every * args.batch
            print(
                f"step {step:5d}  {time.perf_counter() - started:6.0f} s  loss {np.mean(losses[-args.log_every :]):.3f}"
                f"  train top-1 {100 * correct / seen:5.1f} %  lr {optimizer.param_groups[0]['lr']:.2e}",
                flush=True,
            )
            correct = 0
    tail = losses[-20:] or [float("nan")]
    return {
        "steps": step,
        "images": step * args.batch,
        "seconds": round(time.perf_counter() - started, 1),
        "final_loss": float(np.mean(tail)),
    }


@torch.no_grad()
def recompute_bn(model: nn.Module, seed: int, size: int, res: int, count: int) -> int:
    """Reset every BatchNorm's running stats and average them over `count` batches of fresh pictures."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: equal weight per batch
    model.train()
    for b in range(count):
        model(batch(seed, BN_INDEX_OFFSET + b * size, size, res)[0])
    for m, momentum in zip(norms, saved):
        m.momentum = momentum
    return count * size


@torch.no_grad()
def torch_top1(model: nn.Module, inputs: np.ndarray, size: int = 32) -> np.ndarray:
    model.eval()
    return np.concatenate(
        [model(torch.from_numpy(inputs[i : i + size])).argmax(1).numpy() for i in range(0, len(inputs), size)]
    )


def onnx_top1(path: Path, inputs: np.ndarray, threads: int) -> np.ndarray:
    """Top-1 of an exported graph run by ONNX Runtime on the CPU, one picture per run."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0]
    dtype = np.float16 if feed.type == "tensor(float16)" else np.float32
    return np.array(
        [
            int(np.argmax(session.run(None, {feed.name: inputs[i : i + 1].astype(dtype)})[0][0]))
            for i in range(len(inputs))
        ]
    )


def read_folder(root: Path, res: int) -> Tuple[np.ndarray, np.ndarray, List[str]]:
    """An ImageNet-style folder (sorted class folders, index = position) as preprocessed inputs."""
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    inputs, labels, names = [], [], []
    for index, name in enumerate(classes):
        for path in sorted((root / name).glob("*.png")):
            inputs.append(preprocess(load_rgb(path), res))
            labels.append(index)
            names.append(f"{name}/{path.name}")
    if not inputs:
        raise SystemExit(f"{root}: no <class>/*.png pictures")
    return np.stack(inputs), np.array(labels), names


def save_checkpoint(model: nn.Module, path: Path) -> None:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)  # plain tensors only: loads with weights_only=True
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, buffer.getvalue())


def held_out(seed: int, count: int, short: int, res: int) -> Tuple[np.ndarray, np.ndarray]:
    inputs, labels = [], []
    for i in range(count):
        picture, label = shapes.make_picture(seed, i, *shapes.random_size(seed, i, short))
        inputs.append(preprocess(picture, res))
        labels.append(label)
    return np.stack(inputs), np.array(labels)


def run_training(args: argparse.Namespace) -> int:
    if args.seed == args.val_seed:
        raise SystemExit("--seed must differ from --val-seed (the held-out pictures)")
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    model = zoo.build(MODEL)
    stats = train(model, args)
    bn_pictures = recompute_bn(model, args.seed, args.batch, args.res, args.bn_batches)
    inputs, labels = held_out(args.val_seed, args.val_count, args.short, args.res)
    top1 = float((torch_top1(model, inputs) == labels).mean())
    print(f"held-out top-1 (PyTorch): {100 * top1:.2f} % on {len(labels)} pictures")
    name = zoo.get_spec(MODEL).checkpoint_file
    save_checkpoint(model, args.out / name)
    write_json_atomic(
        args.out / (Path(name).stem + ".train.json"),
        {
            "model": MODEL,
            "classes": list(shapes.CLASSES),
            "resolution": args.res,
            "training": {**stats, "batch": args.batch, "lr": args.lr, "seed": args.seed, "bn_pictures": bn_pictures},
            "held_out": {"seed": args.val_seed, "count": len(labels), "short_side": args.short, "top1": top1},
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
    )
    print(f"wrote {args.out / name}")
    return 0


def evaluate(args: argparse.Namespace) -> int:
    """PyTorch and each ONNX graph on the held-out folder: top-1, and agreement with PyTorch."""
    torch.set_num_threads(args.threads)
    model = zoo.build(MODEL)
    zoo.load_checkpoint(model, args.weights)
    inputs, labels, _ = read_folder(args.evaluate, args.res)
    reference = torch_top1(model, inputs)
    results = {"pytorch fp32": reference}
    for path in args.onnx:
        results[f"onnxruntime {path.parent.name}"] = onnx_top1(path, inputs, args.threads)
    print(f"{args.weights} on {args.evaluate}: {len(labels)} pictures at {args.res}x{args.res}")
    width = max(len(k) for k in results)
    print(f"{'':{width}}     top-1   agreement with PyTorch   differing")
    table = {}
    for name, pred in results.items():
        top1, agree = float((pred == labels).mean()), float((pred == reference).mean())
        table[name] = {"top1": top1, "agreement": agree, "differing": int((pred != reference).sum())}
        print(f"{name:{width}}  {100 * top1:7.2f} %  {100 * agree:20.2f} %   {table[name]['differing']:9d}")
    if args.json:
        write_json_atomic(
            args.json,
            {"weights": str(args.weights), "data": str(args.evaluate), "pictures": len(labels), "results": table},
        )
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, help="folder for the checkpoint and its JSON (created)")
    parser.add_argument("--res", type=int, default=64, help="the model's input side (training and scoring)")
    parser.add_argument("--minutes", type=float, default=10.0, help="training wall time (ignored with --steps)")
    parser.add_argument("--steps", type=int, default=None, help="train this many steps instead of --minutes")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bn-batches", type=int, default=8, help="batches of fresh pictures for the BN statistics")
    parser.add_argument("--val-seed", type=int, default=VAL_SEED)
    parser.add_argument("--val-count", type=int, default=300, help="held-out pictures")
    parser.add_argument("--short", type=int, default=80, help="the held-out pictures' short side")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--write-val", type=Path, help="write --val-count held-out pictures there and stop")
    parser.add_argument("--evaluate", type=Path, help="an ImageNet-style folder to score --weights and --onnx on")
    parser.add_argument("--weights", type=Path)
    parser.add_argument("--onnx", type=Path, nargs="*", default=[], help="exported model.onnx files to score")
    parser.add_argument("--json", type=Path, help="--evaluate: write the figures there")
    args = parser.parse_args(argv)
    if args.write_val:
        written = shapes.write_folder(args.write_val, args.val_count, args.short, args.val_seed)
        print(f"wrote {len(written)} pictures under {args.write_val} ({shapes.NUM_CLASSES} class folders)")
        return 0
    if args.evaluate:
        if args.weights is None:
            parser.error("--evaluate needs --weights")
        return evaluate(args)
    if args.out is None:
        parser.error("give --out (train), --write-val or --evaluate")
    return run_training(args)


if __name__ == "__main__":
    raise SystemExit(main())
