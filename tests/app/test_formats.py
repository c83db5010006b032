"""The formats pipelines load: QuPath GeoJSON, a measurements table, the provenance headers on
every format, and the plane of a multi-page or multi-channel TIFF."""

from __future__ import annotations

import csv
import io
import zipfile

import numpy as np
import pytest
import tifffile
from shapely.geometry import shape
from shapely.ops import unary_union
from skimage.measure import regionprops

from nuclei.encode import OutputFormat
from nuclei.measure import COLUMNS
from tests.conftest import GOOD, SAMPLE_NAMES, post, read_png, read_sample

# (relative, absolute). OpenCV and scikit-image define two of them differently: the perimeter
# is a contour through pixel centres vs a weighted count of edge pixels (they differ most on
# nuclei of a few pixels), the solidity's hull a filled polygon vs a hull image.
DEFAULT_NAME = "nuclei-unet.int8"
TOLERANCE = {"centroid_x": (1e-3, 0.01), "centroid_y": (1e-3, 0.01), "eccentricity": (1e-3, 0.01),
             "equivalent_diameter": (1e-3, 0.01), "mean_intensity": (1e-3, 0.01),
             "solidity": (0.08, 0.01), "perimeter": (0.25, 1.0)}


def table(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_geojson_polygons_are_valid_and_cover_the_mask(client, name):
    data, _, _ = read_sample(name)
    r = post(client, data, name=f"{name}.png", format="geojson")
    assert r.headers["content-type"].startswith("application/geo+json")
    doc = r.json()
    assert doc["type"] == "FeatureCollection"
    assert len(doc["features"]) == int(r.headers["x-nuclei-count"]) > 0
    polygons = []
    for feature in doc["features"]:
        props = feature["properties"]
        assert props["objectType"] == "detection" and props["classification"]["name"] == "Nucleus"
        assert all(isinstance(v, int | float) for v in props["measurements"].values())
        polygon = shape(feature["geometry"])
        assert feature["geometry"]["type"] == "Polygon" and polygon.is_valid, props["measurements"]["id"]
        polygons.append(polygon)
    mask = read_png(post(client, data, format="png").content) > 0
    ys, xs = np.nonzero(mask)
    pixels = unary_union([shape({"type": "Polygon", "coordinates": [[[x, y], [x + 1, y], [x + 1, y + 1],
                                                                     [x, y + 1], [x, y]]]})
                          for x, y in zip(xs.tolist(), ys.tolist(), strict=True)])
    union = unary_union(polygons)
    assert union.intersection(pixels).area / union.union(pixels).area >= 0.9


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_measurements_agree_with_the_labels_and_regionprops(client, name):
    data, image, _ = read_sample(name)
    # The default model for every sample: the H&E one would go to the specialist, whose outlines
    # hold a small nucleus whose solidity differs from regionprops' by more than the tolerance.
    rows = table(post(client, data, format="measurements", model=DEFAULT_NAME).text)
    labels = read_png(post(client, data, format="labels", model=DEFAULT_NAME).content).astype(np.int32)
    assert list(rows[0]) == list(COLUMNS) and len(rows) == labels.max()
    grey = image.astype(np.float64) if image.ndim == 2 else image[..., :3].astype(np.float64).mean(axis=2)
    props = {p.label: p for p in regionprops(labels, intensity_image=grey)}
    for row in rows:
        p = props[int(row["id"])]
        assert int(row["area"]) == p.area == np.count_nonzero(labels == p.label)
        y0, x0, y1, x1 = p.bbox
        assert [int(row[k]) for k in ("bbox_x", "bbox_y", "bbox_width", "bbox_height")] == [x0, y0, x1 - x0, y1 - y0]
        expected = {"centroid_x": p.centroid[1], "centroid_y": p.centroid[0], "eccentricity": p.eccentricity,
                    "equivalent_diameter": p.equivalent_diameter_area, "mean_intensity": p.intensity_mean,
                    "solidity": p.solidity, "perimeter": p.perimeter}
        for key, value in expected.items():
            rel, absolute = TOLERANCE[key]
            assert float(row[key]) == pytest.approx(value, rel=rel, abs=absolute), (row["id"], key)
        assert float(row["integrated_intensity"]) == pytest.approx(p.intensity_mean * p.area, rel=1e-3)
        touches = x0 == 0 or y0 == 0 or x1 == labels.shape[1] or y1 == labels.shape[0]
        assert row["touches_border"] == str(touches)


def test_pixel_size_adds_micron_columns(client):
    rows = table(post(client, GOOD, format="measurements", pixel_size=0.5).text)
    assert rows and float(rows[0]["area_um2"]) == pytest.approx(int(rows[0]["area"]) * 0.25, rel=1e-3)
    assert float(rows[0]["perimeter_um"]) == pytest.approx(float(rows[0]["perimeter"]) * 0.5, rel=1e-3)


def test_tiff_resolution_tags_give_the_pixel_size(client):
    _, image, _ = read_sample("fluorescence_256x256")
    buf = io.BytesIO()
    tifffile.imwrite(buf, image, resolution=(1 / 0.25, 1 / 0.25), resolutionunit="MICROMETER")
    rows = table(post(client, buf.getvalue(), name="x.tif", format="measurements").text)
    assert float(rows[0]["equivalent_diameter_um"]) == pytest.approx(float(rows[0]["equivalent_diameter"]) * 0.25,
                                                                      rel=1e-3)


@pytest.mark.parametrize("output_format", list(OutputFormat))
def test_every_format_says_which_model_found_how_many(client, output_format):
    model = client.get("/model").json()
    r = post(client, GOOD, format=output_format.value)
    assert r.status_code == 200
    assert (r.headers["x-model-name"], r.headers["x-model-version"], r.headers["x-model-sha256"]) == \
        (model["name"], model["version"], model["sha256"])
    assert int(r.headers["x-nuclei-count"]) > 0 and r.headers["x-image-plane"] == "page=0/1; channel=all/3"


@pytest.fixture(scope="module")
def stack() -> bytes:
    """Three pages: a blank one, the fluorescence sample, and the sample as a 2-channel page."""
    _, image, _ = read_sample("fluorescence_256x256")
    grey = image if image.ndim == 2 else image[..., 0]
    buf = io.BytesIO()
    with tifffile.TiffWriter(buf) as tif:
        tif.write(np.zeros_like(grey))
        tif.write(grey)
        tif.write(np.stack([np.zeros_like(grey), grey], axis=-1), photometric="minisblack", planarconfig="contig")
    return buf.getvalue()


def test_page_and_channel_choose_the_plane(client, stack):
    count = {}
    for params in ({}, {"page": 1}, {"page": 2, "channel": 0}, {"page": 2, "channel": 1}):
        r = post(client, stack, name="stack.tif", format="rle", **params)
        assert r.status_code == 200, r.text
        count[tuple(params.values())] = r.json()["count"]
        page, channel = params.get("page", 0), params.get("channel", "all")
        channels = 2 if page == 2 else 1
        assert r.headers["x-image-plane"] == f"page={page}/3; channel={channel}/{channels}"
    assert count[()] == 0 and count[(2, 0)] == 0, "blank planes"
    assert count[(1,)] == count[(2, 1)] > 0, "the same nuclei on page 1 and in page 2's channel 1"


@pytest.mark.parametrize(("params", "words"), [({"page": 3}, "page=3"), ({"page": 1, "channel": 1}, "channel=1")])
def test_a_plane_out_of_range_is_422(client, stack, params, words):
    r = post(client, stack, name="stack.tif", **params)
    assert r.status_code == 422 and words in r.json()["detail"] and "out of range" in r.json()["detail"]


def test_page_of_a_png_is_422(client):
    r = post(client, GOOD, page=1)
    assert r.status_code == 422 and "one page" in r.json()["detail"]


def test_several_formats_come_from_one_segmentation_in_one_zip(client, monkeypatch):
    data, _, _ = read_sample("fluorescence_256x256")
    segmenter = client.app.state.registry.default
    calls = []
    segment_sized = segmenter.segment_sized
    monkeypatch.setattr(segmenter, "segment_sized", lambda *a, **k: calls.append(1) or segment_sized(*a, **k))
    wanted = ["labels", "measurements", "geojson", "rle", "png", "csv"]
    r = post(client, data, name="plate/=a.png", format=",".join(wanted))
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip" and len(calls) == 1
    assert r.headers["content-disposition"] == "attachment; filename=\"'=a.zip\""
    with zipfile.ZipFile(io.BytesIO(r.content)) as archive:
        assert archive.namelist() == ["'=a.labels.png", "'=a.measurements.csv", "'=a.geojson", "'=a.rle.json",
                                      "'=a.mask.png", "'=a.submission.csv"]
        bodies = [archive.read(name) for name in archive.namelist()]
    for fmt, body in zip(wanted, bodies, strict=True):
        alone = post(client, data, name="plate/=a.png", format=fmt)
        assert body == alone.content, fmt
        assert alone.headers["x-nuclei-count"] == r.headers["x-nuclei-count"]


@pytest.mark.parametrize("bad", ["jpeg", "labels,jpeg", "", ",", "Labels"])
def test_a_format_list_naming_no_known_format_is_422(client, bad):
    r = post(client, GOOD, format=bad)
    assert r.status_code == 422 and r.json()["detail"].startswith("format: ")
    assert "'measurements'" in r.json()["detail"]
