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
from .files import write_bytes_atomic, write_json_atomic
from .names import REFERENCE_DIR, REFERENCE_INFO, REFERENCE_INPUTS, REFERENCE_OUTPUTS

# upstream preprocessing: RGB / 255, then ImageNet mean and std
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ReferenceBundle:
    inputs: Dict[str, np.ndarray]
    outputs: Dict[str, np.ndarray]
    info: Dict


def synthetic_images(batch: int, height: int, width: int, seed: int) -> np.ndarray:
    """Uniform-noise RGB pictures, preprocessed like upstream: [N, 3, H, W] float32."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(batch, 3, height, width)).astype(np.float32) / 255.0
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
    folder = Path(folder)
    try:
        with np.load(folder / REFERENCE_INPUTS, allow_pickle=False) as f:
            inputs = {k: f[k] for k in f.files}
        with np.load(folder / REFERENCE_OUTPUTS, allow_pickle=False) as f:
            outputs = {k: f[k] for k in f.files}
        info = json.loads((folder / REFERENCE_INFO).read_text())
    except (OSError, ValueError) as exc:
        raise BadInput(f"cannot read the reference bundle in {folder}: {exc}", "re-run msla-deploy export") from None
    return ReferenceBundle(inputs=inputs, outputs=outputs, info=info)
