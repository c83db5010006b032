"""nuclei.geojson: pixel-edge outlines that are valid polygons covering exactly the
nucleus' pixels, QuPath's detection properties, and a FeatureCollection streamed to disk."""

from __future__ import annotations

import io
import json

import cv2
import numpy as np
import pytest
import shapely
from shapely.geometry import shape

from nuclei.geojson import FeatureWriter, feature_collection, features, geometry
from nuclei.measure import measure
from tests.conftest import SAMPLE_NAMES, read_sample


def polygon(mask: np.ndarray) -> shapely.Geometry:
    geom = geometry(mask)
    assert geom is not None
    out = shape(geom)
    assert out.is_valid, shapely.is_valid_reason(out)
    return out


def filled(mask: np.ndarray) -> np.ndarray:
    """The mask with its holes filled: all but the background reaching the border. Nuclei
    are 4-connected, so background is 8-connected: a gap at a corner leads outside."""
    padded = np.pad(mask, 1).astype(np.uint8)
    cv2.floodFill(padded, None, (0, 0), 2, flags=8)
    return (padded != 2)[1:-1, 1:-1]


def covers_exactly(geom: shapely.Geometry, mask: np.ndarray) -> None:
    """Every pixel of the mask is inside, every pixel outside it is outside (holes filled)."""
    full = filled(mask)
    ys, xs = np.nonzero(np.ones_like(mask))
    inside = shapely.contains_xy(geom, xs + 0.5, ys + 0.5).reshape(mask.shape)
    assert np.array_equal(inside, full)
    assert geom.area == full.sum()


def test_a_pixel_is_its_unit_square_in_pixel_corner_coordinates() -> None:
    mask = np.zeros((3, 4), bool)
    mask[1, 2] = True
    assert geometry(mask) == {"type": "Polygon", "coordinates": [[[2, 1], [3, 1], [3, 2], [2, 2], [2, 1]]]}
    assert geometry(mask, offset=(100, 50))["coordinates"][0][0] == [102, 51]
    assert geometry(np.zeros((2, 2), bool)) is None


def test_outlines_follow_pixel_edges_and_keep_only_turning_points() -> None:
    mask = np.zeros((6, 6), bool)
    mask[1:5, 1:4] = True  # a 3 × 4 rectangle: four corners, however many pixels
    geom = geometry(mask)
    assert len(geom["coordinates"][0]) == 5
    assert shape(geom).area == 12
    ring = np.array(geom["coordinates"][0])
    assert shapely.LinearRing(ring).is_ccw  # RFC 7946: exterior rings counter-clockwise


def test_pixels_touching_at_a_corner_are_separate_parts() -> None:
    mask = np.array([[1, 0], [0, 1]], bool)
    geom = geometry(mask)
    assert geom["type"] == "MultiPolygon" and len(geom["coordinates"]) == 2
    covers_exactly(polygon(mask), mask)


def test_a_bay_closed_by_a_corner_is_a_hole_touching_the_shell() -> None:
    # a ring of pixels whose last link is diagonal: the enclosed pixel reaches the outside
    # only through that corner, so it is not inside the nucleus
    mask = np.array([
        [0, 1, 1, 1, 0],
        [0, 1, 0, 1, 0],
        [1, 0, 0, 1, 0],
        [0, 1, 1, 1, 0],
    ], bool)
    geom = polygon(mask)
    assert geom.area == mask.sum()
    ys, xs = np.nonzero(mask)
    assert shapely.contains_xy(geom, xs + 0.5, ys + 0.5).all()


def test_holes_are_filled() -> None:
    mask = np.ones((5, 5), bool)
    mask[2, 2] = False
    geom = polygon(mask)
    assert geom.area == 25 and len(geometry(mask)["coordinates"]) == 1


def test_random_shapes_give_valid_polygons_containing_every_pixel() -> None:
    rng = np.random.default_rng(7)
    for _ in range(3000):
        h, w = rng.integers(1, 9, 2)
        mask = rng.random((h, w)) < rng.uniform(0.2, 0.9)
        if not mask.any():
            continue
        covers_exactly(polygon(mask), mask)


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_one_feature_per_nucleus_with_its_area_and_qupath_properties(name: str) -> None:
    _, image, labels = read_sample(name)
    rows = measure(labels, image)
    found = list(features(labels, rows))
    assert len(found) == labels.max() == len(rows)
    for feat, row in zip(found, rows, strict=True):
        geom = shape(feat["geometry"])
        assert geom.is_valid
        assert geom.area >= row["area"]  # equal unless the nucleus has a hole
        props = feat["properties"]
        assert props["objectType"] == "detection"
        assert props["classification"]["name"] == "Nucleus" and len(props["classification"]["color"]) == 3
        measurements = props["measurements"]
        assert measurements["id"] == row["id"] and measurements["area"] == row["area"]
        assert measurements["touches_border"] in (0, 1)
        assert all(isinstance(v, int | float) for v in measurements.values())
        minx, miny, maxx, maxy = geom.bounds
        assert (minx, miny, maxx - minx, maxy - miny) == (
            row["bbox_x"], row["bbox_y"], row["bbox_width"], row["bbox_height"])


def test_feature_collection_and_streamed_writer_agree() -> None:
    _, image, labels = read_sample("fluorescence_256x256")
    whole = feature_collection(labels, measure(labels, image))
    stream = io.StringIO()
    writer = FeatureWriter(stream)
    for feat in features(labels, measure(labels, image)):
        writer.write(feat)
    writer.close()
    streamed = json.loads(stream.getvalue())
    assert streamed == json.loads(json.dumps(whole))
    assert writer.count == len(streamed["features"]) == labels.max()
    empty = io.StringIO()
    FeatureWriter(empty).close()
    assert json.loads(empty.getvalue()) == {"type": "FeatureCollection", "features": []}


def test_nan_measurements_are_left_out_so_the_json_stays_valid() -> None:
    _, _, labels = read_sample("fluorescence_256x256")
    rows = measure(labels)  # no image: intensities are NaN
    feat = next(features(labels, rows))
    assert "mean_intensity" not in feat["properties"]["measurements"]
    json.dumps(feat, allow_nan=False)
