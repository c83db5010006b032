"""Label files → instance labels: the readers beside the writers (`encode` writes a 16-bit label
PNG, `geojson` QuPath's polygons, DSB2018 ships one mask PNG per nucleus), so a lab's
annotations come in the same three forms the service gives out.

    read_label_image(data)        PNG or TIFF, 8/16/32-bit or whole-valued float, 0 background
                                  (napari's and CellProfiler's label images)
    stack_masks(masks, shape)     one 0/non-zero mask per nucleus (the Kaggle layout)
    read_geojson(data, shape)     QuPath GeoJSON polygons, rasterised at the image's size
    read_labels(path, shape)      any of them, by what the path is: a folder of masks, a
                                  .geojson/.json file, or a label image

Every reader returns int32 HxW labels, 0 background and 1..N without gaps, or raises
LabelError saying what is wrong in words (and which file, for a folder of masks).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from nuclei.imageio import ImageError, decode_image, sniff_container
from nuclei.naming import is_image

GEOJSON_EXTENSIONS = (".geojson", ".json")
EDGE_TOLERANCE = 1.0  # px a polygon may reach past the image's edge (outlines run along it)


class LabelError(ValueError):
    """Labels that cannot be read as nuclei; `path`: the file at fault inside a folder."""

    def __init__(self, what: str, path: Path | None = None):
        super().__init__(what)
        self.path = path


def relabel(labels: np.ndarray) -> np.ndarray:
    """Any non-negative integer labels → int32 0, 1..N in ascending order of the old values."""
    values, inverse = np.unique(labels, return_inverse=True)
    if values[0] != 0:
        inverse = inverse + 1
    return inverse.reshape(labels.shape).astype(np.int32)


def _size(shape: tuple[int, ...]) -> str:
    return f"{shape[1]}×{shape[0]}"


def _check_shape(found: tuple[int, ...], shape: tuple[int, int], what: str, path: Path | None = None) -> None:
    if tuple(found[:2]) != tuple(shape):
        raise LabelError(f"{what} {_size(found)}, the image {_size(shape)}: they must be the same size", path)


def read_label_image(data: bytes) -> np.ndarray:
    """A label image's bytes → labels. Refused: lossy JPEG, colour, fractional values (a
    probability map) and a binary mask (one value for several separate nuclei)."""
    try:
        if sniff_container(data) == "jpeg":
            raise LabelError("a JPEG: lossy compression changes label values; save labels as PNG or TIFF")
        raw = decode_image(data)
    except ImageError as exc:
        raise LabelError(f"not a readable label image ({exc})") from exc
    if raw.ndim == 3:
        if not all(np.array_equal(raw[..., 0], raw[..., c]) for c in range(1, min(3, raw.shape[2]))):
            raise LabelError("a colour image, not a label image: save labels as one channel, 0 = background")
        raw = raw[..., 0]
    if raw.dtype.kind == "f":
        if not np.isfinite(raw).all() or not np.array_equal(raw, np.round(raw)):
            raise LabelError("fractional values: a probability map, not a label image of whole numbers")
        raw = raw.astype(np.int64)
    if raw.dtype.kind not in "iub":
        raise LabelError(f"labels of type {raw.dtype} (expected whole numbers)")
    if raw.size and raw.min() < 0:
        raise LabelError("negative labels (expected 0 = background, 1, 2, … one per nucleus)")
    values = np.unique(raw)
    if values.size == 2 and values[0] == 0:
        parts = cv2.connectedComponents((raw > 0).astype(np.uint8), connectivity=8)[0] - 1
        if parts > 1:
            raise LabelError(f"a binary mask (one value, {parts} separate objects), not a label image: "
                             "each nucleus needs its own number")
    return relabel(raw)


def stack_masks(masks: Iterable[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """One mask per nucleus (non-zero = nucleus; colour: the first channel) → labels; where
    masks overlap, the later one wins. Empty masks are dropped."""
    labels = np.zeros(shape, np.int32)
    count = 0
    for mask in masks:
        inside = (mask[..., 0] if mask.ndim == 3 else mask) > 0
        if inside.any():
            count += 1
            labels[inside] = count
    if not (np.bincount(labels.ravel(), minlength=count + 1)[1:] > 0).all():  # one covered by later ones
        return relabel(labels)
    return labels


def mask_files(folder: Path) -> list[Path]:
    """The mask images of a nucleus folder: `folder/masks/*` (Kaggle) or `folder/*`."""
    inner = folder / "masks"
    where = inner if inner.is_dir() else folder
    return sorted(p for p in where.iterdir() if p.is_file() and is_image(p.name))


def read_mask_folder(folder: Path, shape: tuple[int, int]) -> np.ndarray:
    """A folder of per-nucleus mask images → labels, each mask checked against `shape`."""
    files = mask_files(folder)
    if not files:
        raise LabelError("no mask images in the folder (expected one PNG per nucleus, or masks/*.png)")

    def masks() -> Iterable[np.ndarray]:
        for file in files:
            data = file.read_bytes()
            if not data:
                raise LabelError("empty file", file)
            try:
                mask = decode_image(data)
            except ImageError as exc:
                raise LabelError(f"not a readable mask image ({exc})", file) from exc
            _check_shape(mask.shape, shape, "the mask is", file)
            yield mask

    return stack_masks(masks(), shape)


def _features(obj: Any) -> list[dict[str, Any]]:
    """The features of a FeatureCollection, a Feature, QuPath's plain list of features, or a
    bare Polygon/MultiPolygon."""
    if isinstance(obj, list):
        return obj
    kind = obj.get("type") if isinstance(obj, dict) else None
    if kind == "FeatureCollection" and isinstance(obj.get("features"), list):
        return obj["features"]
    if kind == "Feature":
        return [obj]
    if kind in ("Polygon", "MultiPolygon"):
        return [{"type": "Feature", "geometry": obj}]
    raise LabelError("not GeoJSON objects: expected a FeatureCollection, a Feature or a list of features "
                     "(QuPath: File › Export objects as GeoJSON)")


def _polygons(feature: Any, number: int) -> list[list[np.ndarray]]:
    """A feature's polygons, each a list of rings (k×2 float arrays). QuPath's cells carry the
    nucleus as `nucleusGeometry`, their `geometry` being the whole cell."""
    geom = feature.get("nucleusGeometry") or feature.get("geometry") if isinstance(feature, dict) else None
    kind = geom.get("type") if isinstance(geom, dict) else None
    if kind not in ("Polygon", "MultiPolygon"):
        raise LabelError(f"feature {number}: a {kind or 'missing'} geometry, not a Polygon or MultiPolygon "
                         "(export only the nucleus objects)")
    parts = geom.get("coordinates") if kind == "MultiPolygon" else [geom.get("coordinates")]
    try:
        return [[np.asarray(ring, float)[:, :2] for ring in part] for part in parts]
    except (TypeError, ValueError, IndexError) as exc:
        raise LabelError(f"feature {number}: coordinates are not rings of [x, y] pairs") from exc


def fill_polygon(out: np.ndarray, rings: list[np.ndarray], value: int) -> None:
    """Set to `value` the pixels of `out` whose centres lie inside the polygon (even-odd over
    its rings, so holes stay out), in QuPath's pixel coordinates: pixel (x, y) is the square
    [x, x+1] × [y, y+1]. A polygon traced along pixel edges (`nuclei.geojson`) comes back as
    exactly its pixels."""
    rings = [r for r in rings if len(r) >= 3]
    if not rings:
        return
    points = np.concatenate(rings)
    h, w = out.shape
    y0, y1 = max(0, math.floor(points[:, 1].min())), min(h, math.ceil(points[:, 1].max()))
    x0, x1 = max(0, math.floor(points[:, 0].min())), min(w, math.ceil(points[:, 0].max()))
    if y0 >= y1 or x0 >= x1:
        return
    a = points
    b = np.concatenate([np.roll(r, -1, axis=0) for r in rings])
    centres = np.arange(y0, y1) + 0.5
    rows, edges = np.nonzero((a[None, :, 1] <= centres[:, None]) != (b[None, :, 1] <= centres[:, None]))
    ya, yb = a[edges, 1], b[edges, 1]
    x = a[edges, 0] + (centres[rows] - ya) * (b[edges, 0] - a[edges, 0]) / (yb - ya)
    # a crossing at x toggles every pixel of its row whose centre lies at or right of it
    columns = np.clip(np.ceil(x - 0.5).astype(np.int64) - x0, 0, x1 - x0)
    toggles = np.zeros((y1 - y0, x1 - x0 + 1), np.int32)
    np.add.at(toggles, (rows, columns), 1)
    inside = np.cumsum(toggles, axis=1)[:, :-1] % 2 == 1
    out[y0:y1, x0:x1][inside] = value


def read_geojson(data: bytes, shape: tuple[int, int]) -> np.ndarray:
    """GeoJSON polygons in pixel coordinates → labels of an image of `shape`, one nucleus per
    feature (later features win where they overlap). A polygon reaching past the image is
    refused: the labels of another image, or coordinates in µm rather than pixels."""
    try:
        features = _features(json.loads(data))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LabelError(f"not valid JSON ({exc})") from exc
    labels = np.zeros(shape, np.int32)
    h, w = shape
    for number, feature in enumerate(features, start=1):
        for rings in _polygons(feature, number):
            points = np.concatenate(rings) if rings else np.zeros((0, 2))
            if points.size and (points.min() < -EDGE_TOLERANCE or points[:, 0].max() > w + EDGE_TOLERANCE
                                or points[:, 1].max() > h + EDGE_TOLERANCE):
                x, y = points.max(axis=0)
                raise LabelError(f"feature {number} reaches ({x:g}, {y:g}), outside the {w}×{h} image: "
                                 "polygons from another image, or not in pixels")
            fill_polygon(labels, rings, number)
    return relabel(labels)


def read_labels(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """The labels at `path` for an image of `shape` (height, width), whatever their form."""
    path = Path(path)
    if path.is_dir():
        return read_mask_folder(path, shape)
    data = path.read_bytes()
    if not data:
        raise LabelError("empty file")
    if path.suffix.lower() in GEOJSON_EXTENSIONS:
        return read_geojson(data, shape)
    labels = read_label_image(data)
    _check_shape(labels.shape, shape, "labels are")
    return labels
