"""An image cut into blocks, and which block owns which nucleus (StarDist's approach).

The image is tiled by non-overlapping *cores* of `block` × `block` pixels. A block is
segmented over its core and `overlap` more pixels on every side (its *reach*, clipped to the
image), and keeps the nuclei whose centroid (`nuclei.regions`) lies in its core: every
nucleus is kept once, by the block that owns its centre, whole, because the overlap is wider
than a nucleus. A kept nucleus may run past the core into a neighbour's; `nuclei.stitch`
paints it there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nuclei.regions import regions


@dataclass(frozen=True)
class Box:
    y0: int
    y1: int
    x0: int
    x1: int

    def intersect(self, other: Box) -> Box | None:
        y0, y1 = max(self.y0, other.y0), min(self.y1, other.y1)
        x0, x1 = max(self.x0, other.x0), min(self.x1, other.x1)
        return Box(y0, y1, x0, x1) if y0 < y1 and x0 < x1 else None


@dataclass(frozen=True)
class Block:
    index: int  # row-major: the order ids are given in
    core: Box
    reach: Box


def grid(height: int, width: int, block: int, overlap: int) -> list[Block]:
    """Row-major blocks whose cores tile the image, each reaching `overlap` further."""
    blocks = []
    for y in range(0, height, block):
        for x in range(0, width, block):
            core = Box(y, min(y + block, height), x, min(x + block, width))
            reach = Box(max(0, y - overlap), min(height, core.y1 + overlap),
                        max(0, x - overlap), min(width, core.x1 + overlap))
            blocks.append(Block(len(blocks), core, reach))
    return blocks


def owned(labels: np.ndarray, block: Block, height: int, width: int) -> tuple[np.ndarray, int, int]:
    """Labels of the reach → (labels of the nuclei whose centroid is in the core, numbered
    1..n in ascending order of their label, others 0; n; how many of them touch an edge of
    the reach inside the image, where they were cut: the overlap is then too small)."""
    reach, core = block.reach, block.core
    found = regions(labels)
    if not len(found):
        return np.zeros(labels.shape, np.uint32), 0, 0
    cy, cx = np.floor(found.cy) + reach.y0, np.floor(found.cx) + reach.x0
    mine = (cy >= core.y0) & (cy < core.y1) & (cx >= core.x0) & (cx < core.x1)
    lookup = np.zeros(int(found.ids.max()) + 1, np.uint32)
    lookup[found.ids[mine]] = np.arange(1, int(mine.sum()) + 1, dtype=np.uint32)
    kept = lookup[labels]
    edges = [edge for edge, inner in ((kept[0], reach.y0 > 0), (kept[-1], reach.y1 < height),
                                      (kept[:, 0], reach.x0 > 0), (kept[:, -1], reach.x1 < width)) if inner]
    cut = int(np.unique(np.concatenate(edges)).nonzero()[0].size) if edges else 0
    return kept, int(mine.sum()), cut
