"""Tiling is invisible: tiled prediction equals one pass over the whole image."""

import itertools

import cv2
import numpy as np
import pytest

from nuclei.segmenter import Segmenter
from nuclei.tiling import pad_to_multiple, predict_tiled, tile_origins
from tests.conftest import FLOAT_MODEL, MODEL, read_sample


def local_op(batch: np.ndarray) -> np.ndarray:
    """A stand-in network with a 5×5 receptive field, so tile seams would show."""
    return np.stack([cv2.blur(x, (5, 5), borderType=cv2.BORDER_REFLECT) for x in batch])


@pytest.mark.parametrize("shape", [(1, 1), (7, 300), (256, 256), (1040, 1388), (300, 17)])
def test_output_has_input_size(shape):
    image = np.random.default_rng(0).random((*shape, 3), dtype=np.float32)
    out = predict_tiled(image, local_op, tile_size=128, overlap=32, stride=16)
    assert out.shape == (*shape, 3)


def test_tiled_equals_untiled_away_from_padding():
    image = np.random.default_rng(1).random((300, 420, 3), dtype=np.float32)
    whole = predict_tiled(image, local_op, tile_size=512, overlap=32, stride=16)
    tiled = predict_tiled(image, local_op, tile_size=96, overlap=32, stride=16)
    assert np.allclose(whole, tiled, atol=1e-6)


# |tiled − whole| with 512-px tiles: the receptive field is wider than the 64-px margin, so a
# few pixels by the seams move a little (model 1.3.0: 99.9th percentile 0.002 float32 / 0.008
# INT8, largest 0.06 / 0.09). Tiles with 32 px of overlap or none move them by 0.7–0.9 and
# the 99.9th percentile past 0.05.
@pytest.mark.slow
@pytest.mark.parametrize(("model", "p999"), [(FLOAT_MODEL, 0.01), (MODEL, 0.02)], ids=["float32", "int8"])
def test_real_model_tiled_matches_whole_image(model, p999):
    segmenter = Segmenter(model)
    _, image, _ = read_sample("fluorescence_520x696")
    whole = segmenter.probabilities(image, tile_size=1024)
    for tile in (512, 256):
        tiled = segmenter.probabilities(image, tile_size=tile)
        assert whole.shape == tiled.shape == (520, 696, 2)
        assert ((whole[..., 0] > 0.5) == (tiled[..., 0] > 0.5)).mean() > 0.9998, tile
    diff = np.abs(whole - segmenter.probabilities(image, tile_size=512))
    assert np.quantile(diff, 0.999) < p999 and diff.max() < 0.15


def test_tiles_cover_with_overlap():
    assert tile_origins(100, 128, 32) == [0]
    origins = tile_origins(1040, 256, 64)
    assert origins[0] == 0 and origins[-1] == 1040 - 256
    assert all(b - a <= 256 - 64 for a, b in itertools.pairwise(origins))


def test_pad_to_multiple_keeps_content():
    image = np.arange(15, dtype=np.float32).reshape(3, 5)
    padded = pad_to_multiple(image, 16)
    assert padded.shape == (16, 16)
    assert (padded[:3, :5] == image).all()
