"""Training scales (training/augment.py, training/export.py): `scaled` brings every image to one
nucleus diameter, `banded` and `wide` only those outside their band, and the card's range follows the recipe."""

from dataclasses import asdict

import numpy as np
import pytest

from nuclei.scale import median_diameter
from tests.conftest import read_sample
from training.augment import AUGMENT_PRESETS, at_training_scale
from training.export import trained_scale

NAME = "fluorescence_520x696"  # real labels, median nucleus about 30 px


@pytest.mark.parametrize(("band", "expected"), [
    ((12.0, 40.0), 1.0),  # inside the band: the image keeps its own pixels
    ((12.0, 20.0), 20.0),  # larger: brought down to the band's top
    ((40.0, 60.0), 40.0),  # smaller: brought up to its bottom
])
def test_a_band_resizes_only_images_whose_nuclei_lie_outside_it(band, expected):
    _, image, labels = read_sample(NAME)
    median = median_diameter(labels)
    resized, resized_labels = at_training_scale(image, labels, 0.0, band)
    factor = 1.0 if expected == 1.0 else expected / median
    assert resized.shape[:2] == resized_labels.shape == tuple(round(n * factor) for n in labels.shape)
    if expected == 1.0:
        assert resized is image and resized_labels is labels
    else:
        assert median_diameter(resized_labels) == pytest.approx(expected, rel=0.05)


def test_the_cards_range_is_the_recipes_sizes_times_the_crop_jitter():
    scaled = trained_scale({"augment": asdict(AUGMENT_PRESETS["scaled"])})
    banded = trained_scale({"augment": asdict(AUGMENT_PRESETS["banded"])})
    assert (scaled["low"], scaled["high"]) == (14.6, 22.9)  # 18.3 × 0.8 and × 1.25
    assert (banded["low"], banded["high"]) == (9.6, 36.2)  # 12 × 0.8, 29 × 1.25
    assert scaled["diameter"] == banded["diameter"] == 18.3
    assert trained_scale({"augment": asdict(AUGMENT_PRESETS["full"])}) is None  # measured by `diameters`
    assert np.isclose(AUGMENT_PRESETS["banded"].band, (12.0, 29.0)).all()
    wide = trained_scale({"augment": asdict(AUGMENT_PRESETS["wide"])})
    assert (wide["low"], wide["high"], wide["diameter"]) == (9.6, 50.0, 18.3)  # 40 × 1.25
    assert (wide["down_to"], banded["down_to"], scaled["down_to"]) == (40.0, 29.0, None)  # the band's top
