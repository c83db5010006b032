"""nuclei.labelio: each label format a lab saves, written here from real labels and read back
as the same nuclei (up to numbering); what is not a label file refused in words."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import shapely
import tifffile

from nuclei.geojson import feature_collection, features
from nuclei.labelio import LabelError, read_labels
from tests.conftest import png_bytes, read_sample

LABELS = read_sample("he_stained_256x320")[2]  # a real annotation, touching nuclei included
SHAPE = LABELS.shape


def same_nuclei(read: np.ndarray, written: np.ndarray) -> None:
    """The same pixels in the same nuclei, whatever numbers they carry."""
    assert read.dtype == np.int32 and read.shape == written.shape
    assert np.array_equal(read > 0, written > 0)
    pairs = np.unique(np.stack([read[written > 0], written[written > 0]]), axis=1)
    n = len(np.unique(written)) - 1
    assert pairs.shape[1] == n == read.max(), "one label for one label"
    assert np.array_equal(np.unique(read), np.arange(n + 1)), "0, 1..N without gaps"


def write_tiff(path: Path, labels: np.ndarray) -> Path:
    tifffile.imwrite(path, labels)
    return path


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.int32, np.float32])
def test_label_tiff_of_each_depth(tmp_path, dtype):
    # napari keeps whatever ids an edit left: spread them over the type's range
    values = LABELS.astype(np.int64) * (1 if dtype == np.uint8 else 997)
    assert values.max() <= np.iinfo(np.uint8 if dtype == np.uint8 else np.int32).max
    path = write_tiff(tmp_path / "a.tif", values.astype(dtype))
    same_nuclei(read_labels(path, SHAPE), LABELS)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_label_png_8_and_16_bit(tmp_path, dtype):
    path = tmp_path / "a.png"
    path.write_bytes(png_bytes((LABELS * (1 if dtype == np.uint8 else 251)).astype(dtype)))
    same_nuclei(read_labels(path, SHAPE), LABELS)


def test_grey_labels_saved_as_rgb_are_read(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(png_bytes(np.repeat(LABELS.astype(np.uint8)[..., None], 3, axis=2)))
    same_nuclei(read_labels(path, SHAPE), LABELS)


@pytest.mark.parametrize("inner", ["masks", ""])
def test_kaggle_masks_folder(tmp_path, inner):
    folder = tmp_path / "a" / inner
    folder.mkdir(parents=True)
    for k in range(1, LABELS.max() + 1):
        (folder / f"{k:04d}.png").write_bytes(png_bytes(np.equal(LABELS, k).astype(np.uint8) * 255))
    same_nuclei(read_labels(tmp_path / "a", SHAPE), LABELS)


@pytest.mark.parametrize("form", ["FeatureCollection", "list"])
def test_geojson_written_by_the_service_reads_back_exactly(tmp_path, form):
    """Outlines along pixel edges, rasterised at pixel centres: every pixel comes back."""
    collection = feature_collection(LABELS)
    path = tmp_path / "a.geojson"
    path.write_text(json.dumps(collection if form == "FeatureCollection" else collection["features"]))
    same_nuclei(read_labels(path, SHAPE), LABELS)


def test_qupath_cells_give_their_nucleus_and_holes_stay_out(tmp_path):
    nucleus = np.zeros((40, 40), bool)
    nucleus[10:30, 10:30] = True
    nucleus[18:22, 18:22] = False  # a hole (the service's own outlines fill them; QuPath's need not)
    cell = next(features(np.pad(np.ones((30, 30), np.int32), 5)))
    square = [[10, 10], [30, 10], [30, 30], [10, 30], [10, 10]]
    hole = [[18, 18], [18, 22], [22, 22], [22, 18], [18, 18]]
    cell["nucleusGeometry"] = {"type": "Polygon", "coordinates": [square, hole]}
    path = tmp_path / "a.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [cell]}))
    assert np.array_equal(read_labels(path, nucleus.shape), nucleus.astype(np.int32))


def test_hand_drawn_polygon_is_its_pixel_centres(tmp_path):
    """A circle of 64 vertices off the pixel grid, as QuPath's brush saves one, with a hole:
    exactly the pixels whose centres lie inside it (shapely is the reference), QuPath's rule."""
    angles = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    circle = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    rings = [(np.array([40.3, 30.7]) + r * circle).tolist() for r in (15.2, 4.6)]
    path = tmp_path / "a.geojson"
    path.write_text(json.dumps({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": rings}}))
    ys, xs = np.mgrid[0:64, 0:80] + 0.5
    inside = shapely.contains_xy(shapely.Polygon(rings[0], [rings[1]]), xs, ys)
    assert np.array_equal(read_labels(path, (64, 80)) > 0, inside)


def test_multipolygon_is_one_nucleus(tmp_path):
    square = [[[0, 0], [4, 0], [4, 4], [0, 4], [0, 0]]]
    other = [[[10, 10], [14, 10], [14, 14], [10, 14], [10, 10]]]
    path = tmp_path / "a.geojson"
    path.write_text(json.dumps({"type": "MultiPolygon", "coordinates": [square, other]}))
    read = read_labels(path, (16, 16))
    assert read.max() == 1 and int(read.sum()) == 32


def label_file(tmp_path: Path, case: str) -> tuple[Path, tuple[int, int]]:
    path = tmp_path / ("a.geojson" if case.startswith("geojson") else "a.png")
    grey = LABELS.astype(np.uint8)
    if case == "jpeg":
        path.write_bytes(cv2.imencode(".jpg", grey)[1].tobytes())
    elif case == "colour":
        path.write_bytes(png_bytes(np.stack([grey, grey * 2, grey], axis=2)))
    elif case == "fractional":
        path = write_tiff(tmp_path / "a.tif", LABELS / 3.0)
    elif case == "binary":
        path.write_bytes(png_bytes(np.where(LABELS > 0, 255, 0).astype(np.uint8)))
    elif case == "negative":
        path = write_tiff(tmp_path / "a.tif", -LABELS)
    elif case == "size":
        path.write_bytes(png_bytes(grey[:, :-1]))
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "corrupt":
        path.write_bytes(png_bytes(grey)[:200])
    elif case == "geojson-outside":
        path.write_text(json.dumps(feature_collection(np.pad(LABELS, ((0, 0), (50, 0))))))
    elif case == "geojson-point":
        path.write_text(json.dumps({"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 2]}}))
    elif case == "geojson-text":
        path.write_text("not json")
    return path, SHAPE


@pytest.mark.parametrize("case, words", [
    ("jpeg", "JPEG: lossy"), ("colour", "a colour image"), ("fractional", "probability map"),
    ("binary", "a binary mask"), ("negative", "negative labels"), ("size", "319×256, the image 320×256"),
    ("empty", "empty file"), ("corrupt", "not a readable label image"),
    ("geojson-outside", "outside the 320×256 image"), ("geojson-point", "a Point geometry"),
    ("geojson-text", "not valid JSON"),
])
def test_what_is_not_labels_is_refused_in_words(tmp_path, case, words):
    path, shape = label_file(tmp_path, case)
    with pytest.raises(LabelError, match=words):
        read_labels(path, shape)


def test_a_bad_mask_in_a_folder_is_named(tmp_path):
    folder = tmp_path / "a" / "masks"
    folder.mkdir(parents=True)
    (folder / "1.png").write_bytes(png_bytes(np.where(LABELS == 1, 255, 0).astype(np.uint8)))
    (folder / "2.png").write_bytes(png_bytes(np.zeros((10, 10), np.uint8)))
    with pytest.raises(LabelError, match="the mask is 10×10, the image 320×256") as error:
        read_labels(tmp_path / "a", SHAPE)
    assert error.value.path == folder / "2.png"
