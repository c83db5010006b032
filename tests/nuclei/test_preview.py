"""format=preview: the plane segmented, as 8-bit a browser draws, stretched so a 16-bit
image whose values fill a few percent of its range is not black."""

from __future__ import annotations

import numpy as np

from tests.channels import layouts, planes
from tests.conftest import post, read_png, read_sample


def test_a_16_bit_two_channel_tiff_previews_the_channel_segmented(client):
    r = post(client, layouts()["ome"], name="x.tif", format="preview", channel=1)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    shown = read_png(r.content)
    assert shown.dtype == np.uint8 and shown.shape == planes()[1].shape
    assert shown.std() > 20, "visible, not black"
    assert np.corrcoef(shown.ravel(), planes()[1].ravel())[0, 1] > 0.99, "the nuclear stain, not the noise"


def test_colour_stays_colour_and_8_bit_stays_as_it_is(client):
    data, image, _ = read_sample("he_stained_256x320")
    shown = read_png(post(client, data, format="preview").content)[..., ::-1]  # OpenCV reads BGR
    assert np.array_equal(shown, image[..., :3])
