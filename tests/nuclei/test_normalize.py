"""One normalisation for every image kind: bit depth, channels and polarity removed."""

import numpy as np
import pytest

from nuclei.normalize import ChannelError, normalize
from tests.conftest import read_sample


def test_bit_depth_does_not_matter():
    _, image, _ = read_sample("fluorescence_256x256")
    as16 = image.astype(np.uint16) * 257
    assert np.allclose(normalize(image), normalize(as16), atol=1e-6)


def test_output_range_and_shape():
    _, image, _ = read_sample("he_stained_256x320")
    out = normalize(image)
    assert out.shape == (256, 320, 3) and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1


def test_bright_background_is_inverted_so_nuclei_are_bright():
    for name in ("he_stained_256x320", "brightfield_320x320", "fluorescence_256x256"):
        _, image, labels = read_sample(name)
        grey = normalize(image).mean(axis=2)
        assert grey[labels > 0].mean() > grey[labels == 0].mean(), name


def test_grey_alpha_rgba_agree():
    grey = np.random.default_rng(0).integers(0, 255, (16, 16), dtype=np.uint8)
    rgba = np.dstack([grey, grey, grey, np.full_like(grey, 255)])
    assert np.array_equal(normalize(grey), normalize(rgba))
    assert np.array_equal(normalize(grey), normalize(np.dstack([grey, grey])))


def test_constant_and_non_finite_images():
    assert not normalize(np.full((8, 8), 7, np.uint8)).any()
    image = np.ones((8, 8), np.float32)
    image[0, 0] = np.nan
    assert np.isfinite(normalize(image)).all()


def test_five_channels_refused():
    with pytest.raises(ChannelError):
        normalize(np.zeros((4, 4, 5), np.uint8))


@pytest.mark.parametrize("name", ["he_stained_256x320", "brightfield_320x320", "fluorescence_256x256"])
def test_integer_shortcut_equals_float_path(name):
    """uint8/uint16 images take a histogram shortcut; the float path is its exact reference."""
    _, image, _ = read_sample(name)
    for variant in (image, image[..., 0], (image.astype(np.uint16) * 257 + 3)[..., :3]):
        out = normalize(variant)
        assert out.dtype == np.float32 and out.flags.c_contiguous
        assert np.array_equal(out, normalize(variant.astype(np.float32)))


def test_integer_shortcut_edge_cases():
    rng = np.random.default_rng(1)
    cases = [
        rng.integers(0, 4096, (37, 23), dtype=np.uint16),  # odd pixel count, 12-bit in 16
        rng.integers(0, 256, (6, 5, 3), dtype=np.uint8),  # colour, even count
        np.array([[0, 1]], np.uint8),  # the percentiles fall between two levels
        np.array([[0, 0], [255, 255]], np.uint8),  # median exactly on the inversion threshold
        np.dstack([np.array([[0, 0], [255, 255]], np.uint8)] * 2 + [np.array([[9, 0], [255, 0]], np.uint8)]),
    ]
    for image in cases:
        assert np.array_equal(normalize(image), normalize(image.astype(np.float32))), image
