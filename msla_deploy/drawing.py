"""Every picture the tool draws goes through here: Pillow text, panels, legends, colour bars,
axes, and atomic PNG writes.

The report pictures (validate's label disagreement and error maps, evaluate's worst images,
bench's latency plot, the int8 sensitivity plot) are read by people, so each has a title,
captions, a legend or a colour bar with its units, and axes with ticks. A figure is built from
blocks (one Pillow image each: a line of text, a titled panel, a legend) stacked with margins;
the pixel maps inside the panels are numpy arithmetic done by their owners.

Pillow is a base dependency; it is imported on first use, so that a command that draws nothing
does not pay for it, and a broken install is a one-line error (exit 3), not a traceback.
"""

from __future__ import annotations

import functools
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

import numpy as np

from .atomic import write_bytes_atomic
from .errors import MissingRuntime

RGB = Tuple[int, int, int]
BACKGROUND: RGB = (255, 255, 255)
INK: RGB = (30, 30, 30)
MUTED: RGB = (100, 100, 100)
GRID: RGB = (222, 222, 222)
BAND: RGB = (246, 246, 246)
# one colour per series (bench backends): distinguishable, and readable as text on white
SERIES: Tuple[RGB, ...] = (
    (31, 119, 180),
    (214, 39, 40),
    (44, 160, 44),
    (255, 127, 14),
    (148, 103, 189),
    (140, 86, 75),
    (23, 190, 207),
)
TITLE_SIZE, TEXT_SIZE, SMALL_SIZE = 18, 14, 12  # pixels
MARGIN, GAP = 14, 8
# Panels of pixel maps are enlarged or shrunk by a whole factor into this width range: a 64x128
# export's maps are too small to see at 1:1, a 1024x2048 one's too large to open comfortably.
PANEL_MIN_WIDTH, PANEL_MAX_WIDTH = 256, 512
JPEG_QUALITY = 95
Picture = Union[np.ndarray, Any]  # an H x W (x 3) array, or a PIL image


def pil():
    """The Pillow modules (Image, ImageDraw, ImageFont)."""
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError:
        raise MissingRuntime("drawing pictures needs Pillow, which is not installed", "pip install pillow") from None
    return Image, ImageDraw, ImageFont


# --- text ---------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def font(size: int = TEXT_SIZE):
    """A scalable font of `size` pixels: Pillow's own (10.1+), else a system DejaVu Sans, else
    Pillow's small fixed bitmap font (readable, just not scalable)."""
    _, _, ImageFont = pil()
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: load_default takes no size
        pass
    for name in ("DejaVuSans.ttf", "Arial.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default()


def _bbox(text: str, size: int) -> Tuple[int, int, int, int]:
    face = font(size)
    if hasattr(face, "getbbox"):
        return face.getbbox(text)
    width, height = face.getsize(text)  # Pillow < 9.2
    return 0, 0, width, height


def text_width(text: str, size: int = TEXT_SIZE) -> int:
    return _bbox(text, size)[2] if text else 0


@functools.lru_cache(maxsize=None)
def line_height(size: int = TEXT_SIZE) -> int:
    return _bbox("Agy|(", size)[3] + max(2, size // 4)


def wrap(text: str, width: Optional[int], size: int = TEXT_SIZE) -> List[str]:
    """`text` broken at spaces into lines at most `width` pixels wide (a longer word gets its own line)."""
    if width is None or text_width(text, size) <= width:
        return [text]
    lines: List[str] = []
    line = ""
    for word in text.split(" "):
        candidate = f"{line} {word}" if line else word
        if line and text_width(candidate, size) > width:
            lines.append(line)
            line = word
        else:
            line = candidate
    return lines + [line]


def draw_text(
    draw, xy: Tuple[float, float], text: str, size: int = TEXT_SIZE, colour: RGB = INK, anchor: str = "la"
) -> None:
    """One line at `xy`; `anchor` as Pillow's (la: left/top, ma: centre/top, ra: right/top,
    lm: left/middle)."""
    x, y = xy
    face = font(size)
    if hasattr(face, "getbbox"):  # anchors need a TrueType font; the bitmap fallback is placed by hand
        try:
            draw.text((x, y), text, fill=colour, font=face, anchor=anchor)
            return
        except ValueError:
            pass
    width, height = text_width(text, size), line_height(size)
    x -= {"l": 0, "m": width / 2, "r": width}[anchor[0]]
    y -= {"a": 0, "m": height / 2, "t": 0, "s": height, "b": height, "d": height}[anchor[1]]
    draw.text((x, y), text, fill=colour, font=face)


def text(lines: Union[str, Sequence[str]], width: Optional[int] = None, size: int = TEXT_SIZE, colour: RGB = INK):
    """A block of text lines, each wrapped to `width` pixels; the block is `width` wide when given."""
    Image, ImageDraw, _ = pil()
    wrapped = [part for line in ([lines] if isinstance(lines, str) else lines) for part in wrap(line, width, size)]
    block_w = width if width is not None else max([text_width(t, size) for t in wrapped] + [1])
    block = Image.new("RGB", (max(block_w, 1), line_height(size) * len(wrapped)), BACKGROUND)
    draw = ImageDraw.Draw(block)
    for i, line in enumerate(wrapped):
        draw_text(draw, (0, i * line_height(size)), line, size, colour)
    return block


# --- blocks and figures ---------------------------------------------------------------------------


def to_image(picture: Picture):
    """A PIL image of an H x W x 3 uint8 array (or an H x W one: grey / 16-bit grey); images pass through."""
    Image, _, _ = pil()
    if isinstance(picture, Image.Image):
        return picture
    return Image.fromarray(np.ascontiguousarray(picture))


def to_array(picture) -> np.ndarray:
    """An H x W x 3 uint8 array of a PIL image."""
    return np.asarray(to_image(picture).convert("RGB"), np.uint8).copy()


def stack(blocks: Sequence[Any], gap: int = GAP, horizontal: bool = False, centre: bool = False):
    """Blocks side by side (`horizontal`) or one under the other, aligned at the start or centred."""
    Image, _, _ = pil()
    blocks = [to_image(b) for b in blocks if b is not None]
    if not blocks:
        return Image.new("RGB", (1, 1), BACKGROUND)
    along = [b.width if horizontal else b.height for b in blocks]
    across = max(b.height if horizontal else b.width for b in blocks)
    length = sum(along) + gap * (len(blocks) - 1)
    canvas = Image.new("RGB", (length, across) if horizontal else (across, length), BACKGROUND)
    position = 0
    for block, size in zip(blocks, along):
        extent = block.height if horizontal else block.width
        offset = (across - extent) // 2 if centre else 0
        canvas.paste(block.convert("RGB"), (position, offset) if horizontal else (offset, position))
        position += size + gap
    return canvas


def framed(block: Any, margin: int = MARGIN):
    """`block` with a white margin around it."""
    Image, _, _ = pil()
    block = to_image(block)
    canvas = Image.new("RGB", (block.width + 2 * margin, block.height + 2 * margin), BACKGROUND)
    canvas.paste(block.convert("RGB"), (margin, margin))
    return canvas


def figure(
    title: str,
    blocks: Sequence[Any],
    subtitle: Union[str, Sequence[str], None] = None,
    width: Optional[int] = None,
):
    """A titled figure: the title, an optional subtitle, then the blocks, with margins. Text is
    wrapped to the widest block (or `width`), so nothing is cut."""
    blocks = [to_image(b) for b in blocks if b is not None]
    inner = width or max([b.width for b in blocks] + [480])
    head = [text(title, inner, TITLE_SIZE)]
    if subtitle:
        head.append(text(subtitle, inner, TEXT_SIZE, MUTED))
    return framed(stack([stack(head, gap=2)] + blocks, gap=GAP + 2))


def display_factor(width: int, min_width: int = PANEL_MIN_WIDTH, max_width: int = PANEL_MAX_WIDTH) -> Tuple[int, int]:
    """(enlarge, shrink): the whole factors that bring `width` into [min_width, max_width]
    (one of them is 1)."""
    if width <= 0:
        return 1, 1
    if width < min_width:
        return max(1, min(min_width // width, 16)), 1
    if width > max_width:
        return 1, math.ceil(width / max_width)
    return 1, 1


def resized(picture: Picture, size: Tuple[int, int], smooth: bool = False):
    """`picture` at `size` (width, height): label-like maps nearest (no blended colours), photos smoothly."""
    Image, _, _ = pil()
    image = to_image(picture)
    if image.size == tuple(size):
        return image
    shrink = size[0] < image.width
    method = Image.NEAREST if not smooth else (Image.BOX if shrink else Image.BILINEAR)
    return image.resize(tuple(size), method)


def panel(
    picture: Picture,
    title: Union[str, Sequence[str]],
    size: Optional[Tuple[int, int]] = None,
    smooth: bool = False,
):
    """A picture (shown at `size`, width x height) with its title above, wrapped to its width,
    and a thin frame."""
    Image, ImageDraw, _ = pil()
    image = resized(picture, size, smooth) if size else to_image(picture)
    framed_image = Image.new("RGB", (image.width + 2, image.height + 2), MUTED)
    framed_image.paste(image.convert("RGB"), (1, 1))
    return stack([text(title, framed_image.width, SMALL_SIZE), framed_image], gap=3)


def swatch_items(items: Sequence[Tuple[RGB, str]], width: Optional[int] = None, size: int = SMALL_SIZE):
    """A legend: a colour square and its meaning per item, flowed into rows at most `width` wide."""
    Image, ImageDraw, _ = pil()
    box = line_height(size) - 4
    cells = []
    for colour, label in items:
        cell = Image.new("RGB", (box + 6 + text_width(label, size) + 16, line_height(size)), BACKGROUND)
        draw = ImageDraw.Draw(cell)
        draw.rectangle([0, 1, box, box + 1], fill=tuple(int(c) for c in colour), outline=MUTED)
        draw_text(draw, (box + 6, 0), label, size)
        cells.append(cell)
    rows: List[List[Any]] = [[]]
    used = 0
    for cell in cells:
        if rows[-1] and width is not None and used + cell.width > width:
            rows.append([])
            used = 0
        rows[-1].append(cell)
        used += cell.width
    return stack([stack(row, gap=0, horizontal=True) for row in rows], gap=2)


def legend(items: Sequence[Tuple[RGB, str]], width: Optional[int] = None, title: Optional[str] = None):
    block = swatch_items(items, width)
    return stack([text(title, width, SMALL_SIZE, MUTED), block], gap=2) if title else block


def colour_bar(
    colour_of: Callable[[np.ndarray], np.ndarray],
    ticks: Sequence[Tuple[float, str]],
    caption: Union[str, Sequence[str]],
    width: int = 360,
    height: int = 16,
    extra: Sequence[Tuple[RGB, str]] = (),
):
    """A horizontal colour bar: `colour_of` maps fractions 0..1 along it to [..., 3] uint8 colours;
    `ticks` are (fraction, label) marked under it; `caption` (units, what the scale is) above it;
    `extra` legend swatches beside it (e.g. "over the limit", "NaN/Inf")."""
    Image, ImageDraw, _ = pil()
    fractions = np.linspace(0.0, 1.0, width)
    strip = np.repeat(np.asarray(colour_of(fractions), np.uint8)[None, :, :], height, axis=0)
    pad = max(text_width(label, SMALL_SIZE) for _, label in ticks) // 2 + 2 if ticks else 0
    bar = Image.new("RGB", (width + 2 * pad, height + 6 + line_height(SMALL_SIZE)), BACKGROUND)
    bar.paste(to_image(strip), (pad, 0))
    draw = ImageDraw.Draw(bar)
    draw.rectangle([pad - 1, 0, pad + width, height], outline=MUTED)
    for fraction, label in ticks:
        x = pad + round(fraction * (width - 1))
        draw.line([x, height, x, height + 4], fill=INK)
        draw_text(draw, (x, height + 5), label, SMALL_SIZE, anchor="ma")
    beside = swatch_items(extra) if extra else None
    return stack([text(caption, None, SMALL_SIZE), stack([bar, beside], gap=18, horizontal=True)], gap=3)


def bars(
    items: Sequence[Tuple[str, float]],
    caption: Union[str, Sequence[str]],
    length: int = 200,
    colour: RGB = SERIES[0],
):
    """A horizontal bar chart of fractions in 0..1 (probabilities): a row per (label, value), the
    label, a bar `length` pixels long at 1 (on a light band showing the full scale), and the value
    as a percentage; `caption` (what the values are) above it."""
    Image, ImageDraw, _ = pil()
    label_w = max([text_width(label, SMALL_SIZE) for label, _ in items] + [1]) + GAP
    value_w = text_width("100.0%", SMALL_SIZE) + GAP
    row = line_height(SMALL_SIZE) + 4
    chart = Image.new("RGB", (label_w + length + value_w, row * len(items)), BACKGROUND)
    draw = ImageDraw.Draw(chart)
    for i, (label, value) in enumerate(items):
        top = i * row
        fraction = min(max(float(value), 0.0), 1.0) if math.isfinite(value) else 0.0
        draw_text(draw, (label_w - GAP, top + row / 2), label, SMALL_SIZE, anchor="rm")
        draw.rectangle([label_w, top + 2, label_w + length - 1, top + row - 3], fill=BAND)
        if fraction > 0:
            end = label_w + max(1, round(fraction * length)) - 1
            draw.rectangle([label_w, top + 2, end, top + row - 3], fill=colour)
        shown = f"{100 * float(value):.1f}%" if math.isfinite(value) else "NaN/Inf"
        draw_text(draw, (label_w + length + GAP // 2, top + row / 2), shown, SMALL_SIZE, anchor="lm")
    return stack([text(caption, None, SMALL_SIZE), chart], gap=3)


# --- axes --------------------------------------------------------------------------------------------


def nice_ticks(lo: float, hi: float, count: int = 6) -> List[float]:
    """Round tick values (1, 2 or 5 times a power of ten) covering [lo, hi]."""
    span = max(hi - lo, 1e-9)
    raw = span / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.floor(lo / step) * step
    return [first + i * step for i in range(int(math.ceil((hi - first) / step - 1e-9)) + 1)]


def format_number(value: float) -> str:
    """A tick label: 3 significant digits, no exponent for everyday magnitudes."""
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:.0f}"
    if abs(value) < 1e-3:
        return f"{value:.3g}"
    return f"{value:.3g}"


def log_ticks(lo: float, hi: float) -> List[float]:
    """1, 2 and 5 times the powers of ten from just below `lo` to just above `hi` (both > 0)."""
    ticks = []
    for power in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        ticks += [m * 10.0**power for m in (1, 2, 5)]
    first = max(t for t in ticks if t <= lo)
    last = min(t for t in ticks if t >= hi)
    return [t for t in ticks if first <= t <= last]


# a spread wider than this (largest / smallest value) is drawn on a log axis: on a linear one the
# fast series would be squeezed into a few pixels at its left end
LOG_SPREAD = 20.0


@dataclass
class XAxis:
    """A value axis from `lo` to `hi` (linear, or logarithmic with `log`) drawn between pixel
    columns `left` and `right`."""

    lo: float
    hi: float
    left: int
    right: int
    log: bool = False

    @classmethod
    def covering(
        cls, lo: float, hi: float, left: int, right: int, count: int = 6, allow_log: bool = False
    ) -> Tuple["XAxis", List[float]]:
        """The axis over [lo, hi] with round ticks; logarithmic when `allow_log` and hi / lo > LOG_SPREAD."""
        if allow_log and lo > 0 and hi / lo > LOG_SPREAD:
            ticks = log_ticks(lo, hi)
            return cls(ticks[0], ticks[-1], left, right, log=True), ticks
        ticks = nice_ticks(lo, hi, count)
        top = ticks[-1] if ticks[-1] > ticks[0] else ticks[0] + 1
        return cls(ticks[0], top, left, right), ticks

    def x(self, value):
        value = np.asarray(value, np.float64)
        if self.log:
            fraction = (np.log10(np.maximum(value, self.lo)) - math.log10(self.lo)) / (
                math.log10(self.hi) - math.log10(self.lo)
            )
        else:
            fraction = (value - self.lo) / (self.hi - self.lo)
        return np.round(self.left + fraction * (self.right - self.left)).astype(int)

    def draw(
        self,
        draw,
        ticks: Sequence[float],
        top: int,
        bottom: int,
        label: str,
        fmt: Callable[[float], str] = format_number,
    ) -> int:
        """Grid lines from `top` to `bottom`, the axis line, ticks with labels and the axis label
        under it; returns the first free row below."""
        for tick in ticks:
            x = int(self.x(tick))
            draw.line([x, top, x, bottom], fill=GRID)
            draw.line([x, bottom, x, bottom + 5], fill=INK)
            draw_text(draw, (x, bottom + 7), fmt(tick), SMALL_SIZE, anchor="ma")
        draw.line([self.left, bottom, self.right, bottom], fill=INK)
        below = bottom + 9 + line_height(SMALL_SIZE)
        draw_text(draw, ((self.left + self.right) // 2, below), label, TEXT_SIZE, anchor="ma")
        return below + line_height(TEXT_SIZE)


# --- files -------------------------------------------------------------------------------------------


def encode(picture: Picture, fmt: str = "PNG") -> bytes:
    """PNG (or JPEG) bytes of a picture; a 2-D uint16 array is a 16-bit grey PNG."""
    buffer = io.BytesIO()
    image = to_image(picture)
    if fmt == "JPEG":
        image.convert("RGB").save(buffer, format="JPEG", quality=JPEG_QUALITY)
    else:
        image.save(buffer, format=fmt)
    return buffer.getvalue()


def png_bytes(picture: Picture) -> bytes:
    return encode(picture, "PNG")


def save_picture(path: Path, picture: Picture) -> Path:
    """Write `picture` atomically (temp file, then rename): JPEG for a .jpg/.jpeg name, else PNG."""
    path = Path(path)
    fmt = "JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG"
    write_bytes_atomic(path, encode(picture, fmt))
    return path
