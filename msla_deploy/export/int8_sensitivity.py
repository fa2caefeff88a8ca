"""`--sensitivity`: which PyTorch modules cost labels when quantized, and the fewest to keep in fp32.

For every quantization unit (a probed module owning convs, or a LiteMLA core when attention is
a candidate): quantize that unit alone, and all units but that one, and measure the argmax
agreement of the Q/DQ graph with the fp32 graph on the calibration pictures (both in ONNX
Runtime on the CPU, real int8 kernels). One calibration serves every variant. The ranking is by
the unit's own cost (1 - agreement when it alone is int8); the all-but-one agreement says what
keeping it in fp32 would buy. `min_agreement` then keeps units in fp32, most costly first, until
the whole graph meets it (greedy: each step is measured, the result is the first set that
passes, not a proven minimum).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import onnx

from ..bench.font import draw_text, text_width
from ..parity.metrics import cosine_similarity
from ..parity.png import write_png
from .int8 import Calibration, Unit, graph_units, quantize, run_batches


def agreement(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Fraction of pixels with the same label; NaN logits count as disagreement."""
    labels = np.where(np.isfinite(candidate).all(axis=1), candidate.argmax(axis=1), -1)
    return float((reference.argmax(axis=1) == labels).mean())


@dataclass
class UnitCost:
    module: str
    kind: str
    quantizable: int
    alone: float  # agreement with only this unit in int8
    all_but: float  # agreement with every other candidate in int8 and this one in fp32
    alone_cosine: float  # the logits' cosine with only this unit in int8: the cost before labels flip

    @property
    def cost(self) -> float:
        return 1.0 - self.alone

    def to_dict(self) -> Dict:
        return {**asdict(self), "cost": self.cost}


@dataclass
class Sensitivity:
    method: str
    pictures: int
    include_attention: bool
    all_int8: float  # agreement with every candidate unit in int8
    rows: List[UnitCost]  # ranked, most costly first
    min_agreement: Optional[float] = None
    keep_fp32: List[str] = field(default_factory=list)  # chosen for min_agreement
    achieved: Optional[float] = None
    met: Optional[bool] = None

    def to_dict(self) -> Dict:
        return {
            "metric": "argmax agreement of the Q/DQ graph with the fp32 graph on the calibration pictures (ONNX Runtime CPU)",
            "calibration": {"method": self.method, "pictures": self.pictures},
            "include_attention": self.include_attention,
            "all_int8_agreement": self.all_int8,
            "ranking": [r.to_dict() for r in self.rows],
            "min_argmax_agreement": self.min_agreement,
            "keep_fp32": self.keep_fp32,
            "achieved_agreement": self.achieved,
            "met": self.met,
        }


def candidates(units: List[Unit], include_attention: bool) -> List[Unit]:
    return [u for u in units if include_attention or u.kind == "block"]


def sweep(
    fp32_path: Path,
    calibration: Calibration,
    include_attention: bool = False,
    min_agreement: Optional[float] = None,
    progress: Optional[Callable[[str], None]] = None,
) -> Sensitivity:
    fp32 = onnx.load(str(fp32_path))
    reference = run_batches(fp32, calibration.batches)
    units = candidates(graph_units(fp32), include_attention)
    names = [u.module for u in units]

    def logits(quantized: List[str]) -> np.ndarray:
        return run_batches(quantize(fp32_path, calibration, quantized).proto, calibration.batches)

    def measure(quantized: List[str]) -> float:
        return agreement(reference, logits(quantized))

    all_int8 = measure(names)
    rows = []
    for i, unit in enumerate(units):
        if progress is not None:
            progress(f"{i + 1}/{len(units)} {unit.module}")
        alone = logits([unit.module])
        rows.append(UnitCost(
            unit.module, unit.kind, len(unit.quantizable),
            alone=agreement(reference, alone),
            all_but=measure([n for n in names if n != unit.module]) if len(names) > 1 else 1.0,
            alone_cosine=cosine_similarity(reference, alone),
        ))
    # most costly alone first; where no label flips (ties), the unit that moves the logits most
    rows.sort(key=lambda r: (r.alone, r.alone_cosine if r.alone_cosine == r.alone_cosine else -1.0, r.module))
    result = Sensitivity(calibration.method, calibration.count, include_attention, all_int8, rows)
    if min_agreement is not None:
        keep: List[str] = []
        achieved = all_int8
        for row in rows:
            if achieved >= min_agreement:
                break
            keep.append(row.module)
            achieved = measure([n for n in names if n not in keep]) if len(keep) < len(names) else 1.0
        result.min_agreement, result.keep_fp32, result.achieved = min_agreement, keep, achieved
        result.met = achieved >= min_agreement
    return result


# --- the bar chart ------------------------------------------------------------------------------
BACKGROUND, INK, GRID = (255, 255, 255), (30, 30, 30), (225, 225, 225)
BLOCK, ATTENTION, KEPT = (31, 119, 180), (214, 39, 40), (150, 150, 150)
ROW, TOP, BOTTOM, PLOT_W, RIGHT = 22, 40, 30, 420, 110


def render(result: Sensitivity) -> np.ndarray:
    """One bar per unit: its label cost (% of pixels changed) when it alone is int8."""
    rows = result.rows
    left = max([text_width(r.module, 2) for r in rows] + [200]) + 20
    width, height = left + PLOT_W + RIGHT, TOP + ROW * max(len(rows), 1) + BOTTOM
    canvas = np.empty((height, width, 3), np.uint8)
    canvas[:] = BACKGROUND
    peak = max([100 * r.cost for r in rows] + [1e-3])
    draw_text(canvas, f"INT8 LABEL COST PER MODULE (% PIXELS CHANGED, {result.method}, {result.pictures} PICTURES)", 8, 12, INK)
    for k in range(5):
        x = left + round(k / 4 * (PLOT_W - 1))
        canvas[TOP - 4:TOP + ROW * len(rows), x] = GRID
        label = f"{peak * k / 4:.3g}"
        draw_text(canvas, label, x - text_width(label, 2) // 2, TOP + ROW * len(rows) + 8, INK)
    kept = set(result.keep_fp32)
    for i, row in enumerate(rows):
        y = TOP + i * ROW
        color = KEPT if row.module in kept else (ATTENTION if row.kind == "attention" else BLOCK)
        draw_text(canvas, row.module, 8, y + 5, color)
        bar = round(100 * row.cost / peak * (PLOT_W - 1))
        canvas[y + 3:y + ROW - 3, left:left + max(bar, 1)] = color
        draw_text(canvas, f"{100 * row.cost:.3g}%" + (" FP32" if row.module in kept else ""), left + max(bar, 1) + 6, y + 5, INK)
    return canvas


def write_plot(result: Sensitivity, path: Path) -> None:
    write_png(Path(path), render(result))


def table_rows(result: Sensitivity) -> List[List[str]]:
    kept = set(result.keep_fp32)
    return [
        [str(i + 1), r.module, r.kind, f"{100 * r.cost:.3f}%", f"{1 - r.alone_cosine:.2e}", f"{100 * r.all_but:.3f}%", "fp32" if r.module in kept else ""]
        for i, r in enumerate(result.rows)
    ]
