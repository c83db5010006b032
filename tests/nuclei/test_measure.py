"""nuclei.measure on its own: real ground-truth labels against scikit-image's regionprops,
any label image (holes in the numbering, specks, empty), and intensities in the image's units."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from skimage.measure import regionprops

from nuclei.measure import COLUMNS, grey_levels, measure
from tests.conftest import SAMPLE_NAMES, read_sample


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_ground_truth_nuclei_match_regionprops(name):
    _, image, labels = read_sample(name)
    rows = measure(labels, image)
    props = regionprops(labels, intensity_image=grey_levels(image))
    assert [r["id"] for r in rows] == [p.label for p in props] and len(rows) == labels.max() > 0
    for row, p in zip(rows, props, strict=True):
        assert list(row) == list(COLUMNS)
        y0, x0, y1, x1 = p.bbox
        assert (row["area"], row["bbox_x"], row["bbox_y"], row["bbox_width"], row["bbox_height"]) == \
            (p.area, x0, y0, x1 - x0, y1 - y0)
        assert (row["centroid_x"], row["centroid_y"]) == pytest.approx(p.centroid[::-1], abs=5.01e-4)
        assert row["eccentricity"] == pytest.approx(p.eccentricity, abs=1e-4)
        assert row["mean_intensity"] == pytest.approx(p.intensity_mean, abs=1e-4)
        assert row["equivalent_diameter"] == pytest.approx(p.equivalent_diameter_area, abs=1e-3)
        assert 0 < row["solidity"] <= 1


def test_empty_labels_have_no_rows():
    assert measure(np.zeros((7, 9), np.int32)) == []


@settings(max_examples=60, deadline=None)
@given(arrays(np.int32, st.tuples(st.integers(1, 25), st.integers(1, 25)), elements=st.sampled_from([0, 0, 2, 5, 9])))
def test_any_labels_one_row_per_value_and_no_intensity_without_an_image(labels):
    rows = measure(labels)
    assert [r["id"] for r in rows] == sorted(set(labels[labels > 0].tolist()))
    for row in rows:
        ys, xs = np.nonzero(labels == row["id"])
        assert row["area"] == xs.size and np.isnan(row["mean_intensity"])
        touches = xs.min() == 0 or ys.min() == 0 or xs.max() == labels.shape[1] - 1 or ys.max() == labels.shape[0] - 1
        assert row["touches_border"] == touches


def test_intensities_are_in_the_images_own_units():
    labels = np.zeros((4, 4), np.int32)
    labels[1:3, 1:3] = 1
    image = np.full((4, 4, 4), 1000, np.uint16)  # RGBA: alpha left out of the grey level
    image[..., 3] = 7
    image[1:3, 1:3, :3] = [3000, 6000, 9000]
    [row] = measure(labels, image)
    assert (row["mean_intensity"], row["integrated_intensity"]) == (6000, 24000)
