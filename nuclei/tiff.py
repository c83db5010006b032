"""TIFF, the microscopy format, through tifffile: 16-bit, float, multi-sample and planar
pages that OpenCV mangles, a chosen page of a multi-page file, and the pixel size from the
resolution tags. Page headers are read without their pixels, so sizes are checked first."""

from __future__ import annotations

import io

import numpy as np
import tifffile

MICRONS_PER_UNIT = {2: 25_400.0, 3: 10_000.0, 4: 1_000.0, 5: 1.0}  # inch, cm; tifffile also writes mm, µm


class TiffPageError(ValueError):
    """A page index outside the file."""


def _page(tif: tifffile.TiffFile, page: int) -> tifffile.TiffPage:
    count = len(tif.pages)
    if count == 0:
        raise ValueError("the TIFF has no readable page")
    if not 0 <= page < count:
        raise TiffPageError(f"page={page} is out of range: the TIFF has {count} page(s) (0..{count - 1})")
    return tif.pages[page]


def page_header(data: bytes, page: int = 0) -> tuple[int, int, int, int, int, int]:
    """(width, height, pages, samples per pixel, depth, bytes per sample) of one page."""
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        p = _page(tif, page)
        sample_bytes = p.dtype.itemsize if p.dtype is not None else 0
        return (int(p.imagewidth), int(p.imagelength), len(tif.pages), int(p.samplesperpixel),
                int(p.imagedepth), sample_bytes)


def _pixel_size_um(tif: tifffile.TiffFile, page: tifffile.TiffPage) -> float | None:
    """µm per pixel from XResolution and ResolutionUnit, or ImageJ's `unit=micron`."""
    tag = page.tags.get("XResolution")
    if tag is None:
        return None
    numerator, denominator = tag.value
    if not numerator or not denominator:
        return None
    per_unit = numerator / denominator  # pixels per unit
    unit = int(page.tags["ResolutionUnit"].value) if "ResolutionUnit" in page.tags else 1
    if unit in MICRONS_PER_UNIT:
        return MICRONS_PER_UNIT[unit] / per_unit
    imagej = tif.imagej_metadata or {}
    if str(imagej.get("unit", "")).lower() in ("micron", "um", "µm", "\\u00b5m"):
        return 1.0 / per_unit
    return None


def read_page(data: bytes, page: int = 0) -> tuple[np.ndarray, float | None]:
    """One page as HxW or HxWxC (samples interleaved), and its pixel size in µm if known."""
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        p = _page(tif, page)
        image = p.asarray()
        if p.planarconfig == tifffile.PLANARCONFIG.SEPARATE and image.ndim == 3:
            image = np.moveaxis(image, 0, -1)  # samples first → interleaved
        return image, _pixel_size_um(tif, p)
