"""Error statistics between a reference tensor and a candidate, in plain numpy.

Polygraphy's comparators answer "are these tensors close"; a segmentation deployment also needs
to know whether the labels changed, so argmax agreement, prediction-vs-prediction mIoU and the
per-class IoU are computed here for [N, C, H, W] logits, and for integer label maps ([N, H, W],
the `labels` output of `export --head labels|both`), where only agreement and mIoU mean anything. `validate` passes in the statistics
Polygraphy measured (`measured=`) and this module adds what Polygraphy lacks; `export` (which
must not depend on Polygraphy) lets numpy measure everything.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Dict, List, Mapping, Optional

import numpy as np

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
    return (f"the reference predicts class {top} on {100 * share:.2f}% of its pixels: label agreement and mIoU are vacuous here "
            "(random weights or featureless inputs?); " + ("a labels output has no error to judge instead: export --head both for the logits' "
            if labels_only else "judge by the error and cosine, ") + "or add real pictures with trained weights")


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 and nb == 0.0:
        return 1.0
    if na == 0.0 or nb == 0.0:
        return 0.0
    return float(np.dot(a, b) / (na * nb))


def is_segmentation_logits(shape) -> bool:
    return len(shape) == 4 and shape[1] > 1


# The relative-error floor, as a fraction of the reference's peak magnitude: logits cross zero, and
# an error of 1e-6 on a logit of 1e-9 says nothing about the model.
REL_FLOOR_OF_PEAK = 1e-3

# Statistics a caller may hand in (measured by another tool on the same arrays).
MEASURABLE = ("max_abs", "mean_abs", "p99_abs", "cosine")


def class_iou(ref_labels: np.ndarray, cand_labels: np.ndarray, num_classes: int) -> List[Dict]:
    """Per class: pixels in each prediction and the IoU of the candidate's mask against the
    reference's (None where the class is in neither). `change` is 1 - IoU: how much of the
    class's area moved."""
    pairs = ref_labels.astype(np.int64).ravel() * num_classes + cand_labels.astype(np.int64).ravel()
    confusion = np.bincount(pairs, minlength=num_classes * num_classes).reshape(num_classes, num_classes)
    inter = np.diag(confusion)
    ref_pixels, cand_pixels = confusion.sum(axis=1), confusion.sum(axis=0)
    rows = []
    for c in range(num_classes):
        union = int(ref_pixels[c] + cand_pixels[c] - inter[c])
        iou = float(inter[c] / union) if union else None
        rows.append({
            "class": c,
            "reference_pixels": int(ref_pixels[c]),
            "candidate_pixels": int(cand_pixels[c]),
            "iou": iou,
            "change": None if iou is None else 1.0 - iou,
        })
    return rows


def mean_iou(rows: List[Dict]) -> float:
    present = [r["iou"] for r in rows if r["iou"] is not None]
    return float(np.mean(present)) if present else 1.0


def is_label_map(array: np.ndarray) -> bool:
    return np.issubdtype(array.dtype, np.integer)


def _compare_labels(name: str, ref: np.ndarray, cand: np.ndarray, budget: Budget) -> OutputParity:
    """Labels against labels: the fraction of equal pixels, and the candidate's mIoU against the
    reference taken as ground truth. Candidate values outside the reference's classes (a broken
    engine) count as wrong, in a bucket of their own."""
    ref = ref.astype(np.int64)
    cand = cand.astype(np.int64)
    num_classes = int(max(ref.max(initial=0), 0)) + 1
    invalid = (cand < 0) | (cand >= num_classes)
    rows = class_iou(np.clip(ref, 0, num_classes - 1), np.where(invalid, num_classes, cand), num_classes + 1)[:num_classes]
    none = None  # no error magnitudes between labels: reports show "-"
    counts = np.bincount(np.clip(ref, 0, num_classes - 1).ravel(), minlength=num_classes)
    result = OutputParity(
        name=name, shape=list(ref.shape), max_abs=none, mean_abs=none, p99_abs=none, max_abs_reference=none, cosine=none,
        nan_count=0, inf_count=0, reference_nonfinite=0,
        argmax_agreement=float((ref == cand).mean()) if ref.size else 1.0,
        miou=mean_iou(rows), class_iou=rows, labels=True,
        dominant_class=int(counts.argmax()), dominant_class_share=float(counts.max() / max(counts.sum(), 1)),
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
) -> OutputParity:
    """Statistics of `candidate` against `reference` (both cast to float64) and budget verdicts.

    `measured` replaces any of MEASURABLE with values another tool (`measured_by`) computed on the
    same two arrays, so a report shows that tool's numbers rather than a second opinion.
    Integer label maps are compared as labels (agreement, mIoU); `measured` is not used for them.
    """
    if reference.shape != candidate.shape:
        raise ValueError(f"output {name!r}: reference shape {reference.shape} != candidate shape {candidate.shape}")
    if is_label_map(reference):
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
    if is_segmentation_logits(ref.shape):
        # NaN logits make argmax meaningless (numpy picks the NaN); count them as disagreement
        ref_labels = ref.argmax(axis=1)
        cand_labels = np.where(np.isfinite(cand).all(axis=1), cand.argmax(axis=1), -1)
        agreement = float((ref_labels == cand_labels).mean())
        num_classes = ref.shape[1]
        # IoU needs a class for every pixel: give label-less pixels one that is surely wrong
        surely_wrong = (ref_labels + 1) % num_classes
        rows = class_iou(ref_labels, np.where(cand_labels < 0, surely_wrong, cand_labels), num_classes)
        miou = mean_iou(rows)
        counts = np.bincount(ref_labels.ravel(), minlength=num_classes)
        dominant, dominant_share = int(counts.argmax()), float(counts.max() / max(counts.sum(), 1))
        vacuous = vacuous_labels_note(counts)
    else:
        dominant = dominant_share = vacuous = None
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
    )
    result.failures = budget.violations(result)
    return result
