"""Running confusion matrices: memory stays one C x C table however many images pass.

Upstream sums the per-class intersection and union over the whole set and takes their class
mean; a class with no pixel in the labels nor in the predictions (union 0) has no IoU and is left
out of the mean (upstream's Cityscapes val has every class, so the two agree there).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np

from ..classes import IGNORE_INDEX


class Confusion:
    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.matrix = np.zeros((num_classes, num_classes), np.int64)  # [truth, prediction]

    def add(self, truth: np.ndarray, prediction: np.ndarray) -> None:
        """Count the pixels whose truth is a class (ignore pixels count for nothing).

        One combined index truth * C + prediction and one bincount, no mask: an ignored truth
        (IGNORE_INDEX, above every class) lands past the C x C cells and is cut off with them."""
        c = self.num_classes
        if c > IGNORE_INDEX:  # the ignore value would be a class: count with a mask
            valid = truth.reshape(-1) != IGNORE_INDEX
            index = truth.reshape(-1)[valid].astype(np.int64) * c + prediction.reshape(-1)[valid]
            self.matrix += np.bincount(index, minlength=c * c).reshape(c, c)
            return
        index = truth.reshape(-1).astype(np.intp)
        index *= c
        index += prediction.reshape(-1)
        counts = np.bincount(index, minlength=(IGNORE_INDEX + 1) * c)
        if counts.size > (IGNORE_INDEX + 1) * c or counts[c * c : IGNORE_INDEX * c].any():
            raise ValueError(f"a truth or prediction is out of range for {c} classes")  # the readers refuse such labels
        self.matrix += counts[: c * c].reshape(c, c)

    @property
    def intersection(self) -> np.ndarray:
        return np.diag(self.matrix)

    @property
    def union(self) -> np.ndarray:
        return self.matrix.sum(axis=0) + self.matrix.sum(axis=1) - self.intersection

    def iou(self) -> List[Optional[float]]:
        inter, union = self.intersection, self.union
        return [float(i / u) if u > 0 else None for i, u in zip(inter, union)]

    def miou(self) -> Optional[float]:
        values = [v for v in self.iou() if v is not None]
        return float(np.mean(values)) if values else None

    def pixel_accuracy(self) -> Optional[float]:
        total = int(self.matrix.sum())
        return float(self.intersection.sum() / total) if total else None

    def class_table(self, names: Optional[Sequence[str]] = None) -> List[Dict]:
        truth_pixels = self.matrix.sum(axis=1)
        predicted_pixels = self.matrix.sum(axis=0)
        rows = []
        for c, value in enumerate(self.iou()):
            rows.append(
                {
                    "class": c,
                    "name": names[c] if names else None,
                    "iou": value,
                    "label_pixels": int(truth_pixels[c]),
                    "predicted_pixels": int(predicted_pixels[c]),
                }
            )
        return rows
