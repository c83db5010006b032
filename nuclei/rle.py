"""Where a nucleus becomes run-length encoding, a Kaggle CSV row, and a JSON record.

DSB2018 encoding: pixels numbered from 1, top to bottom then left to right (column-major),
space-separated `start length` pairs in ascending order.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

import numpy as np

from nuclei.regions import Regions, regions


def _runs(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of equal values in a 1-D array: (starts, lengths, values)."""
    if flat.size == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    cut = flat[1:] != flat[:-1]
    change = np.flatnonzero(cut) + 1
    starts = np.concatenate(([0], change))
    lengths = np.diff(np.concatenate((starts, [flat.size])))
    return starts, lengths, flat[starts]


def _format(starts: np.ndarray, lengths: np.ndarray) -> str:
    pairs = np.empty(2 * len(starts), np.int64)
    pairs[0::2], pairs[1::2] = starts + 1, lengths
    return " ".join(map(str, pairs.tolist()))


def encode(mask: np.ndarray) -> str:
    """Boolean HxW mask → DSB2018 RLE string ('' for an empty mask)."""
    starts, lengths, values = _runs(np.asarray(mask, bool).T.ravel())
    on = values.astype(bool)
    return _format(starts[on], lengths[on])


def decode(rle: str, height: int, width: int) -> np.ndarray:
    """DSB2018 RLE string → boolean HxW mask; rejects runs outside the image."""
    numbers = np.array(rle.split(), np.int64)
    if numbers.size % 2:
        raise ValueError("RLE needs an even count of numbers (start length pairs)")
    starts, lengths = numbers[0::2] - 1, numbers[1::2]
    if numbers.size and (starts.min() < 0 or (starts + lengths).max() > height * width):
        raise ValueError("RLE run outside the image")
    flat = np.zeros(height * width, bool)
    for start, length in zip(starts.tolist(), lengths.tolist(), strict=True):
        flat[start : start + length] = True
    return flat.reshape(width, height).T


@dataclass(frozen=True)
class Nucleus:
    id: int
    rle: str
    area: int
    bbox: tuple[int, int, int, int]  # x, y, width, height
    centroid: tuple[float, float]  # x, y


def nuclei(labels: np.ndarray, found: Regions | None = None) -> list[Nucleus]:
    """Every labelled nucleus (labels 1..N) with its RLE, and the area, box and centroid of
    `nuclei.regions` (`found`, when the caller has them already).

    One pass over the column-major runs serves all nuclei at once, so the cost grows with
    the image, not with image × nuclei.
    """
    found = regions(labels) if found is None else found
    rle = {v: _format(s, n) for v, (s, n) in _group_by_label(*_runs(np.asarray(labels).T.ravel())).items()}
    return [Nucleus(id=label, rle=rle[label], area=int(found.area[k]), bbox=found.bbox(k),
                    centroid=found.centroid(k))
            for k, label in enumerate(found.ids.tolist())]


def _group_by_label(
    starts: np.ndarray, lengths: np.ndarray, values: np.ndarray
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Runs of each nonzero label, ascending by start, keyed by label in ascending order."""
    keep = values > 0
    starts, lengths, values = starts[keep], lengths[keep], values[keep]
    order = np.argsort(values, kind="stable")  # stable: stays ascending by start
    starts, lengths, values = starts[order], lengths[order], values[order]
    bounds = np.flatnonzero(np.diff(values)) + 1
    return {
        int(v[0]): (s, n)
        for s, n, v in zip(np.split(starts, bounds), np.split(lengths, bounds),
                           np.split(values, bounds), strict=True)
        if len(v)
    }


def submission_csv(image_id: str, instances: list[Nucleus]) -> str:
    """A Kaggle DSB2018 submission: `ImageId,EncodedPixels`, one row per nucleus, quoted as
    RFC 4180 asks; an image without nuclei gets one row with empty EncodedPixels."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["ImageId", "EncodedPixels"])
    writer.writerows([image_id, n.rle] for n in instances)
    if not instances:
        writer.writerow([image_id, ""])
    return buf.getvalue()
