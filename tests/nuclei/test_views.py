"""Test-time augmentation (nuclei/views.py): a card's `inference.views` makes the maps the mean
over mirrored views, so the model's answer no longer depends on how the slide was mirrored."""

import numpy as np
import pytest

from nuclei.card import CardError
from nuclei.segmenter import Segmenter
from nuclei.views import VIEWS, averaged
from tests.conftest import read_sample
from tests.models import add_model


def test_views_are_turned_back_before_averaging():
    image = np.random.default_rng(0).random((12, 20, 3)).astype(np.float32)
    for views in VIEWS:  # a pixel-wise network: every view, turned back, is the image's own map
        assert np.allclose(averaged(lambda x: x[..., :2] * 2, image, views), image[..., :2] * 2)

    def columns(x: np.ndarray) -> np.ndarray:  # a network that answers where a pixel is, not what
        return np.broadcast_to(np.arange(x.shape[1], dtype=np.float32)[None, :, None], (*x.shape[:2], 1))

    assert np.allclose(averaged(columns, image, 1)[0, :, 0], np.arange(20))
    assert np.allclose(averaged(columns, image, 4), 19 / 2)  # mirrored left-right: the ramp cancels


def test_a_card_asking_for_views_answers_the_same_for_a_mirrored_image(tmp_path):
    """One pass of a CNN over padded tiles is not mirror-symmetric; the mean over the views is,
    and it is not under a quarter turn, which the trust signal's second pass relies on."""
    _, image, _ = read_sample("he_stained_256x320")
    one = Segmenter(add_model(tmp_path / "one", "m"))
    assert not np.allclose(one.probabilities(image[:, ::-1])[:, ::-1], one.probabilities(image), atol=1e-3)
    many = Segmenter(add_model(tmp_path / "many", "m", inference={**one.card.inference.model_dump(by_alias=True),
                                                                  "views": 4}))
    maps = many.probabilities(image)
    assert np.allclose(many.probabilities(image[:, ::-1])[:, ::-1], maps, atol=1e-5)
    assert np.allclose(many.probabilities(image[::-1])[::-1], maps, atol=1e-5)
    turned = np.rot90(many.probabilities(np.ascontiguousarray(np.rot90(image))), -1)
    assert not np.allclose(turned, maps, atol=1e-3), "a quarter turn is still a second opinion"
    eight = add_model(tmp_path / "eight", "m", inference={**one.card.inference.model_dump(by_alias=True), "views": 8})
    with pytest.raises(CardError, match=r"inference\.views"):  # quarter turns would blind the trust signal
        Segmenter(eight)
