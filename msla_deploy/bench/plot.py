"""`--plot FILE`: the latency distribution of each backend as a PNG, drawn with numpy.

One row per backend on a shared millisecond axis: every timed run as a dot (spread vertically
so that repeated values stay visible), a box from p25 to p75, a thick mark at p50, whiskers from
min to p99, and the p50 written at the right. PNG encoding is validate's (parity/png.py).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

from ..parity.png import write_png
from .font import draw_text, text_width

WIDTH, ROW, TOP, BOTTOM, LEFT, RIGHT = 900, 56, 34, 44, 150, 130
BACKGROUND, INK, GRID, BAND = (255, 255, 255), (30, 30, 30), (225, 225, 225), (246, 246, 246)
COLORS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189), (140, 86, 75), (23, 190, 207)]


def nice_ticks(lo: float, hi: float, count: int = 6) -> List[float]:
    """Round tick values (1, 2 or 5 times a power of ten) covering [lo, hi]."""
    span = max(hi - lo, 1e-9)
    raw = span / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.floor(lo / step) * step
    return [first + i * step for i in range(int(math.ceil((hi - first) / step)) + 1)]


def _fmt(value: float) -> str:
    return f"{value:.3g}" if value < 1000 else f"{value:.0f}"


def render(rows: Sequence[Dict], title: str = "LATENCY PER RUN (MS)") -> np.ndarray:
    """rows: {"label": str, "latencies_ms": [...]} -> [H, W, 3] uint8."""
    height = TOP + ROW * len(rows) + BOTTOM
    canvas = np.empty((height, WIDTH, 3), np.uint8)
    canvas[:] = BACKGROUND
    values = np.concatenate([np.asarray(r["latencies_ms"], np.float64) for r in rows])
    ticks = nice_ticks(float(values.min()), float(values.max()))
    lo, hi = ticks[0], ticks[-1] if ticks[-1] > ticks[0] else ticks[0] + 1
    plot_w = WIDTH - LEFT - RIGHT

    def x_of(v):
        return (LEFT + (np.asarray(v, np.float64) - lo) / (hi - lo) * (plot_w - 1)).round().astype(int)

    for tick in ticks:
        x = int(x_of(tick))
        canvas[TOP - 4:TOP + ROW * len(rows), x] = GRID
        label = _fmt(tick)
        draw_text(canvas, label, x - text_width(label, 2) // 2, TOP + ROW * len(rows) + 8, INK)
    draw_text(canvas, title, LEFT, 10, INK)
    rng = np.random.default_rng(0)  # fixed jitter: the same data draws the same picture
    for i, row in enumerate(rows):
        top, color = TOP + i * ROW, COLORS[i % len(COLORS)]
        mid = top + ROW // 2
        canvas[top + 4:top + ROW - 4, LEFT:LEFT + plot_w] = BAND
        draw_text(canvas, row["label"][:18], 8, mid - 5, color)
        ms = np.asarray(row["latencies_ms"], np.float64)
        p25, p50, p75, p99 = np.percentile(ms, [25, 50, 75, 99])
        xmin, x25, x50, x75, x99 = (int(v) for v in x_of([ms.min(), p25, p50, p75, p99]))
        canvas[mid, xmin:x99 + 1] = INK  # whisker min..p99
        canvas[mid - 6:mid + 7, xmin] = INK
        canvas[mid - 6:mid + 7, x99] = INK
        box = canvas[mid - 10:mid + 11, x25:x75 + 1]
        box[:] = (np.asarray(box, np.float64) * 0.55 + np.asarray(color) * 0.45).astype(np.uint8)
        canvas[mid - 10, x25:x75 + 1] = canvas[mid + 10, x25:x75 + 1] = color
        canvas[mid - 10:mid + 11, x25] = canvas[mid - 10:mid + 11, x75] = color
        canvas[mid - 13:mid + 14, max(x50 - 1, 0):x50 + 2] = INK
        xs = x_of(ms)
        ys = mid + rng.integers(-17, 18, size=ms.size)
        for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):  # 2x2 dots
            canvas[np.clip(ys + dy, 0, height - 1), np.clip(xs + dx, 0, WIDTH - 1)] = color
        draw_text(canvas, f"P50 {_fmt(p50)}", LEFT + plot_w + 12, mid - 5, INK)
    return canvas


def write_plot(path: Path, report) -> Path:
    """The latency distribution of each run of a bench.run.BenchReport, as a PNG."""
    rows = [{"label": r.label, "latencies_ms": r.latencies_ms} for r in report.results]
    write_png(Path(path), render(rows))
    return Path(path)
