"""Any nucleus size (nuclei/scale.py): a real sample enlarged 3× (as at a 3× stronger
objective) is segmented at the model's scale, with the diameter given or estimated; the
coarse estimate follows made images of known nuclei through ×1, ×2 and ×4."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from nuclei.postprocess import Thresholds
from nuclei.scale import (
    BLURRED,
    DEFAULT_SCALE,
    DOWN_TO,
    LARGE,
    RIM_BLURRED,
    DiameterError,
    allowed,
    coarse_diameter,
    median_diameter,
    resize,
    rim_width,
    segment_auto,
    target,
    to_size,
    typical_diameter,
)
from tests.conftest import read_sample
from training.metrics import score_image

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


def made_nuclei(diameter: float, size: int = 384, seed: int = 0) -> np.ndarray:
    """Blurred bright discs of one diameter (±10 %) on a noisy dark field, normalised like an image."""
    rng = np.random.default_rng(seed)
    image = np.zeros((size, size), np.float32)
    step = int(diameter * 1.8)
    for y in range(step // 2, size - step // 2, step):
        for x in range(step // 2, size - step // 2, step):
            centre = (x + int(rng.integers(-3, 4)), y + int(rng.integers(-3, 4)))
            cv2.circle(image, centre, round(diameter * rng.uniform(0.45, 0.55)), 1.0, -1)
    image = cv2.GaussianBlur(image, (0, 0), 1.0) + rng.normal(0, 0.05, image.shape).astype(np.float32)
    return np.clip(image, 0, 1)


@pytest.mark.parametrize("factor", [1, 2, 4])
@pytest.mark.parametrize("diameter", [12.0, 18.0, 30.0])
def test_coarse_estimate_follows_the_nuclei_through_magnification(diameter, factor):
    image = made_nuclei(diameter)
    enlarged = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
    assert coarse_diameter(enlarged) == pytest.approx(diameter * factor, rel=0.25)


def test_post_processing_sizes_scale_with_the_maps():
    t = Thresholds(min_seed_area=3, min_area=20, max_growth=12)
    assert t.at_scale(4) == Thresholds(min_seed_area=48, min_area=320, max_growth=48)
    assert t.at_scale(0.25) == Thresholds(min_seed_area=1, min_area=1, max_growth=3)


def test_maps_come_back_to_the_image_size():
    maps = np.random.default_rng(0).random((10, 12, 3)).astype(np.float32)
    assert to_size(maps, (40, 48)).shape == (40, 48, 3) and to_size(maps, (5, 6, 3)).shape == (5, 6, 3)
    assert to_size(maps, (10, 12)) is maps


def test_maps_resized_back_outline_better_than_labels_mapped_back(segmenter):
    """The staircase: the image shrunk for the model, its labels enlarged by nearest neighbour,
    against its probability maps enlarged and post-processed at full size."""
    _, image, truth = read_sample(NAME)
    big, big_truth = resize(image, 2), cv2.resize(truth, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    diameter = 2 * median_diameter(truth)
    sized = segmenter.segment_sized(big, diameter=diameter)
    small = segmenter.segment(resize(big, sized.factor), diameter=segmenter.card.nucleus_scale.diameter)
    staircase = cv2.resize(small, big.shape[1::-1], interpolation=cv2.INTER_NEAREST)
    maps_score, staircase_score = score_image(big_truth, sized.labels), score_image(big_truth, staircase)
    native_score = score_image(truth, segmenter.segment(image))
    assert maps_score.dsb_score > staircase_score.dsb_score + 0.015  # measured 0.445 against 0.414
    assert maps_score.dsb_score > native_score.dsb_score - 0.05
    assert abs(maps_score.n_pred - native_score.n_pred) <= 0.1 * native_score.n_pred


def test_nuclei_four_times_larger_are_found_whole(segmenter):
    """×4, past where the model cuts each nucleus into ordinary-sized fragments: the coarse
    estimate sends the first pass to the reduced size, where the model confirms the size."""
    image = read_sample(LARGER)[1]
    native = segmenter.segment_sized(image)
    found = segmenter.segment_sized(resize(image, 4))
    assert found.diameter == pytest.approx(4 * native.diameter, rel=0.15)
    assert found.factor == pytest.approx(target(found.diameter, DEFAULT_SCALE) / found.diameter, rel=0.16)
    assert abs(int(found.labels.max()) - int(native.labels.max())) <= 0.1 * native.labels.max()


def test_specks_outvote_nuclei_in_the_median_but_not_in_the_typical_diameter():
    labels = np.zeros((200, 200), np.int32)
    for k in range(3):  # three nuclei of 30 px
        labels[10 + 60 * k : 40 + 60 * k, 10:40] = k + 1
    for k in range(100):  # and a hundred single-pixel specks
        labels[5 + (k // 10) * 19, 100 + (k % 10) * 9] = 4 + k
    assert median_diameter(labels) < 2
    assert typical_diameter(labels) == pytest.approx(np.sqrt(4 * 900 / np.pi))


def test_large_nuclei_are_brought_to_the_top_of_the_range_small_ones_to_the_training_size(segmenter):
    """`target`: a given diameter above DOWN_TO training diameters (or the card's `down_to`) is shrunk to that size,
    where outlines keep more pixels than at the training diameter; a small one is enlarged
    to the training diameter; one within 15 % of its target is left alone."""
    scale = DEFAULT_SCALE
    top = DOWN_TO * scale.diameter
    image = read_sample(NAME)[1]
    assert segmenter.segment_sized(image, diameter=3 * top).factor == pytest.approx(1 / 3)
    assert segmenter.segment_sized(image, diameter=scale.diameter / 2).factor == pytest.approx(2)
    assert segmenter.segment_sized(image, diameter=1.1 * top).factor == 1.0
    assert target(3 * top, scale) == top and target(scale.diameter / 2, scale) == scale.diameter
    banded = scale.model_copy(update={"high": 50.0, "down_to": 40.0})  # a card of `--augment wide`
    assert target(100, banded) == 40.0 and target(35, banded) == scale.diameter
    assert target(100, banded.model_copy(update={"high": 30.0})) == 30.0, "never above the card's range"


def discs(diameter: float, shape: tuple[int, int] = (240, 240)) -> np.ndarray:
    """Labels of a grid of discs of `diameter` px."""
    labels, step = np.zeros(shape, np.int32), int(diameter * 1.5)
    for k, (y, x) in enumerate((y, x) for y in range(step // 2, shape[0] - step // 2, step)
                               for x in range(step // 2, shape[1] - step // 2, step)):
        cv2.circle(labels, (x, y), round(diameter / 2), k + 1, -1)
    return labels


def image_of(labels: np.ndarray, blur: float) -> np.ndarray:
    """A normalised image of bright nuclei where `labels` are, blurred by σ = `blur` px (as a
    magnified or digitally enlarged image is), with a little noise."""
    image = cv2.GaussianBlur((labels > 0).astype(np.float32), (0, 0), blur)
    return image + np.random.default_rng(0).normal(0, 0.01, image.shape).astype(np.float32)


def test_rim_width_tells_sharp_nuclei_from_blurred_ones_and_from_fragments():
    nuclei = discs(40.0)
    sharp, blurred = rim_width(image_of(nuclei, 1.0), nuclei), rim_width(image_of(nuclei, 6.0), nuclei)
    assert sharp < RIM_BLURRED < blurred
    assert rim_width(image_of(nuclei, 1.0), cut(nuclei, 12)) > blurred


def cut(labels: np.ndarray, every: int) -> np.ndarray:
    """`labels` cut into fragments by diagonal lines `every` px, each fragment its own label."""
    inside = (labels > 0) & (np.indices(labels.shape).sum(axis=0) % every > 1)
    return cv2.connectedComponents(inside.astype(np.uint8), connectivity=4)[1]


@pytest.mark.parametrize(("found", "blur", "shrunk"), [
    (40.0, 6.0, True),  # large nuclei with blurred rims: magnified or enlarged, shrunk
    (40.0, 1.0, False),  # sharp nuclei within the trained range: one pass at their own size
    (28.0, 6.0, False),  # under BLURRED training diameters: one pass
])
def test_large_nuclei_with_blurred_rims_are_shrunk(found, blur, shrunk):
    scale, calls = DEFAULT_SCALE, []
    nuclei = discs(found)

    def segment_at(factor: float) -> np.ndarray:
        calls.append(factor)
        return nuclei  # the nuclei the model finds, at the image's size

    sized = segment_auto(segment_at, image_of(nuclei, blur), 30.0, scale)
    assert 28 < BLURRED * scale.diameter < 40 < scale.high  # the cases' premises
    assert sized.diameter == pytest.approx(found, rel=0.05)
    if shrunk:
        assert sized.factor == pytest.approx(target(found, scale) / found, rel=0.05) and calls[-1] == sized.factor
    else:
        assert sized.factor == 1.0 and calls == [1.0]


@pytest.mark.parametrize("fragments", [True, False])
def test_a_refused_check_pass_is_taken_when_the_full_size_pass_fragments(fragments):
    """The coarse estimate reads a colony as one blob (250 px); the check pass at that size
    finds nuclei of 100 px, too far from it to be trusted. The full-size pass decides: cut
    into pieces narrower than their own rims, it is fragmenting, and the nuclei are 100 px;
    finding sharp nuclei of its own (clumps read as blobs), it is right."""
    scale, calls = DEFAULT_SCALE, []
    big = discs(100.0, (480, 480))
    pieces = cut(big, 16)
    small = discs(20.0, (480, 480))
    image = image_of(big, 8.0) if fragments else image_of(small, 1.0)

    def segment_at(factor: float) -> np.ndarray:
        calls.append(factor)
        if factor < 1:
            return big
        return pieces if fragments else small

    sized = segment_auto(segment_at, image, 250.0, scale)
    assert median_diameter(big) / 250.0 < 1 / LARGE and median_diameter(big) > scale.high  # refused, beyond range
    assert median_diameter(pieces) < BLURRED * scale.diameter  # fragments no other rule would shrink
    if fragments:
        assert sized.factor < 1 and sized.diameter == pytest.approx(100, rel=0.05) and len(calls) == 3
    else:
        assert sized.factor == 1.0 and sized.diameter == pytest.approx(20, rel=0.05) and calls[-1] == 1.0
