"""Limits checked before work starts: what a step will need against what the machine has.

Known up front and cheap to read: the pixels a picture declares in its header, the bytes a
static graph's declared tensors take, the memory a batch will roughly need. A step that cannot
fit is refused with the number and a fix (exit 2) instead of dying in the allocator (or being
killed by the kernel) after minutes of work. torch-free.
"""

from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from typing import Iterator, Optional

from .errors import BadInput, MissingRuntime, one_line_text

#: the largest picture decoded (width x height): 40 megapixels, above 8K UHD (33 MP), far above
#: Cityscapes (2 MP); a 10000 x 10000 picture (100 MP) would take 1.2 GB as float32 RGB
MAX_PICTURE_PIXELS = 40_000_000


def gib(value: float) -> str:
    return f"{value / 2**30:.1f} GiB"


def available_memory() -> Optional[int]:
    """Bytes of memory available to a new allocation now (Linux MemAvailable), None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def check_memory(needed: int, what: str, fix: str, available: Optional[int] = None) -> Optional[int]:
    """BadInput if `needed` bytes exceed the memory available; returns what is available."""
    available = available_memory() if available is None else available
    if available is not None and needed > available:
        raise BadInput(f"{what} needs about {gib(needed)} of memory, and {gib(available)} is available", fix)
    return available


def check_picture_pixels(name: str, width: int, height: int, limit: Optional[int] = None) -> None:
    limit = MAX_PICTURE_PIXELS if limit is None else limit  # read at call time: one place to change it
    pixels = int(width) * int(height)
    if pixels > limit:
        raise BadInput(
            f"{name}: {width}x{height} = {pixels / 1e6:.1f} megapixels, above the limit of {limit / 1e6:.0f} "
            "megapixels "
            f"(it would take {gib(pixels * 3 * 4)} as float RGB)",
            "downscale the picture first (the model sees it at the artifact's resolution anyway)",
        )


#: export's peak memory per byte of the example batch (PyTorch reference, tracing, ONNX Runtime
#: parity run) above a fixed base. Measured here (ru_maxrss, 256x512): b0 11.5, b1 7.9 bytes per
#: input byte; issue 15 saw 13.6 GB at batch 64 x 1024x2048 (8.5). Rough on purpose: it is there
#: to catch a batch that is off by an order of magnitude before minutes of work, not to budget.
EXPORT_BYTES_PER_INPUT_BYTE = 10
EXPORT_BASE_BYTES = 512 << 20


def export_memory_estimate(batch: int, height: int, width: int) -> int:
    return EXPORT_BASE_BYTES + EXPORT_BYTES_PER_INPUT_BYTE * batch * 3 * height * width * 4


def check_export_memory(
    batch: int, height: int, width: int, warn, available: Optional[int] = None, flag: str = "--batch"
) -> None:
    """Refuse an export whose estimated peak exceeds the memory available; warn above half of it.
    `flag`: what sets the batch (--max-batch for a dynamic one, whose reference runs at its largest)."""
    needed = export_memory_estimate(batch, height, width)
    per_sample = export_memory_estimate(1, height, width) - EXPORT_BASE_BYTES
    available = available_memory() if available is None else available
    if available is None:
        return
    fits = max(int((available - EXPORT_BASE_BYTES) // per_sample), 0)
    if needed > available:
        raise BadInput(
            f"exporting batch {batch} at {height}x{width} needs an estimated {gib(needed)} of memory, and "
            f"{gib(available)} is available",
            f"use {flag} {fits} or less (the export's reference and parity run at this batch), or a smaller --res"
            if fits
            else "use a smaller --res, or a machine with more memory",
        )
    if needed > available / 2:
        warn(
            f"exporting batch {batch} at {height}x{width} needs an estimated {gib(needed)} of memory, "
            f"more than half of the {gib(available)} available"
        )


def check_tensors_fit(label: str, inputs, outputs=()) -> None:
    """The inputs a run allocates and the outputs it returns, from their declared shapes
    (name -> (shape, dtype), and [(shape, dtype)]), against the memory available."""
    import numpy as np

    def nbytes(shape, dtype) -> int:
        count = 1
        for d in shape:
            count *= int(d)
        return count * np.dtype(dtype).itemsize

    needed = sum(nbytes(s, d) for s, d in inputs.values()) + sum(nbytes(s, d) for s, d in outputs)
    largest = max(inputs.items(), key=lambda kv: nbytes(*kv[1]), default=None)
    shown = f"input {largest[0]} {list(largest[1][0])}" if largest else "its tensors"
    check_memory(
        needed,
        f"{label} ({shown} and its outputs, as declared)",
        "use a graph exported at a smaller --res or --batch, or a machine with more memory",
    )


@contextmanager
def open_picture(path, fix: str = "check the file") -> Iterator["object"]:
    """A Pillow image of `path`, opened only after its declared size passed the pixel limit
    (Image.open reads the header alone); Pillow's decompression-bomb guard and an unreadable file
    are BadInput. Every decoder of pictures (reference, calibration, evaluate, predict) opens here."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise MissingRuntime(f"reading {path} needs Pillow, which is not installed", "pip install pillow") from None
    bombs = (Image.DecompressionBombError, Image.DecompressionBombWarning)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                check_picture_pixels(str(path), *image.size)  # ours first: it names the size and the limit
                bomb = next((w.message for w in caught if isinstance(w.message, Image.DecompressionBombWarning)), None)
                if bomb is not None:  # Pillow's own guard (Image.MAX_IMAGE_PIXELS) is an error here
                    raise bomb
                yield image
    except bombs as exc:
        raise BadInput(
            f"{path}: refused as a decompression bomb ({one_line_text(exc)})",
            f"downscale the picture first (limit: {MAX_PICTURE_PIXELS / 1e6:.0f} megapixels)",
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:  # truncated, or not a picture
        raise BadInput(f"{path}: not a readable picture ({one_line_text(exc)})", fix) from None
