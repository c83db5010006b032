"""Images too large to segment in one piece, as functions of arrays (StarDist's `big.py`):
the image cut into blocks (`nuclei.blocks`), each block segmented through the Segmenter's
public `segment_sized`, the nuclei it owns kept, and the blocks stitched (`nuclei.stitch`).
`nuclei-batch SLIDE` runs `block_labels` on Dask workers; `segment_big` runs the same in one
process, for an image already in memory (the napari plugin, the service).

One scale for the whole image, whatever the block:
- one normalisation: every block is scaled with the image-wide statistics (those of the
  image, or of an even sample of a slide: `nuclei.normalize.statistics`) and `anchored`, so
  the Segmenter's own per-image normalisation leaves it exactly as it is;
- one size: every block is resized by the factor a slide-wide `diameter` gives
  (`nuclei.scale`), or not at all without one (an estimate per block would differ by block).
"""

from __future__ import annotations

import math

import numpy as np

from nuclei.blocks import Block, grid, owned
from nuclei.normalize import HIGH_PERCENTILE, LOW_PERCENTILE, normalize_with, statistics
from nuclei.quality import Quality, assess
from nuclei.segmenter import Segmenter
from nuclei.stitch import BlockLabels, Stitcher, pack

Normalisation = tuple[float, float, bool]  # (low, high, invert): nuclei.normalize.statistics
MIRROR = 32  # rows mirrored below a block, as the tiler pads an image's edge
TILE = 512  # rows of output tiles labels are held and stitched in


def anchored(block: np.ndarray) -> np.ndarray:
    """A block already normalised (float32 HxWx3 in [0, 1], bright nuclei) with rows added
    below so that `nuclei.normalize.normalize` returns it unchanged: `MIRROR` rows mirrored
    (the context the tiler would give the image's edge), then enough black rows that the 1st
    percentile is 0 and the median grey level at most ½, then enough white rows that the
    99.8th percentile is 1. The added rows are cropped from the labels; they cost a few %."""
    height, width = block.shape[:2]
    body = np.concatenate([block, block[::-1][: min(MIRROR, height)]])
    zeros, ones = int(np.count_nonzero(body == 0)), int(np.count_nonzero(body == 1))
    bright = int(np.count_nonzero(body.mean(axis=2) > 0.5))
    black, white = 1, 1
    while True:
        pixels = (body.shape[0] + black + white) * width
        values = 3 * pixels
        low_ok = zeros + 3 * black * width >= math.floor((values - 1) * LOW_PERCENTILE / 100) + 2
        high_ok = ones + 3 * white * width >= values - math.floor((values - 1) * HIGH_PERCENTILE / 100) + 1
        median_ok = bright + white * width <= pixels / 2 - 1
        if low_ok and high_ok and median_ok:
            break
        white += not high_ok
        black += not (low_ok and median_ok)
    return np.concatenate([body, np.zeros((black, width, 3), np.float32), np.ones((white, width, 3), np.float32)])


def block_labels(segmenter: Segmenter, image: np.ndarray, block: Block, height: int, width: int,
                 normalisation: Normalisation, diameter: float | None = None,
                 ) -> tuple[np.ndarray, int, int]:
    """One block's pixels (its reach, as decoded) → `nuclei.blocks.owned` of its nuclei:
    (labels of the nuclei it owns, their count, how many were cut by the reach's edge)."""
    return block_result(segmenter, image, block, height, width, normalisation, diameter)[:3]


def block_result(segmenter: Segmenter, image: np.ndarray, block: Block, height: int, width: int,
                 normalisation: Normalisation, diameter: float | None = None, quality: bool = False,
                 ) -> tuple[np.ndarray, int, int, Quality | None]:
    """`block_labels`, and with `quality` the model's agreement with itself over the block's
    reach (`nuclei.quality`: one more pass), so a slide gets a map of its doubtful regions."""
    size = diameter or segmenter.card.nucleus_scale.diameter
    block_image = anchored(normalize_with(image, *normalisation))
    sized = segmenter.segment_sized(block_image, diameter=size)
    trust = assess(segmenter, block_image, sized) if quality else None
    return (*owned(sized.labels[: image.shape[0]], block, height, width), trust)


def check_blocks(block: int, overlap: int, stride: int) -> None:
    """Blocks on the network's pixel grid: a nucleus seen by two blocks is seen the same way."""
    if block < 4 * stride or overlap < 0 or block % stride or overlap % stride:
        raise ValueError(f"block (at least {4 * stride}) and overlap must be multiples of {stride}, "
                         "the model's stride")


def segment_big(segmenter: Segmenter, image: np.ndarray, *, block: int = 2560, overlap: int = 128,
                diameter: float | None = None, normalisation: Normalisation | None = None) -> np.ndarray:
    """A whole image in memory → uint32 instance labels (1..N in block order), block by block
    as `nuclei-batch SLIDE` segments it, without Dask. `normalisation`: default the image's own
    statistics; `diameter`: one for the whole image, default the model's training diameter."""
    check_blocks(block, overlap, segmenter.card.input.stride)
    height, width = image.shape[:2]
    normalisation = normalisation or statistics(image)
    blocks = grid(height, width, block, overlap)
    stitcher = Stitcher(blocks, height, width, TILE, emit=lambda result, offset: None)
    for b in blocks:
        r = b.reach
        kept, count, _ = block_labels(segmenter, image[r.y0 : r.y1, r.x0 : r.x1], b, height, width,
                                      normalisation, diameter)
        stitcher.add(BlockLabels(b, count, *pack(b, kept, count, TILE)))
    out = np.zeros((height, width), np.uint32)
    tiles = stitcher.tiles(lambda index: None)
    for y in range(0, height, TILE):
        for x in range(0, width, TILE):
            tile = next(tiles)
            out[y : y + TILE, x : x + TILE] = tile[: min(TILE, height - y), : min(TILE, width - x)]
    return out
