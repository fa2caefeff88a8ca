"""Confusion matrices and IoU: the one implementation, for evaluate (predictions against ground
truth labels) and for parity (validate and export: a candidate's labels against the reference's).

Memory stays one C x C table however many pictures pass. The semantics, one for every caller
(docs/metrics.md says the same in prose):

- Pixels are counted as [truth, prediction]. A truth equal to the ignore value counts for nothing
  (evaluate: IGNORE_INDEX, where the dataset marks "no class"; parity passes `ignore_index=None`,
  every pixel of a reference counts). A truth outside the classes is an error (the readers refuse
  such labels before they get here).
- A pixel with no predicted class (NO_LABEL: its logits are not all finite, see `labels_of`; or a
  label outside the classes, as a broken engine may give) counts against its truth class: in that
  class's union, never in an intersection, and not as a class of its own.
- IoU of a class = intersection / union, each summed over every pixel seen (upstream's protocol,
  not a mean of per-picture IoUs). A class with an empty union (in neither the truth nor the
  predictions) has no IoU (None) and is left out of the mean: it is not counted as 0 nor as 1.
- mIoU = the mean IoU over the classes that have one; None when none has (nothing was scored:
  no pixel, or every pixel ignored). An empty comparison proves nothing, so it is never 1.0.
- With one class, its IoU is correct / (truth + predicted - correct): 1.0 when every pixel
  agrees, less when some have no label.
- Pixel accuracy = correct / scored pixels; None when no pixel was scored.

Upstream's Cityscapes val has every class, so leaving absent classes out agrees with it there.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np

from .classes import IGNORE_INDEX

#: the label of a pixel that has no class (its logits are NaN or infinite)
NO_LABEL = -1


def labels_of(logits: np.ndarray, axis: int = 1) -> np.ndarray:
    """The argmax over the class `axis` (ties to the first class, as torch and numpy do), with
    NO_LABEL where a pixel's logits are not all finite: numpy's argmax would pick the NaN."""
    labels = logits.argmax(axis=axis)
    finite = np.isfinite(logits).all(axis=axis)
    return labels if finite.all() else np.where(finite, labels, NO_LABEL)


class Confusion:
    def __init__(self, num_classes: int, ignore_index: Optional[int] = IGNORE_INDEX) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = np.zeros((num_classes, num_classes), np.int64)  # [truth, prediction]
        self.unlabelled = np.zeros(num_classes, np.int64)  # per truth class: pixels predicted as no class

    def add(self, truth: np.ndarray, prediction: np.ndarray) -> None:
        """Count the pixels whose truth is a class.

        One combined index truth * (C + 1) + 1 + prediction and one bincount: in each truth's
        row, column 0 counts the pixels with no class (NO_LABEL), columns 1..C the classes. Where
        the ignore value lies above every class, an ignored truth lands past the C rows and is
        cut off with them, without a mask."""
        c, ignore = self.num_classes, self.ignore_index
        cols = c + 1
        t, p = truth.reshape(-1), prediction.reshape(-1)
        if p.dtype.kind not in "iu":  # labels held as floats
            p = p.astype(np.intp)
        if p.size and (p.min() < NO_LABEL or p.max() >= c):  # a broken engine's labels: no class
            p = np.where((p < 0) | (p >= c), NO_LABEL, p)
        if ignore is None or ignore < c:  # every pixel counts, or the ignore value is a class number
            if ignore is not None and t.size and (t == ignore).any():  # a mask (a copy) only if needed
                keep = t != ignore
                t, p = t[keep], p[keep]
            rows = c
        else:
            rows = ignore + 1
        if np.issubdtype(t.dtype, np.signedinteger) and t.size and t.min() < 0:
            raise ValueError(f"a truth is out of range for {c} classes")
        index = t.astype(np.intp)
        index *= cols
        index += p
        index += 1
        counts = np.bincount(index, minlength=rows * cols)
        if counts.size > rows * cols or counts[c * cols : (rows - 1) * cols].any():  # a truth in C..ignore-1 or past it
            raise ValueError(f"a truth is out of range for {c} classes")
        grid = counts[: c * cols].reshape(c, cols)
        self.matrix += grid[:, 1:]
        self.unlabelled += grid[:, 0]

    @property
    def intersection(self) -> np.ndarray:
        return np.diag(self.matrix)

    @property
    def truth_pixels(self) -> np.ndarray:
        return self.matrix.sum(axis=1) + self.unlabelled

    @property
    def predicted_pixels(self) -> np.ndarray:
        return self.matrix.sum(axis=0)

    @property
    def union(self) -> np.ndarray:
        return self.truth_pixels + self.predicted_pixels - self.intersection

    def iou(self) -> List[Optional[float]]:
        inter, union = self.intersection, self.union
        return [float(i / u) if u > 0 else None for i, u in zip(inter, union)]

    def miou(self) -> Optional[float]:
        values = [v for v in self.iou() if v is not None]
        return float(np.mean(values)) if values else None

    def pixel_accuracy(self) -> Optional[float]:
        total = int(self.truth_pixels.sum())
        return float(self.intersection.sum() / total) if total else None

    def class_table(self, names: Optional[Sequence[str]] = None) -> List[Dict]:
        """evaluate's per-class rows (report.json's `class_iou`)."""
        truth_pixels, predicted_pixels = self.truth_pixels, self.predicted_pixels
        return [
            {
                "class": c,
                "name": names[c] if names else None,
                "iou": value,
                "label_pixels": int(truth_pixels[c]),
                "predicted_pixels": int(predicted_pixels[c]),
            }
            for c, value in enumerate(self.iou())
        ]
