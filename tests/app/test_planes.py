"""`page=` and `channel=` by what the file's axes say (nuclei.planes): channel 1 of a
two-channel OME-TIFF, ImageJ hyperstack, interleaved or planar TIFF segments the nuclei
that the same plane gives as a PNG; no channel= segments channel 0 and says so."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tifffile

from nuclei.imageio import PlaneError, decode_plane
from nuclei.planes import HEADER
from tests.channels import dapi_png, layouts, planes
from tests.conftest import post

LAYOUTS = layouts()


@pytest.fixture(scope="module")
def dapi_count(client) -> int:
    r = post(client, dapi_png(), name="dapi.png", format="rle")
    assert r.status_code == 200, r.text
    assert r.json()["count"] > 15
    return r.json()["count"]


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_channel_1_segments_the_nuclear_stain_as_the_png_of_it_does(client, dapi_count, layout):
    r = post(client, LAYOUTS[layout], name=f"{layout}.tif", format="rle", channel=1)
    assert r.status_code == 200, r.text
    assert r.json()["count"] == dapi_count
    assert r.headers["x-image-plane"] == "page=0/1; channel=1/2"
    assert HEADER.lower() not in r.headers


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_no_channel_segments_channel_0_and_says_so(client, dapi_count, layout):
    r = post(client, LAYOUTS[layout], name=f"{layout}.tif", format="rle")
    assert r.status_code == 200, r.text
    assert r.headers["x-image-plane"] == "page=0/1; channel=0/2"
    warning = r.headers[HEADER]
    assert "2 channels" in warning and "channel 0 was segmented" in warning and "channel=0..1" in warning
    assert r.json()["count"] != dapi_count


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_a_channel_or_page_out_of_range_is_422_naming_the_range(client, layout):
    r = post(client, LAYOUTS[layout], name=f"{layout}.tif", channel=2)
    assert r.status_code == 422
    assert r.json()["detail"] == "channel=2 is out of range: the image has 2 channel(s) (0..1)"
    r = post(client, LAYOUTS[layout], name=f"{layout}.tif", page=1)
    assert r.status_code == 422
    assert r.json()["detail"].startswith("page=1 is out of range: the image has 1 page(s) (0..0)")


def test_z_and_t_are_pages_and_c_is_a_channel_in_a_hyperstack():
    stack = planes()
    zct = np.stack([stack + z for z in range(3)])  # Z, C, Y, X
    buf = io.BytesIO()
    tifffile.imwrite(buf, zct, imagej=True, metadata={"axes": "ZCYX"})
    image, plane = decode_plane(buf.getvalue(), page=2, channel=1)
    assert np.array_equal(image, stack[1] + 2)
    assert plane.describe() == "page=2/3; channel=1/2" and plane.warning is None
    with pytest.raises(PlaneError, match=r"page=3 is out of range: the image has 3 page\(s\)"):
        decode_plane(buf.getvalue(), page=3, channel=0)


def test_a_plain_multi_page_tiff_keeps_the_page_rule():
    stack = planes()
    buf = io.BytesIO()
    tifffile.imwrite(buf, stack, photometric="minisblack", metadata=None)  # two pages, no axes
    image, plane = decode_plane(buf.getvalue(), page=1)
    assert np.array_equal(image, stack[1])
    assert plane.describe() == "page=1/2; channel=all/1" and plane.warning is None


def test_colour_and_grey_with_alpha_are_not_several_channels():
    rgb = np.zeros((20, 30, 3), np.uint8)
    grey_alpha = np.zeros((20, 30, 2), np.uint8)
    for data, kwargs in ((rgb, {}), (grey_alpha, {"photometric": "minisblack", "extrasamples": ["unassalpha"]})):
        buf = io.BytesIO()
        tifffile.imwrite(buf, data, metadata=None, **kwargs)
        image, plane = decode_plane(buf.getvalue())
        assert image.shape == data.shape and plane.warning is None and plane.channel is None
