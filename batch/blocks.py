"""What a Dask worker does with one block of a slide: read its reach, segment it with the
big-image core (`nuclei.big.block_result`: the Segmenter's public API, the slide's one
normalisation and one size), and measure and outline the nuclei it owns, in slide
coordinates. The grid, ownership and stitching are `nuclei.blocks` and `nuclei.stitch`.

Every block is scaled with the same statistics, taken once from a sample of the whole slide
(`sample`), so no block is normalised on its own.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from batch.slideio import SlideSpec, cached_slide
from batch.tables import NUCLEI
from batch.work import segmenter_for
from nuclei.big import block_result
from nuclei.blocks import Block, Box
from nuclei.geojson import dumps
from nuclei.geojson import features as geojson_features
from nuclei.measure import measure
from nuclei.quality import Quality
from nuclei.regions import CENTROID_DIGITS, regions
from nuclei.stitch import BlockLabels, pack


@dataclass(frozen=True)
class Task:
    """What every block task shares: small, shipped with each task."""

    slide: SlideSpec
    model_path: str  # the slide's model, routed once for the whole slide (batch.slide)
    threads: int
    low: float
    high: float
    invert: bool
    height: int
    width: int
    strip: int  # label strips are cut at multiples of this (the output's tile height)
    diameter: float | None = None  # the slide's median nucleus diameter (px); None: the model's own
    quality: bool = True  # each block's trust signal (nuclei.quality): one more pass per block


@dataclass
class BlockResult(BlockLabels):
    table: pa.Table | None = None  # nuclei.parquet rows, ids local (1..count)
    features: list[str] | None = field(default=None)  # serialised; `with_id` fills the id in
    cut: int = 0  # kept nuclei that reach the edge of the block's reach: overlap too small
    seconds: float = 0.0
    quality: Quality | None = None


def sample(slide: SlideSpec, box: Box, step: int) -> np.ndarray:
    """Every `step`-th pixel of a region on the slide-wide grid: its piece of the slide's
    overview `slide[::step, ::step]`, (h, w) or (h, w, channels)."""
    image = cached_slide(slide).read(box.y0, box.y1, box.x0, box.x1)
    return np.ascontiguousarray(image[(-box.y0) % step :: step, (-box.x0) % step :: step])


def segment_block(block: Block, task: Task) -> BlockResult:
    """Read, normalise with the slide's statistics, segment, keep the core's nuclei,
    measure them and outline them: everything in slide coordinates."""
    start = time.perf_counter()
    segmenter = segmenter_for(task.model_path, task.threads)
    reach = block.reach
    image = cached_slide(task.slide).read(reach.y0, reach.y1, reach.x0, reach.x1)
    kept, count, cut, trust = block_result(segmenter, image, block, task.height, task.width,
                                           (task.low, task.high, task.invert), task.diameter, task.quality)
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
    return BlockResult(block, count, *pack(block, kept, count, task.strip), table=table, features=features,
                       cut=cut, seconds=round(time.perf_counter() - start, 3), quality=trust)


_ID_ZERO = '"measurements":{"id":0'
_ID_PLACEHOLDER = '"measurements":{"id":\x00'


def with_id(text: str, nucleus_id: int) -> str:
    """A feature serialised by `segment_block`, with its slide-wide id filled in."""
    return text.replace("\x00", str(nucleus_id), 1)
