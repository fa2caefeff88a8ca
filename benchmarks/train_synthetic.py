"""Train EfficientViT-Seg b0 for a few minutes on the CPU on procedural scenes: a stand-in for a
trained checkpoint.

Random weights give smooth logits (one class nearly everywhere), and no official checkpoint can
be downloaded on our machines; a model that has learned the procedural scenes
(msla_deploy/evaluate/synthetic.py) makes label-level figures (mIoU of torch, ONNX fp32, fp16)
mean something. BatchNorm statistics are data-driven: after training, the running mean and
variance are re-estimated over fresh scenes (a cumulative average, momentum None), so the
exported eval-mode model normalises with the statistics of the data it sees.

    python benchmarks/train_synthetic.py --out models-synthetic --minutes 5
    msla-deploy export --model efficientvit-seg-b0-cityscapes --models-dir models-synthetic --res 256x512

The checkpoint is written under the upstream file name (efficientvit_seg_b0_cityscapes.pt), a
plain state dict, so --models-dir (or --weights) picks it up like an official one.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from msla_deploy.artifact.reference import IMAGENET_MEAN, IMAGENET_STD
from msla_deploy.classes import IGNORE_INDEX
from msla_deploy.evaluate.synthetic import scene
from msla_deploy.zoo.model import build
from msla_deploy.zoo.variants import get_spec

MODEL = "efficientvit-seg-b0-cityscapes"


def batch_of(rng: np.random.Generator, size, count: int):
    pictures, labels = zip(*(scene(rng, size, 19) for _ in range(count)))
    x = (np.stack(pictures).astype(np.float32) / 255 - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
    return torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), torch.from_numpy(np.stack(labels).astype(np.int64))


def recompute_batchnorm(model: torch.nn.Module, rng: np.random.Generator, size, batches: int, batch: int) -> None:
    """Running statistics re-estimated over fresh scenes: a plain average over the batches."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    model.train()
    with torch.no_grad():
        for _ in range(batches):
            model(batch_of(rng, size, batch)[0])
    model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the checkpoint (created)")
    parser.add_argument("--minutes", type=float, default=5.0, help="training time budget")
    parser.add_argument("--res", default="128x256", help="training picture size HxW")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    size = tuple(int(v) for v in args.res.split("x"))
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    model = build(MODEL)
    optimiser = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    deadline = time.monotonic() + 60 * args.minutes
    step = 0
    model.train()
    while time.monotonic() < deadline:
        x, y = batch_of(rng, size, args.batch)
        logits = F.interpolate(model(x), size=size, mode="bilinear", align_corners=False)
        loss = F.cross_entropy(logits, y, ignore_index=IGNORE_INDEX)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        step += 1
        if step % 10 == 0:
            print(f"step {step}: loss {loss.item():.3f}", flush=True)
    recompute_batchnorm(model, rng, size, batches=20, batch=args.batch)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / get_spec(MODEL).checkpoint_file
    torch.save(model.state_dict(), path)
    print(f"{step} steps; wrote {path}")


if __name__ == "__main__":
    main()
