"""Upstream's EfficientViT-SAM golden data (tests/data/upstream/sam/) and the recipe that makes it
reproducible without storing weights: seeded weights, a seeded picture, synthetic embeddings and a
fixed list of prompts.

tests/data/upstream/sam/make_sam_data.py ran upstream's own modules (efficientvit + segment-anything)
filled by `fill_state_dict`; our modules filled by the same function have the same weights, key for
key (tests/zoo/test_sam_zoo.py checks the keys and shapes first), so they must give the same outputs.

Each entry is drawn by its own generator, seeded from the recipe's seed and the key's name, so a
key's value does not depend on the other keys: the prompt encoder and mask decoder, whose keys are
the same in every variant, get the same weights in all five models.
"""

from __future__ import annotations

import json
import math
import re
import zlib
from pathlib import Path
from typing import Dict, MutableMapping, Optional, Tuple

import numpy as np
import torch

from tests.fixtures import FIXTURES, data_file

SAM_DIR = FIXTURES / "sam"
#: the models with end-to-end golden data (the issue's proof: l0 and xl0)
GOLDEN_NAMES = ("efficientvit-sam-l0", "efficientvit-sam-xl0")
#: bump when the recipe changes (the .npz files record the version they were made with)
RECIPE_VERSION = 1
SEED = 23

# --- weights ----------------------------------------------------------------------------------

#: weights of the convs that end a residual branch of the encoder (scaled down, so that the residual
#: stream of a deep backbone grows slowly), and weights with no activation after them
RESIDUAL_GAIN = 0.4
RESIDUAL_ENDS = (".point_conv.", ".conv2.", ".proj.")
LINEAR_OUTPUTS = (
    ".qkv.",
    ".aggreg.",
    "neck.output_ops.",
    "_proj.",  # the transformer's q/k/v/out projections
    ".lin2.",
    ".layers.2.",  # the last layer of the hypernetwork MLPs and of the IoU head
    "mask_downscaling.6.",
)
ACTIVATION_GAIN = 1.9
#: learned vectors used as they are (prompt-label embeddings, output tokens) and the Gaussian matrix
#: of the positional encoding: unit variance. Matched on the whole key (`cross_attn_image_to_token`
#: holds "_token." too)
UNIT_VARIANCE = re.compile(
    r"(point_embeddings\.\d+|not_a_point_embed|no_mask_embed|iou_token|mask_tokens)\.weight$"
    r"|positional_encoding_gaussian_matrix$"
)
#: transposed convs: each output pixel sees one tap per input channel, so the fan-in is dim 0
TRANSPOSED = ("output_upscaling.0.", "output_upscaling.3.")


def _uniform(generator: torch.Generator, shape, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=generator, dtype=torch.float32)


def _generator(key: str) -> torch.Generator:
    return torch.Generator().manual_seed(SEED * 1_000_003 + zlib.crc32(key.encode("utf-8")))


def _draw(key: str, shape: torch.Size) -> torch.Tensor:
    """The value of one float entry, from its name and shape."""
    generator = _generator(key)
    leaf = key.rsplit(".", 1)[-1]
    if leaf == "running_mean":
        return _uniform(generator, shape, -0.1, 0.1)
    if leaf == "running_var":
        return _uniform(generator, shape, 0.75, 1.25)
    if len(shape) == 1:  # norm affine (every 1-D weight is a BatchNorm's or LayerNorm's) or a bias
        return _uniform(generator, shape, 0.75, 1.25) if leaf == "weight" else _uniform(generator, shape, -0.1, 0.1)
    if UNIT_VARIANCE.search(key):
        return _uniform(generator, shape, -math.sqrt(3.0), math.sqrt(3.0))
    # conv or linear weight: uniform with variance gain^2 / fan_in
    fan_in = shape[0] if any(part in key for part in TRANSPOSED) else math.prod(shape[1:])
    return _uniform(generator, shape, -1.0, 1.0) * (_gain(key) * math.sqrt(3.0 / fan_in))


def _gain(key: str) -> float:
    if any(part in key for part in RESIDUAL_ENDS):
        return RESIDUAL_GAIN
    if any(part in key for part in LINEAR_OUTPUTS):
        return 1.0
    return ACTIVATION_GAIN  # an activation follows (GELU, ReLU)


def fill_state_dict(state: MutableMapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Deterministic values for every float entry of `state` (a model's state_dict()); integer
    entries (num_batches_tracked) are kept. Returns a new dict in `state`'s order."""
    return {
        key: _draw(key, value.shape) if value.is_floating_point() else value.clone() for key, value in state.items()
    }


def fill_model(model: torch.nn.Module, prefix: str = "") -> torch.nn.Module:
    """`model` with the recipe's weights, in eval mode (BN uses the running statistics). `prefix`:
    where `model` sits in the whole SAM model (`"mask_decoder."`), whose key names seed the draws."""
    filled = fill_state_dict({prefix + key: value for key, value in model.state_dict().items()})
    model.load_state_dict({key[len(prefix) :]: value for key, value in filled.items()}, strict=True)
    return model.eval()


# --- the picture --------------------------------------------------------------------------------

#: the stored pixels are the picture at 1/BLOCK of its side; each is repeated BLOCK x BLOCK times
BLOCK = 8
#: upstream's normalisation (0-255 units) and the picture's aspect: a 4:3 landscape picture whose
#: longest side is the encoder's, so the bottom quarter of the input is SAM's zero padding
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)
CONTENT_HEIGHT = 3 / 4


def make_pixels(side: int) -> np.ndarray:
    """uint8 [3, side * 3/4 / BLOCK, side / BLOCK]: a level, a contrast and a few plane waves per
    channel plus noise (seeded)."""
    generator = torch.Generator().manual_seed(SEED + side)
    height, width = int(side * CONTENT_HEIGHT) // BLOCK, side // BLOCK
    yy, xx = torch.meshgrid(
        torch.arange(height, dtype=torch.float64) / width,
        torch.arange(width, dtype=torch.float64) / width,
        indexing="ij",
    )
    picture = torch.empty(3, height, width, dtype=torch.float64)
    for channel in range(3):
        level, contrast = _uniform(generator, (2,), 0, 1).double().tolist()
        waves = torch.zeros(height, width, dtype=torch.float64)
        for _ in range(3):
            fy, fx, phase, weight = _uniform(generator, (4,), 0, 1).double().tolist()
            waves += weight * torch.sin(2 * math.pi * (4 * fy * yy + 4 * fx * xx + phase))
        noise = _uniform(generator, (height, width), -1, 1).double()
        picture[channel] = 40 + 175 * level + contrast * (40 * waves + 20 * noise)
    return picture.clamp(0, 255).round().to(torch.uint8).numpy()


def input_from_pixels(pixels: np.ndarray, side: int) -> np.ndarray:
    """The float32 encoder input [1, 3, side, side]: the picture normalised as upstream's transform
    does, then zero-padded bottom-right (the padding is 0 after normalisation, as upstream pads)."""
    full = np.repeat(np.repeat(pixels, BLOCK, axis=1), BLOCK, axis=2).astype(np.float32)
    mean = np.asarray(PIXEL_MEAN, dtype=np.float32).reshape(3, 1, 1)
    std = np.asarray(PIXEL_STD, dtype=np.float32).reshape(3, 1, 1)
    image = np.zeros((1, 3, side, side), dtype=np.float32)
    image[0, :, : full.shape[1], : full.shape[2]] = (full - mean) / std
    return image


def synthetic_embeddings() -> torch.Tensor:
    """[1, 256, 64, 64] image embeddings for the decoder-only golden data: smooth random fields
    (an 8x8 grid upsampled bilinearly) plus a little noise, standardised over the channels of each
    position like the encoder's final LayerNorm output."""
    generator = torch.Generator().manual_seed(SEED + 64)
    coarse = _uniform(generator, (1, 256, 8, 8), -1, 1)
    fine = _uniform(generator, (1, 256, 64, 64), -0.2, 0.2)
    field = torch.nn.functional.interpolate(coarse, size=(64, 64), mode="bilinear", align_corners=False) + fine
    field = field - field.mean(dim=1, keepdim=True)
    return field / field.square().mean(dim=1, keepdim=True).sqrt()


# --- prompts -----------------------------------------------------------------------------------

#: in the 1024 prompt frame; the picture covers x < 1024, y < 768 there. `mask_from`: the case
#: whose best low-res mask (highest predicted IoU, rounded to float16) is this case's mask_input
CASES: Tuple[dict, ...] = (
    {"name": "box", "boxes": [[200.0, 150.5, 700.25, 600.0]], "multimask": True},
    {"name": "box_single", "boxes": [[200.0, 150.5, 700.25, 600.0]], "multimask": False},
    {"name": "points", "points": [[[420.5, 380.0], [800.0, 200.75]]], "labels": [[1, 0]], "multimask": True},
    {"name": "points_single", "points": [[[420.5, 380.0], [800.0, 200.75]]], "labels": [[1, 0]], "multimask": False},
    {
        "name": "refine",
        "points": [[[420.5, 380.0], [800.0, 200.75]]],
        "labels": [[1, 0]],
        "mask_from": "points",
        "multimask": False,
    },
    {"name": "boxes", "boxes": [[100.0, 100.0, 400.0, 500.0], [550.0, 300.0, 900.0, 700.0]], "multimask": False},
    {
        "name": "box_point",
        "boxes": [[200.0, 150.5, 700.25, 600.0]],
        "points": [[[450.0, 400.0]]],
        "labels": [[1]],
        "multimask": False,
    },
)
#: stride of the stored subsample of the mask logits (the binarised masks are stored whole)
LOGIT_STRIDE = 4


def best_mask(masks: np.ndarray, iou: np.ndarray) -> np.ndarray:
    """float16 [1, 1, 256, 256]: the mask with the highest predicted IoU of a one-prompt case."""
    return masks[:, int(np.argmax(iou[0])) : int(np.argmax(iou[0])) + 1].astype(np.float16)


def run_cases(
    prompt_encoder: torch.nn.Module,
    mask_decoder: torch.nn.Module,
    embeddings: torch.Tensor,
    mask_inputs: Optional[Dict[str, np.ndarray]] = None,
) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """Each case through segment-anything's decoder call (upstream's modules or ours: same API) ->
    {case: (low-res logits float32 [B, M, 256, 256], iou float32 [B, M])}. The refinement's
    mask_input is `mask_inputs[case]` when given (the stored one), else the `mask_from` case's best."""
    results: Dict[str, Tuple[np.ndarray, np.ndarray]] = {}
    with torch.no_grad():
        for case in CASES:
            points = boxes = masks = None
            if "points" in case:
                points = (torch.tensor(case["points"]), torch.tensor(case["labels"], dtype=torch.int32))
            if "boxes" in case:
                boxes = torch.tensor(case["boxes"])
            if "mask_from" in case:
                stored = (mask_inputs or {}).get(case["name"])
                mask = stored if stored is not None else best_mask(*results[case["mask_from"]])
                masks = torch.from_numpy(mask.astype(np.float32))
            sparse, dense = prompt_encoder(points=points, boxes=boxes, masks=masks)
            low_res, iou = mask_decoder(
                image_embeddings=embeddings,
                image_pe=prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=case["multimask"],
            )
            results[case["name"]] = (low_res.numpy(), iou.numpy())
    return results


def case_arrays(results: Dict[str, Tuple[np.ndarray, np.ndarray]], stride: int) -> Dict[str, np.ndarray]:
    """What the .npz files store per case: `<case>__bits` (the binarised masks, np.packbits along
    the last axis), `<case>__logits` (every `stride`-th row and column) and `<case>__iou`."""
    arrays = {}
    for name, (low_res, iou) in results.items():
        arrays[f"{name}__bits"] = np.packbits(low_res > 0, axis=-1)
        arrays[f"{name}__logits"] = np.ascontiguousarray(low_res[..., ::stride, ::stride])
        arrays[f"{name}__iou"] = iou
    return arrays


def mask_input_arrays(results: Dict[str, Tuple[np.ndarray, np.ndarray]]) -> Dict[str, np.ndarray]:
    """`<case>__mask_input` (float16) for the refinement cases."""
    return {
        f"{case['name']}__mask_input": best_mask(*results[case["mask_from"]]) for case in CASES if "mask_from" in case
    }


# --- the files ----------------------------------------------------------------------------------

#: rows and columns of the stored grid of the image embeddings (the whole map is 4 MB)
EMBEDDING_GRID = tuple(int(round(v)) for v in np.linspace(0, 63, 16))
#: stride of the stored logit subsample of the end-to-end cases
E2E_LOGIT_STRIDE = 8


def recipe() -> dict:
    """What the .npz files record about how they were made (checked on load)."""
    return {
        "version": RECIPE_VERSION,
        "seed": SEED,
        "block": BLOCK,
        "residual_gain": RESIDUAL_GAIN,
        "activation_gain": ACTIVATION_GAIN,
        "cases": [case["name"] for case in CASES],
    }


def decoder_path() -> Path:
    return SAM_DIR / "decoder.npz"


def golden_path(name: str) -> Path:
    return SAM_DIR / f"{name}.npz"


def read_npz(path: Path) -> Dict[str, np.ndarray]:
    with np.load(data_file(path), allow_pickle=False) as arrays:
        made_with = json.loads(str(arrays["recipe"]))
        assert made_with == recipe(), f"{path.name}: made with recipe {made_with}, tests use {recipe()}"
        return {key: arrays[key] for key in arrays.files}


def stored_mask_inputs(arrays: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    return {key.split("__")[0]: value for key, value in arrays.items() if key.endswith("__mask_input")}


def embedding_summary(embeddings: np.ndarray) -> Dict[str, np.ndarray]:
    """What is stored of [1, 256, 64, 64] embeddings: the grid and per-channel mean and RMS."""
    grid = list(EMBEDDING_GRID)
    return {
        "embeddings_grid": np.ascontiguousarray(embeddings[0][:, grid][:, :, grid]),
        "embeddings_mean": embeddings[0].mean(axis=(1, 2)),
        "embeddings_rms": np.sqrt(np.square(embeddings[0]).mean(axis=(1, 2))),
    }


def unpack_bits(bits: np.ndarray) -> np.ndarray:
    return np.unpackbits(bits, axis=-1).astype(bool)
