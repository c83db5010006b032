"""Labels → GeoJSON detections that QuPath imports (File › Import objects, or drag and drop).

Each nucleus becomes one Feature whose geometry follows the pixel edges of its label, in
pixel coordinates with the origin at the top-left corner of the image (pixel (x, y) is the
square [x, x+1] × [y, y+1], QuPath's convention). Nothing is simplified: only the points
where the outline turns are kept, so the polygon covers exactly the nucleus' pixels and its
area equals the pixel count. Holes inside a nucleus are filled (outer outline only).

The rings are traced on pixel edges rather than through pixel centres (as `cv2.findContours`
does) because a centre outline degenerates where a nucleus is one pixel wide, giving rings
that retrace themselves: invalid polygons. Edge outlines are always valid (shapely/GEOS):
pixels touching only at a corner are separate parts (4-connectivity), and an outline that
meets itself at such a corner is split there, the enclosed bay becoming a hole that touches
the shell at that one point.

    features(labels, measurements)     one Feature dict per nucleus, lazily
    feature_collection(labels, …)      a whole FeatureCollection dict, for one image
    FeatureWriter(file)                a FeatureCollection streamed to disk, feature by feature
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping
from typing import IO, Any

import numpy as np

from nuclei.regions import Regions, regions

NUCLEUS = {"name": "Nucleus", "color": [230, 60, 60]}
"""QuPath's classification of every feature; the colour is RGB 0–255."""

# Directions of unit edges, (dx, dy) with y down: 0 → +x, 1 → +y, 2 → -x, 3 → -y.
# An edge keeps its pixel on its right, so (d + 1) % 4 is a right turn.
_STEP = np.array([(1, 0), (0, 1), (-1, 0), (0, -1)])


def _edges(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Directed boundary edges of a padded boolean mask: (start x, start y, direction), in
    the unpadded grid (corners run from 0 to w and 0 to h)."""
    inside = mask[1:-1, 1:-1]
    xs, ys, ds = [], [], []
    # neighbour outside → that side of the pixel is an edge; start corner as (dx, dy)
    for direction, (dy, dx), (sx, sy) in (
        (0, (-1, 0), (0, 0)),  # top: (x, y) → (x+1, y)
        (1, (0, 1), (1, 0)),  # right: (x+1, y) → (x+1, y+1)
        (2, (1, 0), (1, 1)),  # bottom: (x+1, y+1) → (x, y+1)
        (3, (0, -1), (0, 1)),  # left: (x, y+1) → (x, y)
    ):
        h, w = inside.shape
        neighbour = mask[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
        r, c = np.nonzero(inside & ~neighbour)
        xs.append(c + sx)
        ys.append(r + sy)
        ds.append(np.full(r.size, direction))
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(ds)


def _cycles(mask: np.ndarray) -> tuple[list[tuple[np.ndarray, np.ndarray]], bool]:
    """The closed outlines of a boolean mask — for each, its corners (k×2, x and y in the
    mask's pixel grid) and the direction of the edge leaving each corner — and whether any
    corner joins two pixels that touch only there (an outline may then pass it twice)."""
    h, w = mask.shape
    padded = np.zeros((h + 2, w + 2), bool)
    padded[1:-1, 1:-1] = mask
    x, y, d = _edges(padded)
    if not x.size:
        return [], False
    width = w + 1
    start = y * width + x
    end = start + _STEP[d, 1] * width + _STEP[d, 0]
    # Each corner has one outgoing edge, or two where two pixels touch only at that corner;
    # there the right turn keeps to the same pixel.
    order = np.argsort(start, kind="stable")
    sorted_start = start[order]
    first = np.searchsorted(sorted_start, end)
    following = order[first]
    second = np.minimum(first + 1, order.size - 1)
    pinch = (sorted_start[second] == end) & (second != first)
    pinched = bool(pinch.any())
    if pinched:
        use_other = pinch & (d[following] != (d + 1) % 4)
        following = np.where(use_other, order[second], following)
    following_list = following.tolist()
    seen = bytearray(len(following_list))
    cycles = []
    for begin in range(len(following_list)):
        if seen[begin]:
            continue
        cycle = []
        edge = begin
        while not seen[edge]:
            seen[edge] = 1
            cycle.append(edge)
            edge = following_list[edge]
        index = np.array(cycle)
        dirs = d[index]
        turns = np.empty(dirs.size, bool)  # keep corners only: the outline is unchanged
        turns[0] = dirs[0] != dirs[-1]
        np.not_equal(dirs[1:], dirs[:-1], out=turns[1:])
        index = index[turns]
        cycles.append((np.stack([x[index], y[index]], axis=1), d[index]))
    return cycles, pinched


def _simple_loops(points: np.ndarray) -> list[np.ndarray]:
    """Split a closed outline that passes a corner twice into loops that pass it once."""
    keys = [tuple(p) for p in points.tolist()]
    counts: dict[tuple[int, int], int] = {}
    for key in keys:
        counts[key] = counts.get(key, 0) + 1
    if len(counts) == len(keys):
        return [points]
    begin = next(i for i, key in enumerate(keys) if counts[key] == 1)
    order = list(range(begin, len(keys))) + list(range(begin))
    loops: list[np.ndarray] = []
    path: list[int] = []
    where: dict[tuple[int, int], int] = {}
    for i in order:
        key = keys[i]
        if key in where:
            cut = where[key]
            loops.append(points[path[cut:]])
            for j in path[cut + 1 :]:
                where.pop(keys[j], None)
            path = path[: cut + 1]
        else:
            where[key] = len(path)
            path.append(i)
    loops.append(points[path])
    return loops


def _area(ring: np.ndarray) -> float:
    """Shoelace area: positive for outer outlines, negative for holes and bays (y down)."""
    x, y = ring[:, 0], ring[:, 1]
    return float(np.dot(x[:-1], y[1:]) - np.dot(x[1:], y[:-1]) + x[-1] * y[0] - x[0] * y[-1]) / 2


def _inside(point: tuple[float, float], ring: np.ndarray) -> bool:
    """Whether a point off the ring's edges lies inside it (even-odd ray casting)."""
    px, py = point
    x, y = ring[:, 0].astype(float), ring[:, 1].astype(float)
    nx, ny = np.roll(x, -1), np.roll(y, -1)
    crosses = (y > py) != (ny > py)
    with np.errstate(divide="ignore", invalid="ignore"):
        at = x + (py - y) * (nx - x) / (ny - y)
    return bool(np.count_nonzero(crosses & (px < at)) % 2)


def _closed(ring: np.ndarray, dx: float, dy: float) -> list[list[float]]:
    coords = (ring + np.array([dx, dy], dtype=ring.dtype if float(dx).is_integer() and float(dy).is_integer()
                              else float)).tolist()
    coords.append(coords[0])
    return coords


def geometry(mask: np.ndarray, offset: tuple[float, float] = (0, 0)) -> dict[str, Any] | None:
    """A boolean mask → GeoJSON Polygon (or MultiPolygon for parts touching only at
    corners) of its pixel outline, shifted by `offset` (x, y); None for an empty mask."""
    cycles, pinched = _cycles(mask)
    loops = []
    for points, dirs in cycles:
        for loop in _simple_loops(points) if pinched else (points,):
            loops.append((loop, _area(loop), points, dirs))
    shells = sorted((item for item in loops if item[1] > 0), key=lambda item: -item[1])
    if not shells:
        return None
    dx, dy = offset
    polygons: list[list[list[list[float]]]] = []
    kept: list[list[np.ndarray]] = []
    for shell, _, points, dirs in shells:
        # a part inside an earlier shell sits in a hole of it, and holes are filled
        step = _STEP[dirs[0]]
        centre = (points[0][0] + 0.5 * step[0] - 0.5 * step[1], points[0][1] + 0.5 * step[1] + 0.5 * step[0])
        if any(_inside(centre, rings[0]) and not any(_inside(centre, b) for b in rings[1:]) for rings in kept):
            continue
        # bays: loops cut from this shell's own outline, enclosing background reached
        # only through a corner; they are holes touching the shell at that corner
        bays = [loop for loop, area, source, _ in loops if area < 0 and source is points]
        kept.append([shell, *bays])
        polygons.append([_closed(ring, dx, dy) for ring in (shell, *bays)])
    if len(polygons) == 1:
        return {"type": "Polygon", "coordinates": polygons[0]}
    return {"type": "MultiPolygon", "coordinates": polygons}


def _numbers(row: Mapping[str, Any]) -> dict[str, float | int]:
    """QuPath measurements are numbers: booleans become 0/1; NaN and text are left out."""
    out: dict[str, float | int] = {}
    for name, value in row.items():
        if isinstance(value, bool | np.bool_ | int | np.integer):
            out[name] = int(value)
        elif isinstance(value, float | np.floating) and math.isfinite(value):
            out[name] = float(value)
    return out


def feature(geom: dict[str, Any], measurements: Mapping[str, Any] | None = None,
            classification: Mapping[str, Any] = NUCLEUS) -> dict[str, Any]:
    """One QuPath detection."""
    properties: dict[str, Any] = {"objectType": "detection", "classification": dict(classification)}
    if measurements:
        properties["measurements"] = _numbers(measurements)
    return {"type": "Feature", "geometry": geom, "properties": properties}


def features(labels: np.ndarray, measurements: Iterable[Mapping[str, Any]] | None = None, *,
             found: Regions | None = None, offset: tuple[float, float] = (0, 0),
             classification: Mapping[str, Any] = NUCLEUS) -> Iterator[dict[str, Any]]:
    """Instance labels → one Feature per label, in ascending label order, each outlined
    within its box from `nuclei.regions` (`found`, when the caller has them already).

    `measurements`: rows with an `id` (e.g. `nuclei.measure.measure(labels, image)`), put in
    each feature's `properties.measurements`; without them a feature measures its `id`."""
    rows = {int(r["id"]): r for r in measurements} if measurements is not None else {}
    found = regions(labels) if found is None else found
    for k, label in enumerate(found.ids.tolist()):
        x, y, w, h = found.bbox(k)
        geom = geometry(labels[y : y + h, x : x + w] == label, (x + offset[0], y + offset[1]))
        if geom is not None:
            yield feature(geom, rows.get(label, {"id": label}), classification)


def feature_collection(labels: np.ndarray, measurements: Iterable[Mapping[str, Any]] | None = None,
                       **kwargs: Any) -> dict[str, Any]:
    """A whole FeatureCollection for one image (small images; slides stream `FeatureWriter`)."""
    return {"type": "FeatureCollection", "features": list(features(labels, measurements, **kwargs))}


def dumps(obj: Any) -> str:
    """Compact, strict JSON (NaN refused: it is not JSON)."""
    return json.dumps(obj, separators=(",", ":"), allow_nan=False)


class FeatureWriter:
    """A FeatureCollection written to a text stream as features arrive: the header, each
    feature, the footer. Memory holds one feature, whatever the number of nuclei."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self.count = 0
        stream.write('{"type":"FeatureCollection","features":[\n')

    def write(self, feature_: dict[str, Any] | str) -> None:
        """A Feature dict, or one already serialised with `dumps`."""
        text = feature_ if isinstance(feature_, str) else dumps(feature_)
        self._stream.write(text if not self.count else ",\n" + text)
        self.count += 1

    def close(self) -> None:
        self._stream.write("\n]}\n")
