"""COCO's run-length encoding of binary masks (the `segmentation` of COCO results), by pycocotools.

The format: the mask read column by column (Fortran order), the counts alternating runs of 0s and
1s starting with 0s, compressed into a string of 5-bit groups (pycocotools' maskApi.c). pycocotools
is a base dependency (evaluate reads COCO masks with it); these wrappers give its byte strings as
text (JSON has no bytes) for every place that writes a mask as COCO RLE: predict --prompts and
--everything, segment-everything's records, evaluate's --save-predictions, the procedural COCO sets.
"""

from __future__ import annotations

from typing import Dict, List, Union

import numpy as np


def encode(mask: np.ndarray) -> Dict[str, Union[List[int], str]]:
    """A 2-D binary mask as COCO's compressed RLE: {"size": [H, W], "counts": str}."""
    from pycocotools import mask as coco_mask

    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"a mask is 2-D, not {list(mask.shape)}")
    encoded = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": str(encoded["counts"], "ascii")}


def decode(rle: Dict) -> np.ndarray:
    """The H x W bool mask of an RLE (a compressed string or a list of counts)."""
    from pycocotools import mask as coco_mask

    height, width = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, str):
        compressed = {"size": [height, width], "counts": counts.encode("ascii")}
    else:
        counts = [int(c) for c in counts]
        if sum(counts) != height * width:
            raise ValueError(f"the RLE's counts cover {sum(counts)} pixels, not {height} x {width}")
        compressed = coco_mask.frPyObjects({"size": [height, width], "counts": counts}, height, width)
    return coco_mask.decode(compressed).astype(bool)


def bbox(mask: np.ndarray) -> List[float]:
    """COCO's [x, y, width, height] of the mask's pixels ([0, 0, 0, 0] for an empty mask)."""
    rows = np.flatnonzero(np.asarray(mask).any(axis=1))
    cols = np.flatnonzero(np.asarray(mask).any(axis=0))
    if rows.size == 0:
        return [0.0, 0.0, 0.0, 0.0]
    return [float(cols[0]), float(rows[0]), float(cols[-1] - cols[0] + 1), float(rows[-1] - rows[0] + 1)]
