"""Any nucleus size (nuclei/scale.py): a real sample enlarged 3× (as at a 3× stronger
objective) is segmented at the model's scale, with the diameter given or estimated."""

from __future__ import annotations

import numpy as np
import pytest

from nuclei.card import DEFAULT_SCALE
from nuclei.scale import DiameterError, allowed, median_diameter, resize, to_shape, typical_diameter
from tests.conftest import read_sample

NAME = "fluorescence_256x256"
LARGER = "fluorescence_520x696"  # 77 nuclei of about 30 px


@pytest.fixture(scope="module")
def native(segmenter):
    image = read_sample(NAME)[1]
    return image, segmenter.segment_sized(image)


@pytest.fixture(scope="module")
def enlarged(native):
    return resize(native[0], 3)


def test_native_image_takes_one_pass_at_its_own_size(native):
    _, sized = native
    assert sized.factor == 1.0
    assert DEFAULT_SCALE.low <= sized.diameter <= DEFAULT_SCALE.high


def test_explicit_diameter_recovers_the_native_count(segmenter, native, enlarged):
    _, sized = native
    big = segmenter.segment_sized(enlarged, diameter=3 * sized.diameter)
    assert big.labels.shape == enlarged.shape[:2]
    assert big.factor < 1 and big.diameter == pytest.approx(3 * sized.diameter)
    assert abs(int(big.labels.max()) - int(sized.labels.max())) <= 0.15 * sized.labels.max()


@pytest.mark.parametrize("factor", [2.2, 0.25])  # nuclei of 65 px and of 7.5 px: out of the trained range
def test_automatic_diameter_finds_nuclei_out_of_the_trained_range(segmenter, factor):
    image = read_sample(LARGER)[1]
    native = segmenter.segment_sized(image)
    assert native.factor == 1.0
    resized = resize(image, factor)
    found = segmenter.segment_sized(resized)
    assert found.diameter == pytest.approx(factor * native.diameter, rel=0.25)
    assert (found.factor < 1) == (factor > 1) and found.factor != 1  # resized towards the training size
    assert found.labels.shape == resized.shape[:2]
    assert abs(int(found.labels.max()) - int(native.labels.max())) <= 0.1 * native.labels.max()


@pytest.mark.parametrize("diameter", [1.0, 1000.0])
def test_out_of_range_diameter_is_refused_naming_the_range(segmenter, diameter):
    low, high = allowed(segmenter.card.nucleus_scale)
    with pytest.raises(DiameterError, match=f"{low:.1f} to {high:.1f}"):
        segmenter.segment(read_sample(NAME)[1], diameter=diameter)


def test_enlarging_past_max_pixels_is_refused(segmenter):
    image = read_sample(NAME)[1]
    with pytest.raises(DiameterError, match="limit"):
        segmenter.segment_sized(image, diameter=5.0, max_pixels=image.shape[0] * image.shape[1])


def test_labels_map_back_renumbered():
    small = np.array([[0, 7], [7, 3]], np.int32)
    back = to_shape(small, (4, 4))
    assert back.shape == (4, 4) and set(np.unique(back)) == {0, 1, 2}
    assert (back[:2, 2:] == 1).all() and (back[2:, 2:] == 2).all()


def test_specks_outvote_nuclei_in_the_median_but_not_in_the_typical_diameter():
    labels = np.zeros((200, 200), np.int32)
    for k in range(3):  # three nuclei of 30 px
        labels[10 + 60 * k : 40 + 60 * k, 10:40] = k + 1
    for k in range(100):  # and a hundred single-pixel specks
        labels[5 + (k // 10) * 19, 100 + (k % 10) * 9] = 4 + k
    assert median_diameter(labels) < 2
    assert typical_diameter(labels) == pytest.approx(np.sqrt(4 * 900 / np.pi))
