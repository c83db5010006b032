"""TIFF, the microscopy format, through tifffile: 16-bit, float, multi-sample and planar
pages that OpenCV mangles, the plane `page=` and `channel=` name by the file's axes
(`nuclei.planes`), and the pixel size from the resolution tags. Page headers are read
without their pixels, so sizes are checked first."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import tifffile

from nuclei.planes import Location, PlaneRangeError, locate

MICRONS_PER_UNIT = {2: 25_400.0, 3: 10_000.0, 4: 1_000.0, 5: 1.0}  # inch, cm; tifffile also writes mm, µm


class TiffPageError(ValueError):
    """A page or channel outside the file."""


@dataclass(frozen=True)
class Stored:
    """The located plane: its page (or frame) in the file and where `page=`/`channel=` fell."""

    page: tifffile.TiffPage
    location: Location


def _layout(tif: tifffile.TiffFile) -> tuple[Sequence, str, tuple[int, ...], str]:
    """(the pages in series order, the axes above one page, their sizes, the series' axes).
    One series whose axes cover its pages (OME, ImageJ, shaped) is read by its axes; any
    other file page by page, as a plain multi-page TIFF."""
    if len(tif.series) == 1:
        series = tif.series[0]
        inner = series.keyframe.axes
        outer = series.axes[: len(series.axes) - len(inner)]
        shape = tuple(int(n) for n in series.shape[: len(outer)])
        if series.axes.endswith(inner) and math.prod(shape) == len(series.pages):
            return series.pages, outer, shape, series.axes
    return tif.pages, "I", (len(tif.pages),), ""


def _data_samples(page: tifffile.TiffPage) -> bool:
    """Samples that are channels of their own: grey with extra samples that are not alpha."""
    alpha = {tifffile.EXTRASAMPLE.ASSOCALPHA, tifffile.EXTRASAMPLE.UNASSALPHA}
    grey = page.photometric in (tifffile.PHOTOMETRIC.MINISBLACK, tifffile.PHOTOMETRIC.MINISWHITE)
    return grey and int(page.samplesperpixel) > 1 and not set(page.extrasamples) <= alpha


def _locate(tif: tifffile.TiffFile, page: int, channel: int | None) -> Stored:
    pages, outer, shape, axes = _layout(tif)
    if not len(pages):
        raise ValueError("the TIFF has no readable page")
    first = pages[page] if not axes and 0 <= page < len(pages) else pages[0]  # plain: pages differ
    key = first if isinstance(first, tifffile.TiffPage) else first.keyframe
    try:
        where = locate(outer, shape, int(key.samplesperpixel), _data_samples(key), page, channel, axes)
    except PlaneRangeError as exc:
        raise TiffPageError(str(exc)) from exc
    found = pages[where.index]
    if found is None:
        raise ValueError(f"page {where.index} of the TIFF is unreadable")
    return Stored(found, where)


def page_header(data: bytes, page: int = 0, channel: int | None = None,
                ) -> tuple[int, int, Location, int, int, int]:
    """(width, height, where the plane is, samples per pixel, depth, bytes per sample)."""
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        stored = _locate(tif, page, channel)
        p = stored.page if isinstance(stored.page, tifffile.TiffPage) else stored.page.keyframe
        sample_bytes = p.dtype.itemsize if p.dtype is not None else 0
        return (int(p.imagewidth), int(p.imagelength), stored.location, int(p.samplesperpixel),
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


def read_page(data: bytes, page: int = 0, channel: int | None = None,
              ) -> tuple[np.ndarray, float | None, Location]:
    """The plane `page`/`channel` name (`nuclei.planes`) as HxW or HxWxC (samples
    interleaved), its pixel size in µm if known, and where it was found."""
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        stored = _locate(tif, page, channel)
        p = stored.page if isinstance(stored.page, tifffile.TiffPage) else stored.page.keyframe
        image = stored.page.asarray()
        if p.planarconfig == tifffile.PLANARCONFIG.SEPARATE and image.ndim == 3:
            image = np.moveaxis(image, 0, -1)  # samples first → interleaved
        if stored.location.sample is not None and image.ndim == 3:
            image = image[..., stored.location.sample]
        return image, _pixel_size_um(tif, p), stored.location
