"""POST /segment?diameter=: the nucleus size the image was segmented at comes back in
X-Nucleus-Diameter (every format) and in format=rle; one out of range is a 422 naming it."""

from __future__ import annotations

import pytest

from nuclei.scale import allowed, resize
from tests.conftest import png_bytes, post, read_sample

NAME = "fluorescence_256x256"


def test_header_and_rle_field_on_a_native_image(client):
    data = read_sample(NAME)[0]
    r = post(client, data, format="rle")
    assert r.status_code == 200, r.text
    header = r.headers["X-Nucleus-Diameter"]
    assert float(header) == r.json()["diameter"] > 0
    assert header == f"{float(header):.1f}"
    assert "X-Nucleus-Diameter" in post(client, data).headers  # format=png too


def test_enlarged_image_with_and_without_diameter(client):
    data, image, _ = read_sample("fluorescence_520x696")  # nuclei of about 30 px
    native = post(client, data, format="rle").json()
    big = png_bytes(resize(image, 2.2))  # about 65 px: out of the trained range
    given = post(client, big, format="rle", diameter=2.2 * native["diameter"])
    auto = post(client, big, format="rle")
    assert given.status_code == auto.status_code == 200
    assert given.json()["diameter"] == pytest.approx(2.2 * native["diameter"], abs=0.05)
    assert auto.json()["diameter"] == pytest.approx(2.2 * native["diameter"], rel=0.25)
    for r in (given, auto):
        assert abs(r.json()["count"] - native["count"]) <= 0.1 * native["count"]


@pytest.mark.parametrize("diameter", ["1", "5000"])
def test_out_of_range_diameter_is_422_naming_the_range(client, diameter):
    low, high = allowed(client.app.state.registry.default.card.nucleus_scale)
    r = post(client, read_sample(NAME)[0], diameter=diameter)
    assert r.status_code == 422
    assert f"{low:.1f} to {high:.1f}" in r.json()["detail"]


@pytest.mark.parametrize("diameter", ["0", "-3", "nan"])
def test_non_positive_diameter_is_422(client, diameter):
    assert post(client, read_sample(NAME)[0], diameter=diameter).status_code == 422


def test_cors_exposes_the_diameter_header():
    from app.main import EXPOSED_HEADERS

    assert "X-Nucleus-Diameter" in EXPOSED_HEADERS
