"""What "close enough" means, per precision. Defaults are documented in the README."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Dict, List, Optional

if TYPE_CHECKING:
    from .metrics import OutputParity


@dataclass(frozen=True)
class Budget:
    # max |error| <= max_abs_rel * max |reference| + max_abs_floor
    max_abs_rel: Optional[float]
    max_abs_floor: float
    min_cosine: float
    min_argmax_agreement: float  # fraction of pixels, only for segmentation logits
    allow_nonfinite: bool = False

    def violations(self, p: "OutputParity") -> List[str]:
        out = []
        if not self.allow_nonfinite and (p.nan_count or p.inf_count):
            out.append(f"{p.nan_count} NaN and {p.inf_count} Inf values (reference has {p.reference_nonfinite})")
        if self.max_abs_rel is not None:
            limit = self.max_abs_rel * p.max_abs_reference + self.max_abs_floor
            if not p.max_abs <= limit:  # also catches NaN
                out.append(f"max abs error {p.max_abs:.3g} > {limit:.3g} ({self.max_abs_rel:g} x peak {p.max_abs_reference:.3g})")
        if not p.cosine >= self.min_cosine:
            out.append(f"cosine {p.cosine:.6f} < {self.min_cosine}")
        if p.argmax_agreement is not None and not p.argmax_agreement >= self.min_argmax_agreement:
            out.append(f"argmax agreement {100 * p.argmax_agreement:.3f}% < {100 * self.min_argmax_agreement:g}%")
        return out

    def to_dict(self) -> Dict:
        return asdict(self)


# fp32 through ONNX Runtime against PyTorch fp32: differences are summation order only.
# 1e-4 of the peak is the golden-fixture tolerance; argmax may flip only at exact near-ties.
FP32 = Budget(max_abs_rel=1e-4, max_abs_floor=1e-6, min_cosine=0.99999, min_argmax_agreement=0.999)


def default_budget(precision: str = "fp32") -> Budget:
    budgets = {"fp32": FP32}
    if precision not in budgets:
        raise ValueError(f"no default parity budget for precision {precision!r}")
    return budgets[precision]
