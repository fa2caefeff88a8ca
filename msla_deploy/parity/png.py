"""PNG encoding with numpy and zlib: report pictures without an imaging dependency.

An 8-bit RGB, non-interlaced PNG is a signature and three chunks (IHDR, IDAT, IEND), each with a
CRC-32; every scanline is stored with filter type 0 (none) and zlib does the compression.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from ..artifact.files import write_bytes_atomic

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(rgb: np.ndarray) -> bytes:
    """[H, W, 3] uint8 -> PNG bytes."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"encode_png takes [H, W, 3] uint8, got {rgb.shape} {rgb.dtype}")
    height, width = rgb.shape[:2]
    if not height or not width:
        raise ValueError("encode_png: empty picture")
    # bit depth 8, colour type 2 (RGB), deflate, adaptive filtering (method 0), no interlace
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = np.concatenate([np.zeros((height, 1), np.uint8), np.ascontiguousarray(rgb).reshape(height, width * 3)], axis=1)
    return SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)) + _chunk(b"IEND", b"")


def write_png(path: Path, rgb: np.ndarray) -> None:
    write_bytes_atomic(Path(path), encode_png(rgb))
