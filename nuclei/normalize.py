"""The one input normalisation, used identically by training and by the service.

DSB2018 mixes fluorescence (bright nuclei on black), brightfield and H&E (dark nuclei on a
bright background), in 8 or 16 bits, grey or colour. Scaling each image by its own
percentiles removes the bit depth and exposure; flipping images whose background is bright
makes nuclei bright everywhere, so a small network need not learn both polarities.
"""

from __future__ import annotations

import cv2
import numpy as np

LOW_PERCENTILE = 1.0
HIGH_PERCENTILE = 99.8
CHANNELS = 3
DESCRIPTION = (
    f"RGB float32 in [0, 1]: grey replicated to 3 channels, alpha dropped; scaled per image "
    f"between its {LOW_PERCENTILE}th and {HIGH_PERCENTILE}th percentiles and clipped; inverted "
    "when the median grey level is above 0.5 (bright background), so nuclei are bright."
)


class ChannelError(ValueError):
    """An image whose channels cannot be read as grey, grey+alpha, RGB or RGBA."""


def _channel_view(image: np.ndarray) -> np.ndarray:
    """HxW or HxWxC → HxWx1 (grey) or HxWx3 (RGB) view, no copy; alpha dropped."""
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3:
        raise ChannelError(f"expected a 2-D image, got an array of shape {image.shape}")
    channels = image.shape[2]
    if channels in (1, 2):  # grey, grey + alpha
        return image[..., :1]
    if channels in (3, 4):  # RGB, RGBA
        return image[..., :3]
    raise ChannelError(f"{channels}-channel images are not supported (grey, RGB or RGBA only)")


def to_rgb(image: np.ndarray) -> np.ndarray:
    """HxW or HxWxC (C in 1..4) → HxWx3, keeping the dtype."""
    view = _channel_view(image)
    return np.repeat(view, 3, axis=2) if view.shape[2] == 1 else view


def _finite_rgb(image: np.ndarray) -> np.ndarray:
    """HxWx3 float32, NaN and ±inf read as 0 (a float TIFF may hold them)."""
    rgb = to_rgb(image).astype(np.float32, copy=False)
    finite = np.isfinite(rgb)
    return rgb if finite.all() else np.where(finite, rgb, 0.0).astype(np.float32)


def normalize(image: np.ndarray) -> np.ndarray:
    """Any decoded image → float32 HxWx3 in [0, 1] with bright nuclei."""
    if image.dtype in (np.uint8, np.uint16) and image.size:
        return _normalize_integer(_channel_view(image))
    rgb = _finite_rgb(image)
    low, high = np.percentile(rgb, (LOW_PERCENTILE, HIGH_PERCENTILE))
    scale = high - low
    if scale <= 0:
        return np.zeros(rgb.shape, np.float32)
    out = np.clip((rgb - low) / scale, 0.0, 1.0, dtype=np.float32)
    if float(np.median(out.mean(axis=2))) > 0.5:
        out = 1.0 - out
    return out


# Integer images (nearly every real upload) take a shortcut with bit-identical results: the
# float path above is elementwise in the pixel value, so it is computed once per grey level
# (a lookup table), and its percentiles and median come from a histogram instead of
# partitioning the whole image. The float path stays the reference (tests compare the two).


def _levels(view: np.ndarray) -> tuple[np.ndarray, bool, np.ndarray, np.ndarray | None, float, float]:
    """(pixels, is_grey, counts, table, low, high) of a uint8/uint16 HxWx1 or HxWx3 view: the
    percentiles from its histogram and the float path's value of every level (None if flat)."""
    grey = view[..., 0]
    is_grey = view.shape[2] == 1 or (
        np.array_equal(grey, view[..., 1]) and np.array_equal(grey, view[..., 2]))
    pixels = np.ascontiguousarray(grey if is_grey else view)
    counts = _histogram(pixels)
    # the float path works on HxWx3, a grey image replicated: each pixel counts 3 times
    cumulative = np.cumsum(counts) * (CHANNELS if is_grey else 1)
    low, high = _percentiles(cumulative, (LOW_PERCENTILE, HIGH_PERCENTILE))
    scale = high - low
    if scale <= 0:
        return pixels, is_grey, counts, None, low, high
    levels = np.arange(len(counts), dtype=np.float32)
    return pixels, is_grey, counts, np.clip((levels - low) / scale, 0.0, 1.0, dtype=np.float32), low, high


def _grey_inverted(table: np.ndarray, counts: np.ndarray) -> bool:
    """Whether a grey image's median level is bright, with the channel mean of three equal
    values computed as the float path computes it."""
    grey_table = np.repeat(table[:, None], CHANNELS, axis=1).mean(axis=1)
    return _grey_median_above_half(grey_table, np.cumsum(counts))


def _normalize_integer(view: np.ndarray) -> np.ndarray:
    """uint8/uint16 HxWx1 or HxWx3 view → exactly what the float path returns."""
    pixels, is_grey, counts, table, _, _ = _levels(view)
    if table is None:
        return np.zeros((*view.shape[:2], CHANNELS), np.float32)
    if not is_grey:
        out = _lookup(pixels, table)
        if _median_above_half(out.mean(axis=2)):
            np.subtract(1.0, out, out=out)
        return out
    if _grey_inverted(table, counts):
        table = 1.0 - table
    return cv2.merge([_lookup(pixels, table)] * CHANNELS)


def _histogram(pixels: np.ndarray) -> np.ndarray:
    """Count (int64) of every possible level among all channels of a uint8/uint16 image."""
    if pixels.dtype == np.uint8 and pixels.shape[0] * pixels.shape[1] < 2**24:
        # cv2 counts in int and returns float32, exact below 2**24 pixels per channel
        channels = range(pixels.shape[2] if pixels.ndim == 3 else 1)
        hists = [cv2.calcHist([pixels], [c], None, [256], [0, 256]) for c in channels]
        return np.sum(hists, axis=0, dtype=np.int64).ravel()
    return np.bincount(pixels.ravel(), minlength=1 << (8 * pixels.itemsize))


def _lookup(pixels: np.ndarray, table: np.ndarray) -> np.ndarray:
    """table[pixels] for a contiguous uint8/uint16 image."""
    if pixels.dtype == np.uint8:
        return cv2.LUT(pixels, table)
    return table[pixels]


def _order_statistic(cumulative: np.ndarray, k: np.ndarray) -> np.ndarray:
    """The k-th smallest (0-based) level of a histogram given its cumulative counts."""
    return np.searchsorted(cumulative, k, side="right")


def _percentiles(cumulative: np.ndarray, percentiles: tuple[float, ...]) -> np.ndarray:
    """np.percentile(float32 pixels, percentiles), method 'linear', from cumulative counts.

    Mirrors numpy's arithmetic step by step (float64 virtual index, float32 order
    statistics, numpy's two-sided lerp), so the result is the same float64 value.
    """
    n = int(cumulative[-1])
    q = np.true_divide(percentiles, 100)
    virtual = (n - 1) * q
    previous = np.floor(virtual)
    following = previous + 1
    at_top = virtual >= n - 1  # numpy takes the maximum, both sides
    previous[at_top] = n - 1
    following[at_top] = n - 1
    gamma = virtual - np.where(at_top, -1.0, previous)  # numpy's gamma there (a == b anyway)
    a = _order_statistic(cumulative, previous.astype(np.intp)).astype(np.float32)
    b = _order_statistic(cumulative, following.astype(np.intp)).astype(np.float32)
    diff = b - a
    result = np.add(a, diff * gamma)
    np.subtract(b, diff * (1 - gamma), out=result, where=gamma >= 0.5, casting="unsafe",
                dtype=type(result.dtype))
    return result


def _median_above_half(grey: np.ndarray) -> bool:
    """float(np.median(grey)) > 0.5, counting instead of partitioning when that decides."""
    n = grey.size
    above = int(np.count_nonzero(grey > 0.5))
    half = n // 2
    if n % 2:  # the median is the middle value
        return above > half
    if above != half:  # both middle values on the same side of 0.5
        return above > half
    return float(np.median(grey)) > 0.5


def _grey_median_above_half(grey_levels: np.ndarray, cumulative: np.ndarray) -> bool:
    """The same decision for an image whose grey value is `grey_levels[level]`, from counts.

    `grey_levels` is non-decreasing (the lookup table is), so the middle pixels in grey
    order are the middle pixels in level order.
    """
    n = int(cumulative[-1])
    middle = np.array([(n - 1) // 2, n // 2])  # one pixel twice when n is odd
    return float(np.median(grey_levels[_order_statistic(cumulative, middle)])) > 0.5


# Whole-slide images are segmented block by block, and a slide must not be scaled differently
# in each block: its statistics are taken once, from a sample of the whole slide (or given by
# the user), and every block is then scaled with them. For any image,
# `normalize_with(image, *statistics(image))` is exactly `normalize(image)`.


def statistics(image: np.ndarray) -> tuple[float, float, bool]:
    """(low, high, invert): what `normalize` derives from an image — its 1st and 99.8th
    percentiles over every channel value and whether its median grey level is bright."""
    if image.dtype in (np.uint8, np.uint16) and image.size:
        return _integer_statistics(_channel_view(image))
    rgb = _finite_rgb(image)
    if not rgb.size:
        return 0.0, 0.0, False
    low, high = np.percentile(rgb, (LOW_PERCENTILE, HIGH_PERCENTILE))
    if high - low <= 0:
        return float(low), float(high), False
    out = np.clip((rgb - low) / (high - low), 0.0, 1.0, dtype=np.float32)
    return float(low), float(high), float(np.median(out.mean(axis=2))) > 0.5


def _integer_statistics(view: np.ndarray) -> tuple[float, float, bool]:
    """`statistics` of a uint8/uint16 view from its histogram, as `_normalize_integer` does:
    the same values as the float path, without a float copy of a large sample."""
    pixels, is_grey, counts, table, low, high = _levels(view)
    if table is None:
        return float(low), float(high), False
    if is_grey:
        return float(low), float(high), _grey_inverted(table, counts)
    return float(low), float(high), _median_above_half(_lookup(pixels, table).mean(axis=2))


def normalize_with(image: np.ndarray, low: float, high: float, invert: bool) -> np.ndarray:
    """Any decoded image → float32 HxWx3 in [0, 1], scaled between fixed `low` and `high`
    (in the image's own units) and inverted when `invert`: `normalize` with given statistics."""
    view = _channel_view(image)
    low, high = np.float64(low), np.float64(high)
    scale = high - low
    if scale <= 0:
        return np.zeros((*view.shape[:2], CHANNELS), np.float32)
    if view.dtype in (np.uint8, np.uint16) and view.size:
        levels = np.arange(1 << (8 * view.itemsize), dtype=np.float32)
        table = np.clip((levels - low) / scale, 0.0, 1.0, dtype=np.float32)
        if invert:
            table = 1.0 - table
        pixels = np.ascontiguousarray(view)
        out = _lookup(pixels, table)
        return cv2.merge([out] * CHANNELS) if view.shape[2] == 1 else out
    rgb = _finite_rgb(image)
    out = np.clip((rgb - low) / scale, 0.0, 1.0, dtype=np.float32)
    return 1.0 - out if invert else out
