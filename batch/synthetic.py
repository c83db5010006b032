"""Synthetic-but-real slides for the slide tests and benchmark: the DSB2018 samples
(samples/*.png, flipped and turned) tiled over a dark background into a tiled, deflated
BigTIFF, written tile by tile, never whole in memory.

    python -m batch.synthetic /tmp/slide/s12k.tif --size 12000

Every sample is first brought to one intensity scale (`dark_grey`), as the fields of one
well or one section share an exposure, so one slide-wide normalisation suits all of them.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tifffile

from nuclei.imageio import decode_image
from nuclei.normalize import normalize

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def dark_grey(image: np.ndarray) -> np.ndarray:
    """A sample as a uint8 grey image with bright nuclei on a black background whose own
    normalisation is the identity: ≥ 2 % of it is 0 and ≥ 1 % is 255, so its 1st and 99.8th
    percentiles are 0 and 255 and `normalize(piece) == piece / 255`."""
    grey = normalize(image).mean(axis=2)
    low, high = np.percentile(grey, (2, 99))
    return np.clip((grey - low) / max(high - low, 1e-6) * 255, 0, 255).round().astype(np.uint8)


def pieces() -> list[np.ndarray]:
    """Every sample, dark grey, in 4 orientations."""
    out = []
    for path in sorted(SAMPLES.glob("*.png")):
        base = dark_grey(decode_image(path.read_bytes()))
        out += [np.ascontiguousarray(v) for v in (base, base[::-1], np.rot90(base), np.rot90(base[:, ::-1]))]
    return out


def _cell_tiles(height: int, width: int, tile: int, cell: int, seed: int) -> Iterator[np.ndarray]:
    """Tiles of a slide made of `cell`-sized squares, each holding one piece at a random
    offset on a black background, generated a tile row at a time."""
    parts = pieces()
    cols = -(-width // cell)
    for ty in range(0, height, tile):
        band = np.zeros((min(tile, height - ty), width), np.uint8)
        for cy in range(ty // cell, (min(ty + tile, height) - 1) // cell + 1):
            row_rng = np.random.default_rng([seed, cy])
            for cx in range(cols):
                piece = parts[int(row_rng.integers(len(parts)))]
                h, w = piece.shape
                oy = cy * cell + int(row_rng.integers(0, max(1, cell - h)))
                ox = cx * cell + int(row_rng.integers(0, max(1, cell - w)))
                y0, y1 = max(oy, ty), min(oy + h, ty + band.shape[0], height)
                x1 = min(ox + w, width)
                if y0 < y1 and ox < x1:
                    band[y0 - ty : y1 - ty, ox:x1] = piece[y0 - oy : y1 - oy, : x1 - ox]
        for tx in range(0, width, tile):
            yield band[:, tx : tx + tile]


def make(path: str, size: int, tile: int = 512, cell: int = 736, seed: int = 0) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        tif.write(_cell_tiles(size, size, tile, cell, seed), shape=(size, size), dtype=np.uint8,
                  tile=(tile, tile), compression="zlib", maxworkers=1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m batch.synthetic", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path")
    p.add_argument("--size", type=int, default=12000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    start = time.perf_counter()
    make(args.path, args.size, seed=args.seed)
    print(f"{args.path}: {args.size}×{args.size} in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
