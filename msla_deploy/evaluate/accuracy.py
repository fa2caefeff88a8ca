"""Top-1 / top-k accuracy, running over the pass: upstream's metric (a picture is top-k correct when
its label is among the k classes of highest score), per class as well, and two backends' top-1
agreement and top-k overlap.

Any classification head is scored: logits or probs are ranked here (best first; a tie goes to the
lower class index, as argmax gives it), a topk head's indices are the ranking the graph made. A
picture whose scores are not all finite has no prediction: it counts as wrong, and is counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..tasks import TOPK, OutputKind

NO_CLASS = -1  # a picture without a prediction (its scores were NaN or infinite)
DISAGREEMENTS_LISTED = 10  # pictures named per backend pair where the top-1 classes differ
#: the outputs a ranking is read from, in order of preference (scores before the graph's own top-k)
RANKED_KINDS = (OutputKind.LOGITS, OutputKind.PROBS, OutputKind.TOPK_INDICES)


def scored_output(kinds: Mapping[str, str]) -> Tuple[str, str]:
    """(output name, kind) a session's outputs are ranked from; `kinds`: output name -> OutputKind."""
    for kind in RANKED_KINDS:
        name = next((n for n, k in kinds.items() if k == kind), None)
        if name is not None:
            return name, kind
    raise KeyError(f"no output of kind {', '.join(RANKED_KINDS)} among {sorted(kinds)}")


def ranked(scores: np.ndarray, k: int = TOPK) -> np.ndarray:
    """[N, C] scores -> [N, min(k, C)] class indices, best first (a tie: the lower index first);
    NO_CLASS throughout a row with a NaN or infinite score."""
    scores = np.asarray(scores)
    order = np.argsort(-scores, axis=1, kind="stable")[:, : min(k, scores.shape[1])]
    bad = ~np.isfinite(scores).all(axis=1)
    if bad.any():
        order = order.copy()
        order[bad] = NO_CLASS
    return order


def ranks_from(result: Mapping[str, np.ndarray], name: str, kind: str, kinds: Mapping[str, str], k: int = TOPK):
    """[N, <=k] ranked classes of one run's outputs: the scores ranked, or the topk head's indices
    (a row whose scores are not finite, or whose indices are not classes, has NO_CLASS)."""
    if kind != OutputKind.TOPK_INDICES:
        return ranked(result[name], k)
    indices = np.asarray(result[name])[:, :k].astype(np.int64)
    scores_name = next((n for n, kd in kinds.items() if kd == OutputKind.TOPK_SCORES), None)
    bad = np.zeros(len(indices), bool)
    if scores_name is not None and scores_name in result:
        bad |= ~np.isfinite(np.asarray(result[scores_name])).all(axis=1)
    if bad.any():
        indices = indices.copy()
        indices[bad] = NO_CLASS
    return indices


@dataclass
class AccuracyTally:
    """One backend's running counts: pictures, top-1 and top-k hits, per class."""

    num_classes: int
    k: int = TOPK
    images: np.ndarray = field(init=False, repr=False)
    top1: np.ndarray = field(init=False, repr=False)
    topk: np.ndarray = field(init=False, repr=False)
    nonfinite_pictures: int = 0  # pictures whose scores had a NaN or infinite value
    ranked_classes: Optional[int] = None  # classes in the narrowest ranking seen (a topk head: its k)

    def __post_init__(self) -> None:
        self.images = np.zeros(self.num_classes, np.int64)
        self.top1 = np.zeros(self.num_classes, np.int64)
        self.topk = np.zeros(self.num_classes, np.int64)

    def add(self, labels: np.ndarray, ranks: np.ndarray) -> None:
        labels = np.asarray(labels, np.int64)
        ranks = np.asarray(ranks)
        width = ranks.shape[1]
        self.ranked_classes = width if self.ranked_classes is None else min(self.ranked_classes, width)
        self.nonfinite_pictures += int(np.count_nonzero(ranks[:, 0] == NO_CLASS))
        hit1 = ranks[:, 0] == labels
        hitk = (ranks[:, : self.k] == labels[:, None]).any(axis=1)
        self.images += np.bincount(labels, minlength=self.num_classes)
        self.top1 += np.bincount(labels[hit1], minlength=self.num_classes)
        self.topk += np.bincount(labels[hitk], minlength=self.num_classes)

    @property
    def count(self) -> int:
        return int(self.images.sum())

    @property
    def topk_measured(self) -> bool:
        """Whether the rankings held the k best classes (a topk head of fewer classes cannot say top-k)."""
        return self.ranked_classes is not None and self.ranked_classes >= min(self.k, self.num_classes)

    def top1_accuracy(self) -> Optional[float]:
        return float(self.top1.sum()) / self.count if self.count else None

    def topk_accuracy(self) -> Optional[float]:
        return float(self.topk.sum()) / self.count if self.count and self.topk_measured else None

    def class_table(self, names: Optional[Sequence[str]]) -> List[Dict[str, Any]]:
        """One row per class with pictures: {class, name, images, top1, top5} (fractions)."""
        rows = []
        for c in np.flatnonzero(self.images):
            n = int(self.images[c])
            rows.append(
                {
                    "class": int(c),
                    "name": names[c] if names is not None and c < len(names) else None,
                    "images": n,
                    "top1": int(self.top1[c]) / n,
                    # named as the backend's own top-5 field (k is TOPK, 5, everywhere it is built)
                    f"top{self.k}": int(self.topk[c]) / n if self.topk_measured else None,
                }
            )
        return rows


@dataclass
class AgreementTally:
    """A candidate backend's rankings against the reference backend's, over the pass."""

    reference: str
    candidate: str
    k: int = TOPK
    images: int = 0
    top1_same: int = 0
    overlap: float = 0.0  # sum over pictures of |top-k(reference) & top-k(candidate)| / k
    differing: List[str] = field(default_factory=list)  # the first pictures whose top-1 differ
    differing_count: int = 0

    def add(self, names: Sequence[str], reference: np.ndarray, candidate: np.ndarray) -> None:
        k = min(self.k, reference.shape[1], candidate.shape[1])
        same = (reference[:, 0] == candidate[:, 0]) & (reference[:, 0] != NO_CLASS)
        self.images += len(names)
        self.top1_same += int(same.sum())
        for ref, cand in zip(reference[:, :k], candidate[:, :k]):
            self.overlap += len(set(ref.tolist()) & set(cand.tolist()) - {NO_CLASS}) / k
        for i in np.flatnonzero(~same):
            self.differing_count += 1
            if len(self.differing) < DISAGREEMENTS_LISTED:
                self.differing.append(names[i])

    def top1_agreement(self) -> Optional[float]:
        return self.top1_same / self.images if self.images else None

    def topk_overlap(self) -> Optional[float]:
        return self.overlap / self.images if self.images else None
