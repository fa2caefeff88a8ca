"""Error statistics between a reference tensor and a candidate, in plain numpy.

Polygraphy's comparators answer "are these tensors close"; a segmentation deployment also needs
to know whether the labels changed, so argmax agreement is computed here for [N, C, H, W] logits.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional

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

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def relative_max_abs(self) -> float:
        """max |error| as a fraction of the reference's peak magnitude."""
        return self.max_abs / self.max_abs_reference if self.max_abs_reference > 0 else self.max_abs

    def to_dict(self) -> Dict:
        data = asdict(self)
        data["relative_max_abs"] = self.relative_max_abs
        data["passed"] = self.passed
        return data


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 and nb == 0.0:
        return 1.0
    if na == 0.0 or nb == 0.0:
        return 0.0
    return float(np.dot(a, b) / (na * nb))


def is_segmentation_logits(shape) -> bool:
    return len(shape) == 4 and shape[1] > 1


def compare_outputs(name: str, reference: np.ndarray, candidate: np.ndarray, budget: Budget) -> OutputParity:
    """Statistics of `candidate` against `reference` (both cast to float64) and budget verdicts."""
    if reference.shape != candidate.shape:
        raise ValueError(f"output {name!r}: reference shape {reference.shape} != candidate shape {candidate.shape}")
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
    cosine = _cosine(np.where(finite, ref, 0).ravel(), np.where(finite, cand, 0).ravel())
    agreement = None
    if is_segmentation_logits(ref.shape):
        agreement = float((ref.argmax(axis=1) == cand.argmax(axis=1)).mean())

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
    )
    result.failures = budget.violations(result)
    return result
