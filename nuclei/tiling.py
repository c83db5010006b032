"""Full-resolution inference on any image size: pad to the network's stride, cut overlapping
tiles, run them in batches, keep each tile's centre and crop back to the input size.

The network never sees a resized image, so a 1388×1040 micrograph keeps its detail, and
memory is bounded by the tile size rather than by the image size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

RunBatch = Callable[[np.ndarray], np.ndarray]
"""NxHxWxC float32 → NxHxWxK float32: the network, whatever runs it."""


def pad_to_multiple(image: np.ndarray, multiple: int, minimum: int = 0) -> np.ndarray:
    """Mirror-pad bottom/right so both sides are ≥ minimum and divisible by multiple."""
    height, width = image.shape[:2]
    target_h = _round_up(max(height, minimum), multiple)
    target_w = _round_up(max(width, minimum), multiple)
    pad = [(0, target_h - height), (0, target_w - width)] + [(0, 0)] * (image.ndim - 2)
    # "symmetric" copes with 1-pixel images, where "reflect" has nothing to mirror.
    return np.pad(image, pad, mode="symmetric")


def tile_origins(length: int, tile_size: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size `tile_size` covering [0, length) with at least `overlap`."""
    if length <= tile_size:
        return [0]
    step = tile_size - overlap
    origins = list(range(0, length - tile_size, step))
    origins.append(length - tile_size)
    return origins


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _kept_span(origin: int, tile: int, length: int, margin: int) -> tuple[int, int]:
    """The part of a tile whose predictions we trust: all but `margin` at inner edges."""
    start = origin if origin == 0 else origin + margin
    stop = origin + tile if origin + tile >= length else origin + tile - margin
    return start, stop


def _batches(items: list[tuple[int, int]], size: int) -> Iterator[list[tuple[int, int]]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def predict_tiled(
    image: np.ndarray,
    run_batch: RunBatch,
    *,
    tile_size: int,
    overlap: int,
    stride: int,
    batch_size: int = 4,
) -> np.ndarray:
    """HxWxC normalised image → HxWxK network output at the input's exact size.

    Tiles overlap by `overlap` pixels and each keeps only its centre (half the overlap is
    dropped at every inner edge), so no pixel is predicted from a tile border where the
    network lacks context. `tile_size` and `overlap` must be multiples of `stride`.
    """
    if tile_size % stride or overlap % stride or not 0 <= overlap < tile_size:
        raise ValueError(f"tile size {tile_size} and overlap {overlap} must be multiples of {stride}")
    height, width = image.shape[:2]
    padded = pad_to_multiple(image, stride)
    ph, pw = padded.shape[:2]
    th, tw = min(tile_size, ph), min(tile_size, pw)
    origins = [(y, x) for y in tile_origins(ph, th, overlap) for x in tile_origins(pw, tw, overlap)]
    margin = overlap // 2
    out: np.ndarray | None = None
    for group in _batches(origins, batch_size):
        batch = np.stack([padded[y : y + th, x : x + tw] for y, x in group])
        pred = run_batch(batch)
        if out is None:
            out = np.empty((ph, pw, pred.shape[-1]), np.float32)
        for (y, x), tile_pred in zip(group, pred, strict=True):
            y0, y1 = _kept_span(y, th, ph, margin)
            x0, x1 = _kept_span(x, tw, pw, margin)
            out[y0:y1, x0:x1] = tile_pred[y0 - y : y1 - y, x0 - x : x1 - x]
    assert out is not None
    return out[:height, :width]
