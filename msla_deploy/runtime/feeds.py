"""Inputs for a model when no real ones are needed (timing, warm-up)."""

from __future__ import annotations

from typing import Dict, Tuple

import numpy as np


def random_feeds(specs: Dict[str, Tuple[Tuple[int, ...], object]], seed: int = 0) -> Dict[str, np.ndarray]:
    """Normal noise, like a normalised picture: latency does not depend on the values (no
    data-dependent control flow in these models), but NaN-free inputs keep every kernel honest."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for name, (shape, dtype) in specs.items():
        if np.issubdtype(np.dtype(dtype), np.floating):
            feeds[name] = rng.standard_normal(shape).astype(dtype)
        else:
            feeds[name] = np.zeros(shape, dtype)
    return feeds
