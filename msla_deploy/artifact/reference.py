"""The reference bundle: inputs and PyTorch fp32 outputs, the contract between export and validate.

Plain numpy `.npz` files plus a small JSON, so a device without torch can check an artifact.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List

import numpy as np

from ..errors import BadInput
from .files import read_json, write_bytes_atomic, write_json_atomic
from .names import REFERENCE_DIR, REFERENCE_INFO, REFERENCE_INPUTS, REFERENCE_OUTPUTS
from .npfiles import load_npz

# upstream preprocessing: RGB / 255, then ImageNet mean and std
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ReferenceBundle:
    inputs: Dict[str, np.ndarray]
    outputs: Dict[str, np.ndarray]
    info: Dict


def synthetic_images(batch: int, height: int, width: int, seed: int, varied: bool = False) -> np.ndarray:
    """Uniform-noise RGB pictures, preprocessed like upstream: [N, 3, H, W] float32.

    `varied`: each picture a different smooth colour field (a coarse random grid, stretched) under
    noise of its own strength, so that a classifier does not see N samples of one texture."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(batch, 3, height, width)).astype(np.float32) / 255.0
    if varied:
        for i in range(batch):
            cells = int(rng.integers(2, 9))
            grid = rng.random((3, cells, cells), dtype=np.float32)
            field = grid[:, np.arange(height) * cells // height][:, :, np.arange(width) * cells // width]
            noise = np.float32(rng.uniform(0.0, 0.5))
            pixels[i] = (1 - noise) * field + noise * pixels[i]
    mean = np.asarray(IMAGENET_MEAN, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(IMAGENET_STD, np.float32).reshape(1, 3, 1, 1)
    return (pixels - mean) / std


def _npz_bytes(arrays: Dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def write_reference(root: Path, bundle: ReferenceBundle) -> List[str]:
    """Write the bundle under `root/reference/`; returns the files' paths relative to `root`."""
    folder = root / REFERENCE_DIR
    write_bytes_atomic(folder / REFERENCE_INPUTS, _npz_bytes(bundle.inputs))
    write_bytes_atomic(folder / REFERENCE_OUTPUTS, _npz_bytes(bundle.outputs))
    write_json_atomic(folder / REFERENCE_INFO, bundle.info)
    return [f"{REFERENCE_DIR}/{name}" for name in (REFERENCE_INPUTS, REFERENCE_OUTPUTS, REFERENCE_INFO)]


def read_reference(folder: Path) -> ReferenceBundle:
    """The bundle, each array refused from its header first (npfiles: kind, stored size, memory)."""
    folder = Path(folder)
    fix = "re-run msla-deploy export"
    inputs = load_npz(folder / REFERENCE_INPUTS, fix)
    outputs = load_npz(folder / REFERENCE_OUTPUTS, fix)
    info = read_json(folder / REFERENCE_INFO, fix)
    for file, arrays in ((REFERENCE_INPUTS, inputs), (REFERENCE_OUTPUTS, outputs)):
        if not arrays:
            raise BadInput(f"{folder / file} holds no arrays", fix)
        for name, array in arrays.items():
            if array.ndim == 0 or array.shape[0] == 0:
                raise BadInput(f"{folder / file}: array {name!r} of shape {list(array.shape)} holds no samples", fix)
    _check_info(info, folder / REFERENCE_INFO)
    return ReferenceBundle(inputs=inputs, outputs=outputs, info=info)


#: fields of reference.json that are read, and the JSON types they must have
_INFO_TYPES = {
    "source": (str,),
    "precision": (str,),
    "torch": (str,),
    "inputs": (str,),
    "synthetic_inputs": (str,),
    "image_preprocessing": (str,),
    "image_source_dir": (str,),
    "normalization": (dict,),
    "seed": (int,),
    "synthetic_samples": (int,),
    "images": (list,),
    "input_names": (list,),
    "output_names": (list,),
}


def _check_info(info, path: Path) -> None:
    """A reference.json of the wrong shape is bad input (exit 2), not a crash later."""
    fix = "re-run msla-deploy export (or msla-deploy reference --inputs) to rewrite it"
    if not isinstance(info, dict):
        raise BadInput(f"{path} is a JSON {type(info).__name__}, not an object", fix)
    for key, types in _INFO_TYPES.items():
        value = info.get(key)
        if value is not None and (not isinstance(value, types) or isinstance(value, bool) and bool not in types):
            raise BadInput(
                f"{path}: field {key!r} is {type(value).__name__} {json.dumps(value)[:40]}, not {types[0].__name__}",
                fix,
            )
    if isinstance(info.get("synthetic_samples"), int) and info["synthetic_samples"] < 0:
        raise BadInput(f"{path}: field 'synthetic_samples' is negative", fix)
    for key in ("input_names", "output_names"):
        if not all(isinstance(v, str) for v in info.get(key) or []):
            raise BadInput(f"{path}: field {key!r} must list strings", fix)
    if not all(isinstance(i, dict) for i in info.get("images") or []):
        raise BadInput(f"{path}: field 'images' must list objects", fix)
