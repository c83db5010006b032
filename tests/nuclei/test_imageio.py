"""Decoding: header-first size checks, every supported kind, clear refusals, and fuzzed
files that raise only ImageError."""

import contextlib
import tracemalloc

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nuclei.imageio import (
    ImageError,
    ImageTooLargeError,
    UnsupportedImageError,
    decode_image,
    read_header,
)
from nuclei.normalize import ChannelError, to_rgb
from tests.conftest import crop, png_bytes, read_sample
from tests.payloads import bomb_png, deflated_tiff, tiff
from tests.payloads import encode as encoded


def test_sample_decodes_as_rgba_in_rgb_order():
    data, image, _ = read_sample("he_stained_256x320")
    bgra = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert image.shape == (256, 320, 4)
    assert np.array_equal(image[..., 0], bgra[..., 2])  # red first


def test_decompression_bomb_refused_from_header():
    data = bomb_png(100_000, 100_000)
    assert len(data) < 50_000
    assert read_header(data).width == 100_000
    with pytest.raises(ImageTooLargeError, match="100000×100000"):
        decode_image(data, max_pixels=4096 * 4096)


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".tif"])
def test_header_sizes_match_decoded(ext):
    image = np.random.default_rng(0).integers(0, 255, (37, 53, 3), dtype=np.uint8)
    _ok, buf = cv2.imencode(ext, image)
    header = read_header(buf.tobytes())
    assert (header.width, header.height) == (53, 37)
    assert decode_image(buf.tobytes()).shape[:2] == (37, 53)


def test_16_bit_and_float_and_multisample_tiff():
    grey16 = np.random.default_rng(0).integers(0, 65535, (40, 30), dtype=np.uint16)
    assert np.array_equal(decode_image(tiff(grey16)), grey16)
    as_float = grey16.astype(np.float32) / 65535
    assert decode_image(tiff(as_float)).dtype == np.float32
    rgb16 = np.random.default_rng(1).integers(0, 65535, (40, 30, 3), dtype=np.uint16)
    assert decode_image(tiff(rgb16, photometric="rgb")).shape == (40, 30, 3)
    planar = tiff(np.moveaxis(rgb16, -1, 0), photometric="rgb", planarconfig="separate")
    assert np.array_equal(decode_image(planar), rgb16)


def test_multipage_tiff_uses_first_page():
    pages = np.stack([np.zeros((20, 20), np.uint8), np.full((20, 20), 9, np.uint8)])
    assert not decode_image(tiff(pages)).any()


@pytest.mark.parametrize("fmt", [".png", ".jpg", ".tif"])
def test_truncated_files_are_errors(fmt):
    _, image, _ = read_sample("fluorescence_256x256")
    _ok, buf = cv2.imencode(fmt, image[..., :3])
    data = buf.tobytes()
    with pytest.raises(ImageError):
        decode_image(data[: len(data) // 2])


@pytest.mark.parametrize(("data", "error"), [
    (b"", ImageError),
    (b"just some text, named .png", UnsupportedImageError),
    (b"GIF89a" + b"\x00" * 20, UnsupportedImageError),
    (b"\x89PNG\r\n\x1a\n", ImageError),
])
def test_not_images(data, error):
    with pytest.raises(error):
        decode_image(data)


def test_zero_size_png_header():
    with pytest.raises(ImageError, match="empty"):
        decode_image(bomb_png(0, 5))


def test_one_pixel_image():
    assert decode_image(png_bytes(np.array([[200]], np.uint8))).shape == (1, 1)


def test_tiff_samples_bomb_is_refused_before_decoding():
    """1024×1024 px passes MAX_PIXELS, but 64 samples each make 64 MB from a 64 kB file:
    refused from the header, so the decoder never allocates the array (numpy's allocations
    show in tracemalloc)."""
    data = deflated_tiff(1024, 1024, 64)
    assert len(data) < 100_000
    tracemalloc.start()
    try:
        with pytest.raises(UnsupportedImageError, match="64-channel"):
            decode_image(data, max_pixels=4096 * 4096)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20


# ---------------------------------------------------------------- fuzzing

SEEDS = [encoded(ext, crop(12, 17)) for ext in (".png", ".jpg", ".bmp")] + [
    tiff(crop(12, 17), photometric="rgb"), tiff(crop(12, 17), photometric="rgb", compression="zlib"),
    tiff(crop(12, 17)[..., 0].astype(np.float32)), tiff(np.stack([crop(12, 17)[..., 0]] * 2)),
    tiff(np.moveaxis(crop(12, 17), -1, 0), photometric="rgb", planarconfig="separate"),
]


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(seed=st.sampled_from(SEEDS),
       edits=st.lists(st.tuples(st.integers(0, 2**16), st.integers(0, 255)), max_size=8),
       cut=st.one_of(st.none(), st.integers(0, 2**16)))
def test_mangled_image_bytes_raise_only_image_errors(seed, edits, cut):
    """Bit-flipped or cut-off files: decoded, or refused with an ImageError (a 4xx), never a
    crash that would be a 500 (tifffile and OpenCV raise many other kinds on their own)."""
    data = bytearray(seed)
    for pos, value in edits:
        data[pos % len(data)] = value
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    with contextlib.suppress(ImageError, ChannelError):
        to_rgb(decode_image(bytes(data), max_pixels=4096 * 4096))
