"""Upstream's classification golden data (tests/data/upstream/cls/<name>.npz) and the weight recipe
that makes it reproducible without storing weights.

The golden logits were computed by upstream EfficientViT's own classifier with its state dict
filled by `fill_state_dict` below (tests/data/upstream/make_cls_data.py ran it on upstream's
modules). A zoo model filled by the same function has the same weights, key for key, because the
two state dicts have the same keys and shapes (tests/zoo/test_cls_zoo.py checks that first): so
the same logits are expected from our PyTorch model and from its ONNX export.

Why not plain random init: the golden numbers must test the arithmetic everywhere, so the
BatchNorm statistics and affine parameters are not PyTorch's defaults (mean 0, var 1, weight 1,
bias 0, where a wrong eps or a dropped term changes nothing), and the scales keep activations of a
deep L2 neither vanishing nor exploding.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Dict, MutableMapping

import numpy as np
import torch

from tests.fixtures import FIXTURES, data_file

CLS_DIR = FIXTURES / "cls"
#: the models with golden logits (issue 22: at least b0, b1-r224, l1-r224, l2-r384)
GOLDEN_NAMES = ("efficientvit-b0", "efficientvit-b1-r224", "efficientvit-l1-r224", "efficientvit-l2-r384")

#: bump when the recipe changes (the .npz files record the version they were made with)
RECIPE_VERSION = 1
SEED = 22
#: the stored pixels are the input at 1/BLOCK of its side; each is repeated BLOCK x BLOCK times
BLOCK = 4
#: input = (pixel - OFFSET) / SCALE, exact in float32 (SCALE is a power of two)
OFFSET, SCALE = 128.0, 64.0
#: weights of the convs that end a residual branch (upstream's names) are scaled down by this, so
#: that the residual stream of a deep model grows slowly instead of doubling its variance per block
RESIDUAL_GAIN = 0.4
RESIDUAL_ENDS = (".point_conv.", ".conv2.", ".proj.")
#: weights with no activation after them: LiteMLA's q/k/v and aggregation convs, the classifier
LINEAR_OUTPUTS = (".qkv.", ".aggreg.", "head.op_list.3.")
ACTIVATION_GAIN = 1.9


def _uniform(generator: torch.Generator, shape, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=generator, dtype=torch.float32)


def _draw(key: str, shape: torch.Size, generator: torch.Generator) -> torch.Tensor:
    """The value of one float entry, from its name and shape."""
    leaf = key.rsplit(".", 1)[-1]
    if leaf == "running_mean":
        return _uniform(generator, shape, -0.1, 0.1)
    if leaf == "running_var":
        return _uniform(generator, shape, 0.75, 1.25)
    if len(shape) == 1 and ".norm." in f".{key}":  # BatchNorm / LayerNorm affine
        return _uniform(generator, shape, 0.75, 1.25) if leaf == "weight" else _uniform(generator, shape, -0.1, 0.1)
    if leaf == "bias":  # conv or linear bias
        return _uniform(generator, shape, -0.1, 0.1)
    # conv or linear weight: uniform with variance (gain^2 / fan_in)
    fan_in = math.prod(shape[1:])
    return _uniform(generator, shape, -1.0, 1.0) * (_gain(key) * math.sqrt(3.0 / fan_in))


def _gain(key: str) -> float:
    """A weight's gain by the role its name gives it."""
    if any(part in key for part in RESIDUAL_ENDS):
        return RESIDUAL_GAIN
    if any(part in key for part in LINEAR_OUTPUTS):
        return 1.0
    # an activation follows: hswish and GELU halve a small input, so a gain of 2 keeps its size
    return ACTIVATION_GAIN


def fill_state_dict(state: MutableMapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Deterministic values for every float entry of `state` (a model's state_dict()): one
    torch.Generator seeded with SEED draws the entries in sorted key order; integer entries
    (num_batches_tracked) are kept. Returns a new dict in `state`'s order."""
    generator = torch.Generator().manual_seed(SEED)
    drawn = {}
    for key in sorted(state):
        value = state[key]
        drawn[key] = _draw(key, value.shape, generator) if value.is_floating_point() else value.clone()
    return {key: drawn[key] for key in state}


def fill_model(model: torch.nn.Module) -> torch.nn.Module:
    """`model` with the recipe's weights, in eval mode (BN uses the running statistics)."""
    model.load_state_dict(fill_state_dict(model.state_dict()), strict=True)
    return model.eval()


def make_pixels(batch: int, resolution: int) -> np.ndarray:
    """The stored low-resolution pixels of a golden input, seeded: uint8 [batch, 3, res/BLOCK, res/BLOCK].

    Pictures, not white noise: iid noise has the same statistics in every picture, so after the
    global pool two of them give the same logits. Each picture and channel is a level, a contrast
    and a few plane waves of its own, plus some noise."""
    generator = torch.Generator().manual_seed(SEED + resolution)
    side = resolution // BLOCK
    grid = torch.arange(side, dtype=torch.float64) / side
    yy, xx = torch.meshgrid(grid, grid, indexing="ij")
    pictures = torch.empty(batch, 3, side, side, dtype=torch.float64)
    for index in range(batch * 3):
        level, contrast = _uniform(generator, (2,), 0, 1).double().tolist()
        waves = torch.zeros(side, side, dtype=torch.float64)
        for _ in range(3):
            fy, fx, phase, weight = _uniform(generator, (4,), 0, 1).double().tolist()
            waves += weight * torch.sin(2 * math.pi * (6 * fy * yy + 6 * fx * xx + phase))
        noise = _uniform(generator, (side, side), -1, 1).double()
        pictures.view(-1, side, side)[index] = 40 + 175 * level + contrast * (40 * waves + 20 * noise)
    return pictures.clamp(0, 255).round().to(torch.uint8).numpy()


def input_from_pixels(pixels: np.ndarray) -> np.ndarray:
    """The float32 model input [N, 3, H, W] that the stored pixels stand for."""
    full = np.repeat(np.repeat(pixels, BLOCK, axis=2), BLOCK, axis=3)
    return (full.astype(np.float32) - np.float32(OFFSET)) / np.float32(SCALE)


def recipe() -> dict:
    """What the .npz files record about how they were made (checked on load)."""
    return {
        "version": RECIPE_VERSION,
        "seed": SEED,
        "block": BLOCK,
        "offset": OFFSET,
        "scale": SCALE,
        "residual_gain": RESIDUAL_GAIN,
        "activation_gain": ACTIVATION_GAIN,
    }


def golden_path(name: str) -> Path:
    return CLS_DIR / f"{name}.npz"


def read_golden(name: str):
    """(input float32 [2, 3, res, res], upstream's logits float32 [2, 1000]) of one model."""
    with np.load(data_file(golden_path(name)), allow_pickle=False) as arrays:
        made_with = json.loads(str(arrays["recipe"]))
        assert made_with == recipe(), f"{name}: golden data made with recipe {made_with}, tests use {recipe()}"
        return input_from_pixels(arrays["pixels"]), arrays["logits"]
