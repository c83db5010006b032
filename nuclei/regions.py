"""Where a nucleus gets its place: id, area, centroid and box of every label, computed in one
pass and read by every output (RLE records, measurements, GeoJSON outlines, slide blocks),
so `format=rle` and `format=measurements` cannot disagree about a nucleus.

Coordinates are pixel indices with the origin at the top-left pixel: a centroid is the mean
(x, y) of its pixels' indices, rounded to `CENTROID_DIGITS`; a box is (x, y, width, height).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CENTROID_DIGITS = 3


@dataclass(frozen=True)
class Regions:
    """Every nonzero label of an image, in ascending id order, and its pixels grouped by it."""

    width: int
    height: int
    ids: np.ndarray  # int64, ascending
    area: np.ndarray  # pixels per id
    mean_x: np.ndarray  # centroids before rounding: for shape moments only
    mean_y: np.ndarray
    x0: np.ndarray  # inclusive boxes
    y0: np.ndarray
    x1: np.ndarray
    y1: np.ndarray
    where: np.ndarray  # flat indices of the labelled pixels, grouped by id (ascending within)
    starts: np.ndarray  # where each id's pixels start in `where`

    def __len__(self) -> int:
        return int(self.ids.size)

    @property
    def ys(self) -> np.ndarray:
        return self.where // self.width

    @property
    def xs(self) -> np.ndarray:
        return self.where % self.width

    @property
    def cx(self) -> np.ndarray:
        """Centroid x of every region, rounded as every output writes it."""
        return np.round(self.mean_x, CENTROID_DIGITS)

    @property
    def cy(self) -> np.ndarray:
        return np.round(self.mean_y, CENTROID_DIGITS)

    def centroid(self, k: int) -> tuple[float, float]:
        """(x, y) of the k-th region."""
        return (float(np.round(self.mean_x[k], CENTROID_DIGITS)),
                float(np.round(self.mean_y[k], CENTROID_DIGITS)))

    def bbox(self, k: int) -> tuple[int, int, int, int]:
        """(x, y, width, height) of the k-th region."""
        return (int(self.x0[k]), int(self.y0[k]), int(self.x1[k] - self.x0[k] + 1),
                int(self.y1[k] - self.y0[k] + 1))

    def touches_border(self, k: int) -> bool:
        return bool(self.x0[k] == 0 or self.y0[k] == 0 or self.x1[k] == self.width - 1
                    or self.y1[k] == self.height - 1)


def regions(labels: np.ndarray) -> Regions:
    """Instance labels (HxW, 0 background) → their `Regions`: one stable sort of the labelled
    pixels, so the cost grows with the image, not with image × nuclei."""
    height, width = labels.shape
    flat = np.asarray(labels).ravel()
    where = np.flatnonzero(flat)
    where = where[np.argsort(flat[where], kind="stable")]
    values = flat[where]
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]]) if where.size else np.zeros(0, np.int64)
    ids = values[starts].astype(np.int64)
    area = np.diff(np.r_[starts, values.size]).astype(np.int64)
    if not where.size:
        empty = np.zeros(0, np.int64)
        return Regions(width, height, ids, area, empty.astype(float), empty.astype(float), empty, empty, empty,
                       empty, where, starts)
    ys, xs = np.divmod(where, width)
    mean_x, mean_y = np.add.reduceat(xs, starts) / area, np.add.reduceat(ys, starts) / area
    x0, x1 = np.minimum.reduceat(xs, starts), np.maximum.reduceat(xs, starts)
    y0, y1 = np.minimum.reduceat(ys, starts), np.maximum.reduceat(ys, starts)
    return Regions(width, height, ids, area, mean_x, mean_y, x0, y0, x1, y1, where, starts)
