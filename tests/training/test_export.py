"""The committed float32 ONNX file is the committed Keras weights: parity on real images.
(The INT8 model made from it is checked in test_model_quality.py.)"""

import json

import numpy as np
import pytest

from nuclei.card import sha256_file
from nuclei.normalize import normalize
from nuclei.segmenter import Segmenter
from nuclei.tiling import pad_to_multiple
from tests.conftest import FLOAT_MODEL as MODEL
from tests.conftest import SAMPLE_NAMES, read_sample
from training.export import PARITY_TOLERANCE
from training.model import build_unet, stride

CARD = json.loads(MODEL.with_suffix(".json").read_text())


@pytest.fixture(scope="module")
def keras_model():
    weights = MODEL.parent / CARD["architecture"]["keras_weights"]
    model = build_unet(tuple(CARD["architecture"]["filters"]), outputs=len(CARD["output"]["channels"]))
    model.load_weights(weights)
    return model


@pytest.fixture(scope="module")
def segmenter():
    return Segmenter(MODEL)


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_onnx_matches_keras_on_real_images(keras_model, segmenter, name):
    _, image, _ = read_sample(name)
    x = pad_to_multiple(normalize(image), stride(tuple(CARD["architecture"]["filters"])))[None]
    expected = np.asarray(keras_model(x, training=False))
    got = segmenter.run_batch(x)
    assert got.shape == expected.shape == (1, *x.shape[1:3], len(CARD["output"]["channels"]))
    assert np.abs(expected - got).max() <= PARITY_TOLERANCE


def test_card_describes_the_file():
    assert CARD["sha256"] == sha256_file(MODEL)
    assert MODEL.stat().st_size < 50e6
    assert CARD["input"]["stride"] == stride(tuple(CARD["architecture"]["filters"]))
    assert len(CARD["training"]["validation_ids"]) > 0
    assert CARD["export"]["parity_max_abs_diff"] <= PARITY_TOLERANCE


def test_corrupt_model_is_refused(tmp_path):
    broken = tmp_path / MODEL.name
    broken.write_bytes(MODEL.read_bytes()[:-10] + b"0123456789")
    broken.with_suffix(".json").write_text(MODEL.with_suffix(".json").read_text())
    with pytest.raises(RuntimeError, match="does not match its card"):
        Segmenter(broken)
