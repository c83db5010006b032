"""Image files built byte by byte, hostile ones included: shared by the tests and `make soak`."""

from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
import tifffile


def encode(ext: str, image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(ext, image)
    assert ok
    return buf.tobytes()


def tiff(image: np.ndarray, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, image, **kwargs)
    return buf.getvalue()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width × height grey pixels (zeros compress ~1000:1)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (width + 1) * 16, 9)  # only the first rows, still tiny
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", rows) + png_chunk(b"IEND", b"")


def hand_tiff(width: int, height: int, *, text_height: bool = False) -> bytes:
    """An uncompressed 8-bit grey TIFF, written tag by tag, with 16 bytes of pixel data
    whatever the size it claims. `text_height` types ImageLength as ASCII: tifffile's header
    reader then raises TypeError; 2 000 000×1 makes OpenCV raise cv2.error."""
    entries = [(256, 4, 1, width), (257, 2 if text_height else 4, 1, height), (258, 3, 1, 8),
               (259, 3, 1, 1), (262, 3, 1, 1), (273, 4, 1, 122), (277, 3, 1, 1), (278, 4, 1, height),
               (279, 4, 1, min(width * height, 2**32 - 1))]
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *entry) for entry in entries)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + b"\x00" * 4 + b"\x00" * 16


def deflated_tiff(height: int, width: int, samples: int) -> bytes:
    """A grey uint8 TIFF of `samples` samples per pixel, one deflate strip of zeros: the file
    is ~1000× smaller than the array it decodes to, and its pixel count looks harmless."""
    deflate, block = zlib.compressobj(9), bytes(2**20)
    size = height * width * samples
    strip = b"".join(deflate.compress(block) for _ in range(size // len(block)))
    strip += deflate.compress(bytes(size % len(block))) + deflate.flush()
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 8), (262, 3, 1, 1),
               (273, 4, 1, 134), (277, 3, 1, samples), (278, 4, 1, height), (279, 4, 1, len(strip)),
               (284, 3, 1, 1)]
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *entry) for entry in entries)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + b"\x00" * 4 + strip
