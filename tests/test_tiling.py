"""Tiling is invisible: tiled prediction equals one pass over the whole image."""

import itertools

import cv2
import numpy as np
import pytest

from app.segmenter import Segmenter
from app.tiling import pad_to_multiple, predict_tiled, tile_origins
from tests.conftest import FLOAT_MODEL, MODEL, read_sample


def local_op(batch: np.ndarray) -> np.ndarray:
    """A stand-in network with a 5×5 receptive field, so tile seams would show."""
    return np.stack([cv2.blur(x, (5, 5), borderType=cv2.BORDER_REFLECT) for x in batch])


@pytest.mark.parametrize("shape", [(1, 1), (7, 300), (256, 256), (1040, 1388), (300, 17)])
def test_output_has_input_size(shape):
    image = np.random.default_rng(0).random((*shape, 3), dtype=np.float32)
    out = predict_tiled(image, local_op, tile=128, overlap=32, stride=16)
    assert out.shape == (*shape, 3)


def test_tiled_equals_untiled_away_from_padding():
    image = np.random.default_rng(1).random((300, 420, 3), dtype=np.float32)
    whole = predict_tiled(image, local_op, tile=512, overlap=32, stride=16)
    tiled = predict_tiled(image, local_op, tile=96, overlap=32, stride=16)
    assert np.allclose(whole, tiled, atol=1e-6)


# Largest |tiled − whole| with 512-px tiles: the receptive field is wider than the 64-px
# margin, and the INT8 model's activations move in steps of its quantisation scale.
@pytest.mark.parametrize(("model", "max_diff"), [(FLOAT_MODEL, 0.05), (MODEL, 0.12)], ids=["float32", "int8"])
def test_real_model_tiled_matches_whole_image(model, max_diff):
    segmenter = Segmenter(model)
    _, image, _ = read_sample("fluorescence_520x696")
    whole = segmenter.probabilities(image, tile=1024)
    for tile in (512, 256):
        tiled = segmenter.probabilities(image, tile=tile)
        assert whole.shape == tiled.shape == (520, 696, 2)
        assert ((whole[..., 0] > 0.5) == (tiled[..., 0] > 0.5)).mean() > 0.9998, tile
    assert np.abs(whole - segmenter.probabilities(image, tile=512)).max() < max_diff


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
