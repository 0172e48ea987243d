"""PNG files written byte by byte, for the image tests: Pillow cannot write 16-bit colour, and a
header may need to lie about its size (decompression bombs)."""

from __future__ import annotations

import struct
import zlib

import numpy as np


def png(
    array, bit_depth: int = 8, color_type: int = 2, size: tuple[int, int] | None = None
) -> bytes:
    """``array`` [H, W, C] as a PNG: colour type 0 grey, 2 RGB, 4 LA, 6 RGBA; ``size`` overrides the
    declared (width, height)."""
    array = np.asarray(array)
    h, w = array.shape[:2]
    rows = array.astype(">u2" if bit_depth == 16 else "u1").reshape(h, -1)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    width, height = size or (w, h)
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
