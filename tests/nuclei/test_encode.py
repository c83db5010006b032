"""nuclei.encode on its own: every format from one segmentation, the formats agreeing about
each nucleus, the upload's name as a spreadsheet-safe image id, and the 16-bit limit."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from nuclei.encode import OutputFormat, Segmentation, TooManyNucleiError, image_id, labels_png, render
from tests.conftest import SAMPLE_NAMES, read_png, read_sample

INFO = {"name": "m", "version": "1", "sha256": "0" * 64}


def segmentation(name: str) -> Segmentation:
    _, image, labels = read_sample(name)
    return Segmentation(labels, image, INFO, f"{name}.png", diameter=17.0)


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_rle_geojson_and_measurements_agree_on_every_nucleus(name):
    seg = segmentation(name)
    instances = json.loads(render(seg, OutputFormat.rle))["instances"]
    rows = list(csv.DictReader(io.StringIO(render(seg, OutputFormat.measurements).decode())))
    features = json.loads(render(seg, OutputFormat.geojson))["features"]
    assert len(instances) == len(rows) == len(features) == seg.count > 0
    for record, row, feature in zip(instances, rows, features, strict=True):
        measured = feature["properties"]["measurements"]
        assert record["id"] == int(row["id"]) == measured["id"]
        assert record["area"] == int(row["area"]) == measured["area"]
        box = [int(row[k]) for k in ("bbox_x", "bbox_y", "bbox_width", "bbox_height")]
        assert record["bbox"] == box == [measured[k] for k in ("bbox_x", "bbox_y", "bbox_width", "bbox_height")]
        centroid = [float(row["centroid_x"]), float(row["centroid_y"])]
        assert record["centroid"] == centroid == [measured["centroid_x"], measured["centroid_y"]]


def test_every_format_renders_from_the_labels():
    seg = segmentation("fluorescence_256x256")
    mask = read_png(render(seg, OutputFormat.png))
    assert set(np.unique(mask)) == {0, 255} and ((mask > 0) == (seg.labels > 0)).all()
    assert (read_png(render(seg, OutputFormat.labels)) == seg.labels).all()
    rows = render(seg, OutputFormat.csv).decode().splitlines()
    assert rows[0] == "ImageId,EncodedPixels" and len(rows) == seg.count + 1
    assert all(r.startswith("fluorescence_256x256,") for r in rows[1:])
    assert json.loads(render(seg, OutputFormat.rle))["diameter"] == 17.0


def test_an_image_without_nuclei_still_has_a_submission_row():
    seg = Segmentation(np.zeros((5, 5), np.int32), np.zeros((5, 5), np.uint8), INFO, "empty.tif")
    assert render(seg, OutputFormat.csv).decode() == "ImageId,EncodedPixels\nempty,\n"
    assert render(seg, OutputFormat.measurements).decode().count("\n") == 1


@pytest.mark.parametrize(("filename", "expected"), [
    ("plate/a.b.png", "a.b"), ("C:\\data\\x.tif", "x"), (".hidden", ".hidden"), (None, "image"),
    ("=HYPERLINK(1).png", "'=HYPERLINK(1)"), ("-2.png", "'-2"), ("@a.png", "'@a"),
])
def test_image_id_is_the_bare_stem_and_never_a_formula(filename, expected):
    assert image_id(filename) == expected


def test_more_nuclei_than_a_16_bit_png_holds_is_refused():
    labels = np.arange(70_000, dtype=np.int32).reshape(1, -1)
    with pytest.raises(TooManyNucleiError, match="format=rle"):
        labels_png(labels)
