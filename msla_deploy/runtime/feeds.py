"""Inputs for a model when no real ones are needed (timing, warm-up)."""

from __future__ import annotations

from typing import Dict, Tuple

import numpy as np

#: values drawn per step for a dtype numpy cannot draw in (float16): float32 blocks of 256 KiB
_BLOCK = 1 << 16


def random_feeds(specs: Dict[str, Tuple[Tuple[int, ...], object]], seed: int = 0) -> Dict[str, np.ndarray]:
    """Normal noise, like a normalised picture: latency does not depend on the values (no
    data-dependent control flow in these models), but NaN-free inputs keep every kernel honest.

    Each array is made in its own dtype, never through a float64 copy of it: the memory a caller
    checked from the declared shapes and dtypes (limits.check_tensors_fit) is what is allocated."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for name, (shape, dtype) in specs.items():
        dtype = np.dtype(dtype)
        if dtype in (np.float32, np.float64):
            feeds[name] = rng.standard_normal(shape, dtype=dtype)
        elif np.issubdtype(dtype, np.floating):
            array = np.empty(shape, dtype)
            flat = array.reshape(-1)
            for start in range(0, flat.size, _BLOCK):
                flat[start : start + _BLOCK] = rng.standard_normal(min(_BLOCK, flat.size - start), dtype=np.float32)
            feeds[name] = array
        else:
            feeds[name] = np.zeros(shape, dtype)
    return feeds
