"""Error statistics between a reference tensor and a candidate, in plain numpy.

Polygraphy's comparators answer "are these tensors close"; a deployment also needs to know
whether the answers changed. For segmentation: argmax agreement, prediction-vs-prediction mIoU and
the per-class IoU of [N, C, H, W] logits, and of integer label maps ([N, H, W], the `labels` output
of `export --head labels|both`), where only agreement and mIoU mean anything. For classification:
top-1 agreement (the argmax over the classes, per picture) and top-5 overlap of [N, C] logits or
probabilities, and of a topk head's [N, k] indices, where only those two mean anything (its
scores are compared as numbers).
`validate` passes in the statistics Polygraphy measured (`measured=`) and this module adds what
Polygraphy lacks; `export` (which must not depend on Polygraphy) lets numpy measure everything.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Dict, List, Mapping, Optional

import numpy as np

from ..iou import NO_LABEL, Confusion, labels_of
from ..tasks import TOPK_SCORES_NAME, OutputKind
from .budgets import Budget


@dataclass
class OutputParity:
    name: str
    shape: List[int]
    max_abs: float
    mean_abs: float
    p99_abs: float
    max_abs_reference: float
    cosine: float
    nan_count: int
    inf_count: int
    reference_nonfinite: int
    argmax_agreement: Optional[float]  # fraction of pixels with the same label; None if not logits
    failures: List[str] = field(default_factory=list)
    # max |error| / max(|reference|, rel_floor): a relative error that near-zero logits cannot blow up
    max_rel: Optional[float] = None
    rel_floor: Optional[float] = None
    # labels of the candidate scored against the reference's labels (1.0: identical predictions)
    miou: Optional[float] = None
    class_iou: Optional[List[Dict]] = None
    # which tool measured which statistic (statistics not listed: numpy, here)
    measured_by: Dict[str, str] = field(default_factory=dict)
    # an integer label map: judged by agreement and mIoU only (error magnitudes and cosine are None)
    labels: bool = False
    # the class the reference predicts most and its share of the pixels: near 1.0, label
    # agreement and mIoU are vacuous (random weights often predict one class everywhere)
    dominant_class: Optional[int] = None
    dominant_class_share: Optional[float] = None
    vacuous_note: Optional[str] = None
    # classification: the mean share of the reference's top-5 classes that are also the candidate's
    topk_overlap: Optional[float] = None
    # classification: reference pictures left out of top-1 agreement as near-ties (Budget.near_tie)
    near_ties: Optional[int] = None
    # SAM's mask logits: the IoU of each binarised mask (logits > 0) with the reference's, mean and worst
    mask_iou: Optional[float] = None
    mask_iou_min: Optional[float] = None
    kind: Optional[str] = None  # the task's OutputKind where the caller said (None: told by the shape)

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def relative_max_abs(self) -> Optional[float]:
        """max |error| as a fraction of the reference's peak magnitude."""
        if self.labels:
            return None
        return self.max_abs / self.max_abs_reference if self.max_abs_reference > 0 else self.max_abs

    def to_dict(self) -> Dict:
        data = asdict(self)
        data["relative_max_abs"] = self.relative_max_abs
        data["passed"] = self.passed
        return data


#: share of the reference's pixels one class may take before label agreement is called vacuous
VACUOUS_SHARE = 0.99


def vacuous_labels_note(label_counts: np.ndarray, labels_only: bool = False) -> Optional[str]:
    """A note when the reference (nearly) predicts one class: then "argmax agreement 100%" and
    "mIoU 1.0" say nothing about the model, only the error and cosine statistics do (of the
    logits: a labels output has none)."""
    total = int(label_counts.sum())
    if not total:
        return None
    top = int(label_counts.argmax())
    share = label_counts[top] / total
    if share < VACUOUS_SHARE:
        return None
    return (
        f"the reference predicts class {top} on {100 * share:.2f}% of its pixels: label agreement and mIoU are "
        "vacuous here "
        "(random weights or featureless inputs?); "
        + (
            "a labels output has no error to judge instead: export --head both for the logits' "
            if labels_only
            else "judge by the error and cosine, "
        )
        + "or add real pictures with trained weights"
    )


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """The cosine of the angle between two tensors, flattened and in float64: the one cosine of
    the project (validate, export's checks, the drift localizer, int8 sensitivity).

    - NaN when either tensor holds a NaN or an infinity: there is no angle to speak of, and a
      check `cosine >= limit` then fails (never a reassuring 1.0 over broken values);
    - 1.0 when both are all zeros (they are identical), 0.0 when exactly one is (nothing in
      common), rather than 0 / 0;
    - otherwise dot / (|a| |b|), clipped to [-1, 1] (rounding can step past 1 for identical tensors).
    """
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return float("nan")
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 and nb == 0.0:
        return 1.0
    if na == 0.0 or nb == 0.0:
        return 0.0
    return float(np.clip(np.dot(a, b) / (na * nb), -1.0, 1.0))


#: SAM's outputs: numbers with no classes to argmax (compare_outputs' `kind`)
_CLASSLESS_KINDS = (OutputKind.EMBEDDINGS, OutputKind.MASK_LOGITS, OutputKind.MASK_SCORES)


def mask_ious(ref: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """The IoU of each binarised mask (logits > 0; NaN is outside) of [..., H, W] logits: SAM's
    masks are what a user gets, and a mask both leave empty is identical (1.0)."""
    a = (ref > 0).reshape(-1, ref.shape[-2] * ref.shape[-1])
    b = (cand > 0).reshape(-1, cand.shape[-2] * cand.shape[-1])
    union = np.logical_or(a, b).sum(axis=1)
    inter = np.logical_and(a, b).sum(axis=1)
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def is_segmentation_logits(shape) -> bool:
    return len(shape) == 4 and shape[1] > 1


def is_class_scores(name: str, shape) -> bool:
    """[N, C] logits or probabilities of a classifier (not the sorted scores of a topk head)."""
    return len(shape) == 2 and shape[1] > 1 and name != TOPK_SCORES_NAME


#: how many best classes the top-k overlap compares (upstream's evaluation reports top-5)
OVERLAP_K = 5


def topk_overlap(ref_top: np.ndarray, cand_top: np.ndarray) -> Optional[float]:
    """[N, k] class indices, best first: the mean fraction of each row's reference classes that
    the candidate's row has too (order aside). None without a row."""
    if not len(ref_top):
        return None
    shared = [len(set(r.tolist()) & set(c.tolist())) / len(r) for r, c in zip(ref_top, cand_top)]
    return float(np.mean(shared))


def top_classes(scores: np.ndarray, k: int) -> np.ndarray:
    """[N, C] -> [N, k] indices of the k highest scores, best first (stable: ties to the lower
    index, as argmax); a row with a non-finite score gets NO_LABEL everywhere (it has no ranking)."""
    k = min(k, scores.shape[1])
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    finite = np.isfinite(scores).all(axis=1)
    return order if finite.all() else np.where(finite[:, None], order, NO_LABEL)


def _classes_vacuous_note(counts: np.ndarray, labels_only: bool) -> Optional[str]:
    total = int(counts.sum())
    if total < 2 or counts.max() / total < VACUOUS_SHARE:
        return None
    return (
        f"the reference gives every picture class {int(counts.argmax())}: top-1 agreement is vacuous here and not "
        "judged (random weights?); " + ("the topk scores judge" if labels_only else "the error and cosine judge")
    )


def decisive_pictures(scores: Optional[np.ndarray], near_tie: float, pictures: int) -> np.ndarray:
    """Which pictures the reference answers clearly: its best two scores further apart than
    `near_tie` x the picture's peak |score| (all of them without scores or with one class)."""
    if scores is None or scores.shape[1] < 2:
        return np.ones(pictures, bool)
    scores = scores.astype(np.float64)
    best_two = -np.sort(-scores, axis=1)[:, :2]
    peak = np.abs(scores).max(axis=1)
    # a non-finite reference row is judged (it disagrees with everything)
    return ~((best_two[:, 0] - best_two[:, 1] <= near_tie * peak) & np.isfinite(scores).all(axis=1))


def _class_statistics(ref_top: np.ndarray, cand_top: np.ndarray, labels_only: bool, decisive: np.ndarray) -> Dict:
    """Top-1 agreement (over the decisive pictures), top-5 overlap and the dominant class of [N, k]
    rankings (best first)."""
    ref_first = ref_top[:, 0]
    counts = np.bincount(ref_first[ref_first >= 0], minlength=1)
    same = (ref_first == cand_top[:, 0]) & (ref_first != NO_LABEL)
    return {
        "argmax_agreement": _agreement(same[decisive]),
        "near_ties": int((~decisive).sum()),
        "topk_overlap": topk_overlap(ref_top, cand_top),
        "dominant_class": int(counts.argmax()),
        "dominant_class_share": float(counts.max() / max(counts.sum(), 1)),
        "vacuous_note": _classes_vacuous_note(counts, labels_only),
    }


def _compare_topk_indices(
    name: str, ref: np.ndarray, cand: np.ndarray, budget: Budget, reference_scores: Optional[np.ndarray]
) -> OutputParity:
    """A topk head's [N, k] indices against the reference's: top-1 agreement (near-ties judged by
    the head's reference scores, when given) and top-k overlap."""
    decisive = decisive_pictures(reference_scores, budget.near_tie, len(ref))
    stats = _class_statistics(ref.astype(np.int64), cand.astype(np.int64), True, decisive)
    result = OutputParity(
        name=name,
        shape=list(ref.shape),
        max_abs=None,
        mean_abs=None,
        p99_abs=None,
        max_abs_reference=None,
        cosine=None,
        nan_count=0,
        inf_count=0,
        reference_nonfinite=0,
        labels=True,
        **stats,
    )
    result.failures = budget.violations(result)
    return result


# The relative-error floor, as a fraction of the reference's peak magnitude: logits cross zero, and
# an error of 1e-6 on a logit of 1e-9 says nothing about the model.
REL_FLOOR_OF_PEAK = 1e-3

# Statistics a caller may hand in (measured by another tool on the same arrays).
MEASURABLE = ("max_abs", "mean_abs", "p99_abs", "cosine")


def class_rows(confusion: Confusion) -> List[Dict]:
    """Per class: pixels in each prediction and the IoU of the candidate's mask against the
    reference's (None where the class is in neither). `change` is 1 - IoU: how much of the
    class's area moved."""
    rows = []
    for c, (iou, ref_pixels, cand_pixels) in enumerate(
        zip(confusion.iou(), confusion.truth_pixels, confusion.predicted_pixels)
    ):
        rows.append(
            {
                "class": c,
                "reference_pixels": int(ref_pixels),
                "candidate_pixels": int(cand_pixels),
                "iou": iou,
                "change": None if iou is None else 1.0 - iou,
            }
        )
    return rows


def label_confusion(ref_labels: np.ndarray, cand_labels: np.ndarray, num_classes: int) -> Confusion:
    """The candidate's labels scored against the reference's (iou.py's semantics):
    every reference pixel counts except those with no label; a candidate pixel with no label
    (NaN logits) or outside the classes counts as wrong."""
    confusion = Confusion(num_classes, ignore_index=NO_LABEL)
    confusion.add(ref_labels, cand_labels)
    return confusion


def class_iou(ref_labels: np.ndarray, cand_labels: np.ndarray, num_classes: int) -> List[Dict]:
    return class_rows(label_confusion(ref_labels, cand_labels, num_classes))


def _agreement(same: np.ndarray) -> Optional[float]:
    """The fraction of pixels with the same label; None without a pixel (like mIoU: nothing to judge)."""
    return float(same.mean()) if same.size else None


def is_label_map(array: np.ndarray) -> bool:
    return np.issubdtype(array.dtype, np.integer)


def _compare_labels(name: str, ref: np.ndarray, cand: np.ndarray, budget: Budget) -> OutputParity:
    """Labels against labels: the fraction of equal pixels, and the candidate's mIoU against the
    reference taken as ground truth. Candidate values outside the reference's classes (a broken
    engine) count as wrong, in a bucket of their own."""
    ref = ref.astype(np.int64)
    cand = cand.astype(np.int64)
    num_classes = int(max(ref.max(initial=0), 0)) + 1
    confusion = label_confusion(np.clip(ref, 0, num_classes - 1), cand, num_classes)
    none = None  # no error magnitudes between labels: reports show "-"
    counts = np.bincount(np.clip(ref, 0, num_classes - 1).ravel(), minlength=num_classes)
    result = OutputParity(
        name=name,
        shape=list(ref.shape),
        max_abs=none,
        mean_abs=none,
        p99_abs=none,
        max_abs_reference=none,
        cosine=none,
        nan_count=0,
        inf_count=0,
        reference_nonfinite=0,
        argmax_agreement=_agreement(ref == cand),
        miou=confusion.miou(),
        class_iou=class_rows(confusion),
        labels=True,
        dominant_class=int(counts.argmax()),
        dominant_class_share=float(counts.max() / max(counts.sum(), 1)),
        vacuous_note=vacuous_labels_note(counts, labels_only=True),
    )
    result.failures = budget.violations(result)
    return result


def compare_outputs(
    name: str,
    reference: np.ndarray,
    candidate: np.ndarray,
    budget: Budget,
    measured: Optional[Mapping[str, float]] = None,
    measured_by: str = "",
    reference_scores: Optional[np.ndarray] = None,
    kind: Optional[str] = None,
) -> OutputParity:
    """Statistics of `candidate` against `reference` (both cast to float64) and budget verdicts.

    `measured` replaces any of MEASURABLE with values another tool (`measured_by`) computed on the
    same two arrays, so a report shows that tool's numbers rather than a second opinion.
    Integer label maps are compared as labels (agreement, mIoU); `measured` is not used for them.
    A topk head's indices take the head's reference scores (`reference_scores`) to tell near-ties.
    `kind` (tasks.OutputKind) says what the output is where its shape cannot: SAM's embeddings,
    masks and IoU predictions have no classes (masks are judged by their binarised IoU).
    """
    if reference.shape != candidate.shape:
        raise ValueError(f"output {name!r}: reference shape {reference.shape} != candidate shape {candidate.shape}")
    if is_label_map(reference):
        if reference.ndim == 2:  # [N, k]: a classifier's topk indices
            return _compare_topk_indices(name, reference, candidate, budget, reference_scores)
        return _compare_labels(name, reference, candidate, budget)
    ref = reference.astype(np.float64)
    cand = candidate.astype(np.float64)
    nan_count = int(np.isnan(cand).sum())
    inf_count = int(np.isinf(cand).sum())
    finite = np.isfinite(cand) & np.isfinite(ref)
    err = np.abs(ref - cand)[finite]
    if err.size:
        max_abs, mean_abs, p99_abs = float(err.max()), float(err.mean()), float(np.quantile(err, 0.99))
    else:
        max_abs = mean_abs = p99_abs = float("nan")
    max_ref = float(np.abs(ref[np.isfinite(ref)]).max()) if np.isfinite(ref).any() else 0.0
    # over non-finite values a cosine means nothing; NaN rather than a reassuring 1.0
    cosine = cosine_similarity(ref.ravel(), cand.ravel()) if finite.all() else float("nan")
    floor = max(REL_FLOOR_OF_PEAK * max_ref, np.finfo(np.float64).tiny)
    rel = err / np.maximum(np.abs(ref[finite]), floor)
    max_rel = float(rel.max()) if rel.size else float("nan")
    agreement = miou = rows = None
    classless = kind in _CLASSLESS_KINDS
    if is_segmentation_logits(ref.shape) and not classless:
        # NaN logits make argmax meaningless (numpy picks the NaN): such pixels have no label, and a
        # reference pixel without one agrees with nothing
        ref_labels, cand_labels = labels_of(ref), labels_of(cand)
        agreement = _agreement((ref_labels == cand_labels) & (ref_labels != NO_LABEL))
        num_classes = ref.shape[1]
        confusion = label_confusion(ref_labels, cand_labels, num_classes)
        rows, miou = class_rows(confusion), confusion.miou()
        counts = confusion.truth_pixels
        dominant, dominant_share = int(counts.argmax()), float(counts.max() / max(counts.sum(), 1))
        vacuous = vacuous_labels_note(counts)
    else:
        dominant = dominant_share = vacuous = None
    overlap = near_ties = None
    if is_class_scores(name, ref.shape) and not classless:
        decisive = decisive_pictures(ref, budget.near_tie, len(ref))
        stats = _class_statistics(top_classes(ref, OVERLAP_K), top_classes(cand, OVERLAP_K), False, decisive)
        agreement, overlap, near_ties = stats["argmax_agreement"], stats["topk_overlap"], stats["near_ties"]
        dominant, dominant_share, vacuous = (
            stats["dominant_class"],
            stats["dominant_class_share"],
            stats["vacuous_note"],
        )
    mask_iou = mask_iou_min = None
    if kind == OutputKind.MASK_LOGITS:
        ious = mask_ious(reference, candidate)
        mask_iou, mask_iou_min = float(ious.mean()), float(ious.min())
    sources: Dict[str, str] = {}
    if measured:
        unknown = set(measured) - set(MEASURABLE)
        if unknown:
            raise ValueError(f"cannot take {sorted(unknown)} from {measured_by or 'another tool'}")
        values = {"max_abs": max_abs, "mean_abs": mean_abs, "p99_abs": p99_abs, "cosine": cosine}
        values.update({k: float(v) for k, v in measured.items()})
        max_abs, mean_abs, p99_abs, cosine = (values[k] for k in MEASURABLE)
        sources = {k: measured_by or "caller" for k in measured}

    result = OutputParity(
        name=name,
        shape=list(ref.shape),
        max_abs=max_abs,
        mean_abs=mean_abs,
        p99_abs=p99_abs,
        max_abs_reference=max_ref,
        cosine=cosine,
        nan_count=nan_count,
        inf_count=inf_count,
        reference_nonfinite=int((~np.isfinite(ref)).sum()),
        argmax_agreement=agreement,
        max_rel=max_rel,
        rel_floor=floor,
        miou=miou,
        class_iou=rows,
        measured_by=sources,
        dominant_class=dominant,
        dominant_class_share=dominant_share,
        vacuous_note=vacuous,
        topk_overlap=overlap,
        near_ties=near_ties,
        mask_iou=mask_iou,
        mask_iou_min=mask_iou_min,
        kind=kind,
    )
    result.failures = budget.violations(result)
    return result
