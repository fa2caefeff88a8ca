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

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import onnx

from .. import drawing
from ..parity.metrics import cosine_similarity
from ..records import Record
from .int8 import Calibration, Unit, graph_units, quantize, run_batches


def agreement(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Fraction of pixels with the same label; NaN logits count as disagreement."""
    labels = np.where(np.isfinite(candidate).all(axis=1), candidate.argmax(axis=1), -1)
    return float((reference.argmax(axis=1) == labels).mean())


METRIC = "argmax agreement of the Q/DQ graph with the fp32 graph on the calibration pictures (ONNX Runtime CPU)"


@dataclass
class UnitCost:
    """One row of the table: one quantization unit."""

    module: str
    kind: str  # "block" | "attention"
    quantizable: int  # convs (or MatMuls) the unit owns
    alone: float  # agreement with only this unit in int8
    all_but: float  # agreement with every other candidate in int8 and this one in fp32
    # the logits' cosine with only this unit in int8: the cost before labels flip; NaN when the
    # logits are not finite (files written before records hold null there: read back as NaN)
    alone_cosine: Optional[float]
    cost: float = field(init=False)  # 1 - alone: written for readers of the file, derived on read

    def __post_init__(self) -> None:
        if self.alone_cosine is None:
            self.alone_cosine = math.nan
        self.cost = 1.0 - self.alone


@dataclass
class CalibrationUsed:
    method: str
    pictures: int


@dataclass
class SensitivityTable(Record):
    """int8_sensitivity.json: the units ranked by label cost, and the fp32 set chosen for a target."""

    KIND = "msla-deploy/int8-sensitivity"
    VERSION = 1

    calibration: CalibrationUsed
    include_attention: bool
    all_int8_agreement: float  # agreement with every candidate unit in int8
    ranking: List[UnitCost]  # most costly first
    min_argmax_agreement: Optional[float] = None  # the target; None: no fp32 set was chosen
    keep_fp32: List[str] = field(default_factory=list)  # chosen for min_argmax_agreement
    achieved_agreement: Optional[float] = None
    met: Optional[bool] = None
    metric: str = METRIC

    def to_dict(self) -> Dict[str, Any]:
        data = super().to_dict()
        # the order of the file before records
        return {"format": data.pop("format"), "metric": data.pop("metric"), **data}

    # the names sweep()'s callers and render() read
    @property
    def rows(self) -> List[UnitCost]:
        return self.ranking

    @property
    def method(self) -> str:
        return self.calibration.method

    @property
    def pictures(self) -> int:
        return self.calibration.pictures

    @property
    def all_int8(self) -> float:
        return self.all_int8_agreement

    @property
    def achieved(self) -> Optional[float]:
        return self.achieved_agreement

    @property
    def min_agreement(self) -> Optional[float]:
        return self.min_argmax_agreement


Sensitivity = SensitivityTable  # the name render() is annotated with (int8 plot, moving to Pillow)


def candidates(units: List[Unit], include_attention: bool) -> List[Unit]:
    return [u for u in units if include_attention or u.kind == "block"]


def sweep(
    fp32_path: Path,
    calibration: Calibration,
    include_attention: bool = False,
    min_agreement: Optional[float] = None,
    progress: Optional[Callable[[int, int], None]] = None,
) -> SensitivityTable:
    """Quantize each candidate module alone (and all but it), measure label agreement and cosine
    with the fp32 graph; `progress(done, total)` after each module."""
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
    if progress is not None:
        progress(0, len(units))
    for i, unit in enumerate(units):
        alone = logits([unit.module])
        rows.append(
            UnitCost(
                unit.module,
                unit.kind,
                len(unit.quantizable),
                alone=agreement(reference, alone),
                all_but=measure([n for n in names if n != unit.module]) if len(names) > 1 else 1.0,
                alone_cosine=cosine_similarity(reference, alone),
            )
        )
        if progress is not None:
            progress(i + 1, len(units))
    # most costly alone first; where no label flips (ties), the unit that moves the logits most
    rows.sort(key=lambda r: (r.alone, r.alone_cosine if r.alone_cosine == r.alone_cosine else -1.0, r.module))
    result = SensitivityTable(CalibrationUsed(calibration.method, calibration.count), include_attention, all_int8, rows)
    if min_agreement is not None:
        keep, achieved = choose_fp32_modules([r.module for r in rows], all_int8, min_agreement, measure)
        result.min_argmax_agreement, result.keep_fp32, result.achieved_agreement = min_agreement, keep, achieved
        result.met = achieved >= min_agreement
    return result


def choose_fp32_modules(
    ranked: List[str], all_int8: float, target: float, measure: Callable[[List[str]], float]
) -> Tuple[List[str], float]:
    """Modules to keep in fp32, most costly first (`ranked`), until the rest in int8 agrees with
    the fp32 graph on at least `target` of the labels: (kept, agreement). At least one module
    stays int8, since keeping them all is the fp32 graph under another name; a target only that
    would reach is not met, and the best mix measured is returned (the caller says so: exit 1)."""
    keep: List[str] = []
    achieved = all_int8
    best: Tuple[float, List[str]] = (all_int8, [])
    for module in ranked[:-1]:
        if achieved >= target:
            return keep, achieved
        keep.append(module)
        achieved = measure([n for n in ranked if n not in keep])
        if achieved > best[0]:
            best = (achieved, list(keep))
    if achieved >= target:
        return keep, achieved
    return best[1], best[0]


# --- the bar chart ------------------------------------------------------------------------------
BLOCK, ATTENTION, KEPT = (31, 119, 180), (214, 39, 40), (150, 150, 150)
ROW, PLOT_W, VALUE_W = 24, 420, 230


def render(result: Sensitivity) -> np.ndarray:
    """One bar per unit (full module names): its label cost (% of pixels changed) when it alone is
    int8, on a % axis with ticks; a legend for the colours; [H, W, 3] uint8."""
    notes = [
        f"Calibration: {result.method}, {result.pictures} pictures. Every candidate in int8: "
        f"{100 * (1 - result.all_int8):.3g}% of pixels change. Beside each bar: the logits' 1 - cosine with "
        "fp32 (the cost before labels flip; it orders ties)."
    ]
    if result.min_agreement is not None:
        notes.append(
            f"For at least {100 * result.min_agreement:g}% agreement, {len(result.keep_fp32)} module(s) kept in "
            f"fp32: {100 * (result.achieved or 0):.4g}% achieved ({'met' if result.met else 'not met'})."
        )
    return render_costs(
        result.rows,
        result.keep_fp32,
        "int8 label cost per module (argmax vs the fp32 graph)",
        "% of pixels whose label changes with only this module in int8",
        notes,
        lambda row: f"{100 * row.cost:.3g}%, 1 - cosine {1 - row.alone_cosine:.2g}",
    )


def render_costs(
    rows: Sequence[Any],
    keep: Sequence[str],
    title: str,
    axis_label: str,
    notes: List[str],
    value_text: Callable[[Any], str],
) -> np.ndarray:
    """The bar chart of a sweep: one bar per row (.module, .kind, .cost in [0, 1] drawn as %),
    `value_text(row)` beside it, the rows in `keep` grey; [H, W, 3] uint8."""
    Image, ImageDraw, _ = drawing.pil()
    left = max([drawing.text_width(r.module, drawing.TEXT_SIZE) for r in rows] + [160]) + 16
    width, plot_bottom = left + PLOT_W + VALUE_W, 4 + ROW * max(len(rows), 1)
    canvas = Image.new("RGB", (width, plot_bottom + 60), drawing.BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    peak = max([100 * r.cost for r in rows] + [1e-3])
    axis, ticks = drawing.XAxis.covering(0.0, peak, left, left + PLOT_W - 1, count=5)
    end = axis.draw(draw, ticks, 0, plot_bottom, axis_label)
    kept = set(keep)
    for i, row in enumerate(rows):
        y = 4 + i * ROW
        colour = KEPT if row.module in kept else (ATTENTION if row.kind == "attention" else BLOCK)
        drawing.draw_text(draw, (8, y + ROW // 2), row.module, drawing.TEXT_SIZE, colour, anchor="lm")
        x = max(int(axis.x(100 * row.cost)), left + 1)
        draw.rectangle([left, y + 4, x, y + ROW - 4], fill=colour)
        value = value_text(row) + (" (kept fp32)" if row.module in kept else "")
        drawing.draw_text(draw, (x + 6, y + ROW // 2), value, drawing.SMALL_SIZE, anchor="lm")
    canvas = canvas.crop((0, 0, width, end + 4))
    key = drawing.legend(
        [(BLOCK, "block (convolutions)"), (ATTENTION, "LiteMLA attention core"), (KEPT, "kept in fp32")], width
    )
    return drawing.to_array(drawing.figure(title, [canvas, key], notes, width=width))


def write_plot(result: Sensitivity, path: Path) -> None:
    drawing.save_picture(Path(path), render(result))


def table_rows(result: SensitivityTable) -> List[List[str]]:
    """The table as printed after `export --sensitivity`: rank, module, kind, labels changed alone,
    1 - cosine alone, agreement all but it, kept."""
    kept = set(result.keep_fp32)
    return [
        [
            str(i + 1),
            r.module,
            r.kind,
            f"{100 * r.cost:.3f}%",
            f"{1 - r.alone_cosine:.2e}",
            f"{100 * r.all_but:.3f}%",
            "fp32" if r.module in kept else "",
        ]
        for i, r in enumerate(result.rows)
    ]
