"""`--plot FILE`: the latency distribution of each backend as a PNG (drawn with msla_deploy.drawing).

One row per backend, its full label at the left (wrapped, never cut), on a shared millisecond
axis with ticks (logarithmic when the slowest run is over 20x the fastest): every timed run as a
dot (spread vertically so that repeated values stay visible), a box from p25 to p75, a thick mark
at p50, whiskers from min to p99, and the p50 written at the right. A legend under the axis says
what each mark is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from .. import drawing
from ..drawing import BAND, INK, SERIES, TEXT_SIZE, XAxis, format_number

PLOT_W, ROW, LABEL_MAX_W, VALUE_W = 560, 60, 360, 130
TITLE = "Latency per run, by backend"


def _label_lines(label: str) -> List[str]:
    """A backend's label in lines that fit the label column: broken after ':' '/' '@' or a space,
    else between characters."""
    lines: List[str] = []
    line = ""
    for ch in label:
        if line and drawing.text_width(line + ch, TEXT_SIZE) > LABEL_MAX_W:
            cut = max(line.rfind(c) for c in ":/@ ")
            cut = cut + 1 if cut > 0 else len(line)
            lines.append(line[:cut])
            line = line[cut:]
        line += ch
    return lines + [line]


def render(rows: Sequence[Dict], title: str = TITLE, subtitle: Optional[str] = None) -> np.ndarray:
    """rows: {"label": str, "latencies_ms": [...]} -> [H, W, 3] uint8."""
    Image, ImageDraw, _ = drawing.pil()
    labels = [_label_lines(str(r["label"])) for r in rows]
    left = max([drawing.text_width(line, TEXT_SIZE) for lines in labels for line in lines] + [60]) + 16
    row_h = [max(ROW, len(lines) * drawing.line_height(TEXT_SIZE) + 16) for lines in labels]
    top = 6
    plot_bottom = top + sum(row_h)
    width = left + PLOT_W + VALUE_W
    canvas = Image.new("RGB", (width, plot_bottom + 60), drawing.BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    values = np.concatenate([np.asarray(r["latencies_ms"], np.float64) for r in rows])
    axis, ticks = XAxis.covering(float(values.min()), float(values.max()), left, left + PLOT_W - 1, allow_log=True)
    tops = [top + sum(row_h[:i]) for i in range(len(rows))]
    for y, height in zip(tops, row_h):  # bands first: the grid is drawn over them
        draw.rectangle([left, y + 4, left + PLOT_W - 1, y + height - 4], fill=BAND)
    end = axis.draw(
        draw,
        ticks,
        top,
        plot_bottom,
        "latency per run (ms, log scale)" if axis.log else "latency per run (ms)",
    )
    rng = np.random.default_rng(0)  # fixed jitter: the same data draws the same picture
    for i, (row, lines, y, height) in enumerate(zip(rows, labels, tops, row_h)):
        colour, mid = SERIES[i % len(SERIES)], y + height // 2
        text_top = mid - len(lines) * drawing.line_height(TEXT_SIZE) // 2
        for k, line in enumerate(lines):
            drawing.draw_text(draw, (8, text_top + k * drawing.line_height(TEXT_SIZE)), line, TEXT_SIZE, colour)
        ms = np.asarray(row["latencies_ms"], np.float64)
        p25, p50, p75, p99 = np.percentile(ms, [25, 50, 75, 99])
        xmin, x25, x50, x75, x99 = (int(v) for v in axis.x([ms.min(), p25, p50, p75, p99]))
        draw.line([xmin, mid, x99, mid], fill=INK)  # whisker min..p99
        draw.line([xmin, mid - 6, xmin, mid + 6], fill=INK)
        draw.line([x99, mid - 6, x99, mid + 6], fill=INK)
        tint = tuple(int(0.55 * b + 0.45 * c) for b, c in zip(BAND, colour))
        draw.rectangle([x25, mid - 10, x75, mid + 10], fill=tint, outline=colour)
        draw.rectangle([x50 - 1, mid - 13, x50 + 1, mid + 13], fill=INK)
        for x, dy in zip(axis.x(ms), rng.integers(-17, 18, size=ms.size)):
            draw.rectangle([int(x) - 1, mid + int(dy) - 1, int(x) + 1, mid + int(dy) + 1], fill=colour)
        drawing.draw_text(draw, (left + PLOT_W + 12, mid), f"p50 {format_number(p50)} ms", TEXT_SIZE, anchor="lm")
    canvas = canvas.crop((0, 0, width, end + 4))
    key = drawing.legend(
        [
            ((120, 120, 120), "dot: one timed run"),
            ((200, 200, 200), "box: p25 to p75"),
            (INK, "thick mark: p50 (median)"),
            ((90, 90, 90), "whiskers: min to p99"),
        ],
        width,
    )
    return drawing.to_array(drawing.figure(title, [canvas, key], subtitle, width=width))


def _subtitle(report) -> str:
    runs = sorted({len(r.latencies_ms) for r in report.results})
    batches = sorted({r.batch for r in report.results})
    return (
        f"{'/'.join(str(n) for n in runs)} timed runs each, batch {'/'.join(str(b) for b in batches)}; "
        f"timer: {', '.join(sorted({r.timer for r in report.results}))}; baseline {report.baseline}"
    )


def write_plot(path: Path, report) -> Path:
    """The latency distribution of each run of a bench.run.BenchReport, as a PNG."""
    rows = [{"label": r.label, "latencies_ms": r.latencies_ms} for r in report.results]
    return drawing.save_picture(Path(path), render(rows, subtitle=_subtitle(report)))
