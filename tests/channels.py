"""Two-channel TIFFs as microscopes and Fiji write them, made from a real sample: channel 0
another stain (noise), channel 1 the nuclei (DAPI), 16-bit, in each layout a file may use."""

from __future__ import annotations

import io

import numpy as np
import tifffile

from tests.conftest import png_bytes, read_sample

SAMPLE = "fluorescence_256x256"


def planes() -> np.ndarray:
    """(2, H, W) uint16: noise, then the sample's nuclei as a 16-bit stain."""
    _, image, _ = read_sample(SAMPLE)
    grey = image if image.ndim == 2 else image[..., 0]
    dapi = grey.astype(np.uint16) * 200 + 300
    noise = np.random.default_rng(7).integers(200, 4000, dapi.shape, dtype=np.uint16)
    return np.stack([noise, dapi])


def _tiff(data: np.ndarray, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, data, **kwargs)
    return buf.getvalue()


def layouts() -> dict[str, bytes]:
    """name → file: OME-TIFF and ImageJ hyperstack (a page per channel, axes CYX), and one
    page whose samples are the channels, interleaved or planar."""
    stack = planes()
    return {
        "ome": _tiff(stack, ome=True, metadata={"axes": "CYX"}),
        "imagej": _tiff(stack, imagej=True, metadata={"axes": "CYX"}),
        "interleaved": _tiff(np.moveaxis(stack, 0, -1), photometric="minisblack", planarconfig="contig",
                             metadata=None),
        "planar": _tiff(stack, photometric="minisblack", planarconfig="separate", metadata=None),
    }


def dapi_png() -> bytes:
    """Channel 1 alone, as a 16-bit PNG: what channel=1 of every layout must match."""
    return png_bytes(planes()[1])
