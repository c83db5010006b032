"""The modality of the committed samples, of images made to differ in one respect only, and
the per-modality summary `evaluate` prints."""

import numpy as np
import pytest

from nuclei.modality import (
    BRIGHT_FIELD,
    COLOUR_TISSUE,
    FLUORESCENCE_LARGE,
    FLUORESCENCE_SMALL,
    LARGE_NUCLEUS_DIAMETER,
    claimed_modality,
    colour_spread,
    median_diameter,
    modality,
)
from tests.conftest import read_sample
from training.report import ALL, by_modality

FLUORESCENCE = (FLUORESCENCE_SMALL, FLUORESCENCE_LARGE)


@pytest.mark.parametrize(("name", "expected"), [
    ("he_stained_256x320", (COLOUR_TISSUE,)),
    ("brightfield_320x320", (BRIGHT_FIELD,)),
    ("fluorescence_256x256", FLUORESCENCE),
])
def test_samples(name, expected):
    _, image, labels = read_sample(name)
    assert modality(image, labels) in expected


def test_inverted_fluorescence_is_bright_field_and_grey_tissue_is_not_colour():
    _, image, labels = read_sample("fluorescence_256x256")
    inverted = image.copy()
    inverted[..., :3] = 255 - image[..., :3]  # alpha stays opaque
    assert modality(inverted, labels) == BRIGHT_FIELD
    _, tissue, tissue_labels = read_sample("he_stained_256x320")
    grey = tissue[..., :3].mean(axis=-1).astype(np.uint8)
    assert modality(grey, tissue_labels) == BRIGHT_FIELD  # dark nuclei, bright background


def discs(diameter: float) -> tuple[np.ndarray, np.ndarray]:
    """A dark grey image with two bright discs of `diameter` px, and their labels."""
    yy, xx = np.mgrid[:128, :128]
    labels = np.zeros((128, 128), np.int32)
    for k, (cy, cx) in enumerate(((32, 32), (90, 90)), start=1):
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= (diameter / 2) ** 2] = k
    return np.where(labels > 0, 200, 20).astype(np.uint8), labels


@pytest.mark.parametrize(("diameter", "expected"), [
    (LARGE_NUCLEUS_DIAMETER - 3, FLUORESCENCE_SMALL),
    (LARGE_NUCLEUS_DIAMETER + 3, FLUORESCENCE_LARGE),
])
def test_fluorescence_is_split_by_nucleus_diameter(diameter, expected):
    image, labels = discs(diameter)
    assert abs(median_diameter(labels) - diameter) < 1
    assert modality(image, labels) == expected


def test_without_nuclei_a_bright_background_means_bright_field():
    empty = np.zeros((64, 64), np.int32)
    assert modality(np.full((64, 64), 220, np.uint8), empty) == BRIGHT_FIELD
    assert modality(np.full((64, 64), 20, np.uint8), empty) == FLUORESCENCE_SMALL
    assert median_diameter(empty) == 0.0


def test_scores_are_averaged_and_nuclei_summed_per_modality():
    def row(kind: str, dsb: float, merged: int) -> dict:
        scores = {"dsb_score": dsb, "ap_50": dsb, "pixel_accuracy": 1.0, "foreground_iou": 1.0,
                  "dice": 1.0, "n_true": 10, "n_pred": 9, "merged": merged, "split": 0}
        return {"modality": kind, **{f"model_{k}": v for k, v in scores.items()}}

    table = by_modality([row(BRIGHT_FIELD, 0.2, 2), row(COLOUR_TISSUE, 0.4, 1), row(BRIGHT_FIELD, 0.4, 3)])
    assert list(table) == [COLOUR_TISSUE, BRIGHT_FIELD, ALL]  # MODALITIES order, absent ones left out
    assert table[BRIGHT_FIELD]["dsb_score"] == pytest.approx(0.3)
    assert (table[BRIGHT_FIELD]["images"], table[BRIGHT_FIELD]["merged"]) == (2, 5)
    assert (table[ALL]["n_true"], table[ALL]["merged"]) == (30, 6)


@pytest.mark.parametrize("name", ["he_stained_256x320", "brightfield_320x320", "fluorescence_256x256"])
def test_image_alone_routes_like_the_labels_on_colour_and_brightness(name):
    """The service routes by `modality(image)`: colour and bright background must read the
    same with or without labels (the size split may differ: it is estimated)."""
    _, image, labels = read_sample(name)
    with_labels, alone = modality(image, labels), modality(image)
    assert (with_labels in FLUORESCENCE) == (alone in FLUORESCENCE)
    assert (with_labels == COLOUR_TISSUE) == (alone == COLOUR_TISSUE)


@pytest.mark.parametrize("name", ["he_stained_256x320", "brightfield_320x320", "fluorescence_256x256"])
def test_the_routing_shortcut_agrees_with_the_whole_rule(name):
    """The service routes by `claimed_modality`: colour alone when only colour tissue is claimed,
    the whole rule otherwise; either way the answer `modality(image)` gives, or None."""
    _, image, _ = read_sample(name)
    whole = modality(image)
    rgb = image[..., :3].astype(np.float64)
    assert colour_spread(image) == pytest.approx(float((rgb.max(axis=-1) - rgb.min(axis=-1)).mean()), abs=1e-9)
    assert colour_spread(image.astype(np.float32)) == pytest.approx(colour_spread(image))
    for claimed in ({COLOUR_TISSUE}, {COLOUR_TISSUE, BRIGHT_FIELD}, set(FLUORESCENCE), set()):
        assert claimed_modality(image, claimed) == (whole if whole in claimed else None), claimed
