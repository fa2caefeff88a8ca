"""COCO's run-length encoding of binary masks (the `segmentation` of COCO results), numpy only.

The format is pycocotools' (maskApi.c), written here from its definition so that predict needs no
compiled package: the mask is read column by column (Fortran order), the counts alternate runs of
0s and 1s starting with 0s (a mask starting with a 1 has a first count of 0), and the compressed
string stores each count, from the third on as the difference to the count two before, in 5-bit
groups, least significant first, each group + 48 as one ASCII character with 0x20 set while more
groups follow (0x10 of the last group is the sign). `decode` reads it back (tests hold the two
inverse); {"size": [H, W], "counts": str} is what pycocotools' `frPyObjects` / `decode` take.
"""

from __future__ import annotations

from typing import Dict, List, Union

import numpy as np


def run_lengths(mask: np.ndarray) -> List[int]:
    """The alternating 0/1 run lengths of a 2-D mask read column-major, starting with 0s."""
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    if flat.size == 0:
        return []
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    edges = np.concatenate(([0], changes, [flat.size]))
    counts = np.diff(edges).tolist()
    return ([0] + counts) if flat[0] else counts


def compress(counts: List[int]) -> str:
    """pycocotools' compressed string of run lengths."""
    chars = []
    for i, count in enumerate(counts):
        x = int(count) - (int(counts[i - 2]) if i > 2 else 0)
        more = True
        while more:
            c = x & 0x1F
            x >>= 5  # arithmetic shift: a negative difference ends at -1
            more = x != -1 if c & 0x10 else x != 0
            chars.append(chr((c | 0x20 if more else c) + 48))
    return "".join(chars)


def decompress(text: str) -> List[int]:
    """Run lengths from pycocotools' compressed string."""
    counts: List[int] = []
    p = 0
    while p < len(text):
        x, k, more = 0, 0, True
        while more:
            c = ord(text[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def encode(mask: np.ndarray) -> Dict[str, Union[List[int], str]]:
    """A 2-D binary mask as COCO's compressed RLE: {"size": [H, W], "counts": str}."""
    mask = np.asarray(mask)
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": compress(run_lengths(mask))}


def decode(rle: Dict) -> np.ndarray:
    """The H x W bool mask of an RLE (compressed string or a list of counts)."""
    height, width = (int(v) for v in rle["size"])
    counts = rle["counts"]
    counts = decompress(counts) if isinstance(counts, str) else [int(c) for c in counts]
    values = np.zeros(len(counts), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, counts)
    if flat.size != height * width:
        raise ValueError(f"the RLE's counts cover {flat.size} pixels, not {height} x {width}")
    return flat.reshape((height, width), order="F")


def bbox(mask: np.ndarray) -> List[float]:
    """COCO's [x, y, width, height] of the mask's pixels ([0, 0, 0, 0] for an empty mask)."""
    rows = np.flatnonzero(np.asarray(mask).any(axis=1))
    cols = np.flatnonzero(np.asarray(mask).any(axis=0))
    if rows.size == 0:
        return [0.0, 0.0, 0.0, 0.0]
    return [float(cols[0]), float(rows[0]), float(cols[-1] - cols[0] + 1), float(rows[-1] - rows[0] + 1)]
