"""Block labels, arriving in any order → the slide's label tiles in row-major order and
each block's nuclei in block order, with ids unique across the slide.

Ids: a block's nuclei are numbered 1..n locally; once every earlier block (row-major) is in,
its offset is the number of nuclei before it, so the slide's ids run 1..N without gaps, in
the same order whatever the cluster did.

Seams: each output pixel belongs to the core of exactly one block. A tile is painted first
with each core's own nuclei, then with the parts of nuclei that their blocks kept but that
run past those blocks' cores (a nucleus is kept whole by the block owning its centre);
those fill only pixels that no core's own nucleus claims, so where two blocks disagree by a
pixel at a seam, the core's owner wins and no pixel holds two nuclei.

Memory: a tile row needs only the blocks whose reach touches it; their labels are kept
zlib-compressed per row of tiles and decoded one strip at a time as the row is written, and
released once the rows below no longer need them.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from nuclei.blocks import Block, Box


@dataclass
class BlockLabels:
    """One block's kept nuclei (local ids 1..count), cut into rows of output tiles and
    zlib-compressed (labels are mostly runs of zeros: a few % of their size), so they are
    cheap to hold, or to send from a worker, until their tiles are written."""

    block: Block
    count: int
    strips: dict[int, bytes]  # row of output tiles → compressed local labels there
    dtype: str

    def labels(self, strip: int, height: int) -> np.ndarray:
        """Local labels (0, 1..count) of the rows of the reach within output strip `strip`."""
        reach = self.block.reach
        y0, y1 = max(reach.y0, strip * height), min(reach.y1, (strip + 1) * height)
        data = zlib.decompress(self.strips[strip])
        return np.frombuffer(data, self.dtype).reshape(y1 - y0, reach.x1 - reach.x0)


def pack(block: Block, kept: np.ndarray, count: int, strip: int) -> tuple[dict[int, bytes], str]:
    """A block's kept labels → (compressed rows of output tiles `strip` high, their dtype)."""
    reach = block.reach
    dtype = np.uint16 if count < 1 << 16 else np.uint32
    strips = {}
    for k in range(reach.y0 // strip, (reach.y1 - 1) // strip + 1):
        y0, y1 = max(reach.y0, k * strip), min(reach.y1, (k + 1) * strip)
        part = np.ascontiguousarray(kept[y0 - reach.y0 : y1 - reach.y0], dtype)
        strips[k] = zlib.compress(part.tobytes(), 1)
    return strips, np.dtype(dtype).str


class Stitcher:
    def __init__(self, blocks: list[Block], height: int, width: int, tile: int,
                 emit: Callable[[BlockLabels, int], None]) -> None:
        self.blocks, self.height, self.width, self.tile = blocks, height, width, tile
        self._emit = emit  # (result, id offset) → write its rows and features
        self.results: dict[int, BlockLabels] = {}
        self.offsets: dict[int, int] = {}
        self.emitted = 0  # blocks 0..emitted-1 have their offsets and are written
        self.total = 0

    def add(self, result: BlockLabels) -> None:
        self.results[result.block.index] = result
        while self.emitted in self.results:
            ready = self.results[self.emitted]
            self.offsets[self.emitted] = self.total
            self._emit(ready, self.total)  # may drop what `ready` holds beyond its labels
            self.total += ready.count
            self.emitted += 1

    def lowest_held(self) -> int:
        return min(self.results, default=self.emitted)

    def tiles(self, wait: Callable[[int], None]) -> Iterator[np.ndarray]:
        """The label image's tiles, row by row; `wait(k)` returns once blocks 0..k are added."""
        t = self.tile
        for ty in range(0, self.height, t):
            y1 = min(ty + t, self.height)
            needed = [b for b in self.blocks if b.reach.y0 < y1 and b.reach.y1 > ty]
            wait(max(b.index for b in needed))
            strip = ty // t
            decoded: dict[int, np.ndarray] = {}
            for tx in range(0, self.width, t):
                box = Box(ty, y1, tx, min(tx + t, self.width))
                out = np.zeros((t, t), np.uint32)
                touching = [b for b in needed if b.reach.x0 < box.x1 and b.reach.x1 > box.x0]
                for k in [k for k in decoded if self.blocks[k].reach.x1 <= box.x0]:
                    del decoded[k]
                for b in touching:
                    if b.index not in decoded:
                        decoded[b.index] = self.results[b.index].labels(strip, t)
                for own in (True, False):  # cores' own nuclei first, then what spills over
                    for b in touching:
                        self._paint(out, box, b, decoded[b.index], own)
                yield out
            for b in needed:
                if b.reach.y1 <= y1:
                    self.results.pop(b.index, None)

    def _paint(self, out: np.ndarray, box: Box, block: Block, labels: np.ndarray, own: bool) -> None:
        area = (block.core if own else block.reach).intersect(box)
        if area is None:
            return
        reach = block.reach
        first_row = max(reach.y0, box.y0)  # the strip's first row on the slide
        local = labels[area.y0 - first_row : area.y1 - first_row, area.x0 - reach.x0 : area.x1 - reach.x0]
        target = out[area.y0 - box.y0 : area.y1 - box.y0, area.x0 - box.x0 : area.x1 - box.x0]
        where = local > 0 if own else (local > 0) & (target == 0)
        np.add(local, np.uint32(self.offsets[block.index]), out=target, where=where, casting="unsafe")
