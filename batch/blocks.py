"""A slide cut into blocks, and what a Dask worker does with one block.

The slide is tiled by non-overlapping *cores* of `block` × `block` pixels. A worker reads
its core with `overlap` more pixels on every side (its *reach*, clipped to the slide),
segments all of it, and keeps the nuclei whose centroid lies in its core: every nucleus is
kept once, by the block that owns its centre, whole, because the overlap is wider than a
nucleus (the StarDist approach). A kept nucleus may run past the core into a neighbour's;
`batch.stitch` paints it there.

Every block is scaled with the same statistics (`nuclei.normalize.normalize_with`), taken
once from a sample of the whole slide (`sample`), so no block is normalised on its own.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from batch.slideio import SlideSpec, cached_slide
from batch.tables import NUCLEI
from batch.work import _segmenter
from nuclei.geojson import dumps
from nuclei.geojson import features as geojson_features
from nuclei.measure import measure
from nuclei.normalize import normalize_with
from nuclei.postprocess import instances
from nuclei.regions import CENTROID_DIGITS, regions
from nuclei.tiling import predict_tiled


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
    """Row-major blocks whose cores tile the slide, each reaching `overlap` further."""
    blocks = []
    for y in range(0, height, block):
        for x in range(0, width, block):
            core = Box(y, min(y + block, height), x, min(x + block, width))
            reach = Box(max(0, y - overlap), min(height, core.y1 + overlap),
                        max(0, x - overlap), min(width, core.x1 + overlap))
            blocks.append(Block(len(blocks), core, reach))
    return blocks


@dataclass(frozen=True)
class Task:
    """What every block task shares: small, shipped with each task."""

    slide: SlideSpec
    model_path: str
    threads: int
    low: float
    high: float
    invert: bool
    height: int
    width: int
    strip: int  # label strips are cut at multiples of this (the output's tile height)


@dataclass
class BlockResult:
    block: Block
    count: int
    strips: dict[int, bytes]  # row of output tiles → zlib-compressed local labels there
    dtype: str
    table: pa.Table | None = None  # nuclei.parquet rows, ids local (1..count)
    features: list[str] | None = field(default=None)  # serialised; `with_id` fills the id in
    cut: int = 0  # kept nuclei that reach the edge of the block's reach: overlap too small
    seconds: float = 0.0

    def labels(self, strip: int, height: int) -> np.ndarray:
        """Local labels (0, 1..count) of the rows of the reach within output strip `strip`."""
        reach = self.block.reach
        y0, y1 = max(reach.y0, strip * height), min(reach.y1, (strip + 1) * height)
        data = zlib.decompress(self.strips[strip])
        return np.frombuffer(data, self.dtype).reshape(y1 - y0, reach.x1 - reach.x0)


def sample(slide: SlideSpec, box: Box, step: int) -> np.ndarray:
    """Every `step`-th pixel of a region on the slide-wide grid: (n, channels) values."""
    image = cached_slide(slide).read(box.y0, box.y1, box.x0, box.x1)
    picked = image[(-box.y0) % step :: step, (-box.x0) % step :: step]
    return picked.reshape(-1, picked.shape[2] if picked.ndim == 3 else 1)


def _kept(labels: np.ndarray, block: Block, height: int, width: int) -> tuple[np.ndarray, int, int]:
    """Labels of the reach → (labels of the nuclei whose centroid is in the core, numbered
    1..n in order of first appearance, others 0; n; how many of them touch an edge of the
    reach inside the slide, where they were cut: the overlap is then too small)."""
    reach, core = block.reach, block.core
    found = regions(labels)
    if not len(found):
        return np.zeros(labels.shape, np.uint32), 0, 0
    cy, cx = np.floor(found.cy) + reach.y0, np.floor(found.cx) + reach.x0
    owned = (cy >= core.y0) & (cy < core.y1) & (cx >= core.x0) & (cx < core.x1)
    count = int(found.ids.max())
    keep = np.zeros(count + 1, bool)
    keep[found.ids[owned]] = True
    lookup = np.zeros(count + 1, np.uint32)
    lookup[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.uint32)
    kept = lookup[labels]
    edges = [edge for edge, inner in ((kept[0], reach.y0 > 0), (kept[-1], reach.y1 < height),
                                      (kept[:, 0], reach.x0 > 0), (kept[:, -1], reach.x1 < width)) if inner]
    cut = int(np.unique(np.concatenate(edges)).nonzero()[0].size) if edges else 0
    return kept, int(keep.sum()), cut


def segment_block(block: Block, task: Task) -> BlockResult:
    """Read, normalise with the slide's statistics, segment, keep the core's nuclei,
    measure them and outline them: everything in slide coordinates."""
    start = time.perf_counter()
    segmenter = _segmenter(task.model_path, task.threads)
    reach = block.reach
    image = cached_slide(task.slide).read(reach.y0, reach.y1, reach.x0, reach.x1)
    s = segmenter.inference
    probabilities = predict_tiled(
        normalize_with(image, task.low, task.high, task.invert), segmenter.run_batch,
        tile_size=s.tile_size, overlap=s.overlap, stride=segmenter.stride, batch_size=s.batch_size)
    labels = instances(probabilities, segmenter.thresholds)
    del probabilities
    kept, count, cut = _kept(labels, block, task.height, task.width)
    del labels
    found = regions(kept)
    rows = measure(kept, image, found)
    del image
    for row in rows:
        x, y = row["bbox_x"] + reach.x0, row["bbox_y"] + reach.y0
        row.update(centroid_x=float(np.round(row["centroid_x"] + reach.x0, CENTROID_DIGITS)),
                   centroid_y=float(np.round(row["centroid_y"] + reach.y0, CENTROID_DIGITS)), bbox_x=x, bbox_y=y,
                   touches_border=x == 0 or y == 0 or x + row["bbox_width"] == task.width
                   or y + row["bbox_height"] == task.height)
    features = []
    for item in geojson_features(kept, rows, found=found, offset=(reach.x0, reach.y0)):
        item["properties"]["measurements"]["id"] = 0  # rows from measure() start with the id
        features.append(dumps(item).replace(_ID_ZERO, _ID_PLACEHOLDER, 1))
    for row in rows:
        row["path"] = task.slide.path
    table = pa.Table.from_pylist(rows, schema=NUCLEI)
    return pack(block, kept, count, task.strip, table=table, features=features, cut=cut,
                seconds=round(time.perf_counter() - start, 3))


def pack(block: Block, kept: np.ndarray, count: int, strip: int, **fields: Any) -> BlockResult:
    """A block's kept labels, cut into rows of output tiles and compressed (labels are
    mostly runs of zeros: a few % of their size), for the trip to the client."""
    reach = block.reach
    dtype = np.uint16 if count < 1 << 16 else np.uint32
    strips = {}
    for k in range(reach.y0 // strip, (reach.y1 - 1) // strip + 1):
        y0, y1 = max(reach.y0, k * strip), min(reach.y1, (k + 1) * strip)
        part = np.ascontiguousarray(kept[y0 - reach.y0 : y1 - reach.y0], dtype)
        strips[k] = zlib.compress(part.tobytes(), 1)
    return BlockResult(block, count, strips, np.dtype(dtype).str, **fields)


_ID_ZERO = '"measurements":{"id":0'
_ID_PLACEHOLDER = '"measurements":{"id":\x00'


def with_id(text: str, nucleus_id: int) -> str:
    """A feature serialised by `segment_block`, with its slide-wide id filled in."""
    return text.replace("\x00", str(nucleus_id), 1)
