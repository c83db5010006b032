"""Any nucleus size: segment an image at the scale the model was trained at.

The U-Net learnt nuclei of DSB2018's sizes (median equivalent diameter about 18 px). Shown
nuclei several times larger (40×/63× objectives), it cuts each one into fragments of the
size it knows, so the count explodes. Given a median nucleus diameter, the image is resized
so that its nuclei have the training diameter, segmented there, and the labels are mapped
back to full resolution (nearest neighbour, then `relabel`).

Without a diameter, it is estimated from the first pass (Cellpose's size model, in spirit):
the median equivalent diameter of the nuclei found. In range, that pass is the answer, so an
ordinary image costs one pass and a few milliseconds. Why the median of the instances, and
not a distance transform of the foreground: measured on the 60 validation images, the
instances' median is within ±13 % of the truth for 80 % of native images, where the
inscribed-circle diameter of the foreground is biased low by ~13 % and spreads twice as wide;
and when nuclei are far too large both fail alike, because the foreground itself breaks up.
Out of range, the estimate is refined by segmenting again at the scale it suggests (the model
measures best near its own scale), up to `MAX_PASSES` passes.

Known failure: nuclei so large (≳ 4× the training diameter) that the model breaks even the
foreground into separate pieces of an ordinary size (a validation image at 2×: 17 nuclei of
120 px read as 62 of 17 px, no piece touching another). A coarse look at 1/8 of the size was
tried and dropped: there, clumps of ordinary nuclei read as giant nuclei (3 of 60 native
validation images collapsed to 1-3 "nuclei"); give `diameter` for such images.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from nuclei.card import Scale
from nuclei.postprocess import relabel

MIN_FACTOR, MAX_FACTOR = 1 / 8, 4.0
"""How far an image may be resized: beyond, nuclei are not resolved or the image explodes."""
MAX_PASSES = 3
TOLERANCE = 0.15  # a refined estimate this close (relative) to the last one ends the search

SegmentAt = Callable[[float], np.ndarray]
"""factor → instance labels of the image resized by `factor` (at that size)."""


class DiameterError(ValueError):
    """A diameter outside what rescaling can bring to the model's scale (HTTP 422)."""


@dataclass(frozen=True)
class Sized:
    labels: np.ndarray  # int32, full resolution
    diameter: float  # the one given, or the estimate (pixels of the input image)
    factor: float  # how the image was resized for the model (1.0: not at all)


def allowed(scale: Scale) -> tuple[float, float]:
    """Diameters an explicit request may give: those a factor in [MIN_FACTOR, MAX_FACTOR] maps
    to the training diameter."""
    return scale.diameter / MAX_FACTOR, scale.diameter / MIN_FACTOR


def factor_for(diameter: float, scale: Scale) -> float:
    """1.0 when `diameter` is in the trained range, else the factor to the training diameter."""
    if scale.low <= diameter <= scale.high:
        return 1.0
    return float(np.clip(scale.diameter / diameter, MIN_FACTOR, MAX_FACTOR))


def check(diameter: float, scale: Scale, shape: tuple[int, ...], max_pixels: int | None) -> float:
    """The factor that brings an explicit `diameter` to the training diameter (unlike an
    estimate, a diameter the user gives is trusted even inside the trained range), or
    DiameterError naming the allowed range."""
    low, high = allowed(scale)
    if not low <= diameter <= high:
        raise DiameterError(f"diameter {diameter:g} px is outside the range this model can rescale "
                            f"to its training diameter of {scale.diameter:g} px: {low:.1f} to {high:.1f}")
    factor = scale.diameter / diameter
    if abs(factor - 1) <= TOLERANCE:  # resizing by a few % changes little and costs a pass
        factor = 1.0
    pixels = round(shape[0] * factor) * round(shape[1] * factor)
    if max_pixels and factor > 1 and pixels > max_pixels:
        raise DiameterError(f"diameter {diameter:g} px needs the image enlarged {factor:.2f}× to "
                            f"{pixels} pixels, over the limit of {max_pixels}; give a larger diameter")
    return factor


def resize(image: np.ndarray, factor: float) -> np.ndarray:
    """`image` (HxW or HxWxC, a dtype OpenCV resizes) scaled by `factor`: area averaging down,
    bilinear up."""
    height, width = image.shape[:2]
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)


def to_shape(labels: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Labels of a resized image → labels at `shape` (nearest neighbour, renumbered 1..N)."""
    if labels.shape[:2] == tuple(shape[:2]):
        return labels
    back = cv2.resize(labels.astype(np.int32), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    return relabel(back)


def median_diameter(labels: np.ndarray) -> float | None:
    """Median equivalent diameter (that of the disc of equal area) of the labelled nuclei."""
    areas = np.bincount(labels.ravel())[1:]
    areas = areas[areas > 0]
    return float(np.median(np.sqrt(4 * areas / np.pi))) if areas.size else None


def segment_auto(segment_at: SegmentAt, shape: tuple[int, ...], scale: Scale,
                 max_pixels: int | None = None) -> Sized:
    """Segment at full size; while the nuclei the model saw are out of the trained range,
    again at the scale their size suggests (at most MAX_PASSES passes in all)."""
    labels = segment_at(1.0)
    diameter = median_diameter(labels)
    factor = 1.0
    for _ in range(MAX_PASSES - 1):
        if diameter is None or scale.low <= diameter * factor <= scale.high:
            break
        wanted = _bounded(factor_for(diameter, scale), shape, max_pixels)
        # A refinement never turns back (a downscaled pass reading specks as nuclei must not
        # send the image up 4×), and stops once it barely moves.
        if abs(wanted - factor) <= TOLERANCE * factor or (factor != 1 and (wanted > 1) != (factor > 1)):
            break
        factor, labels = wanted, segment_at(wanted)
        seen = median_diameter(labels)
        if seen is None:
            break
        diameter = seen / factor
    return Sized(to_shape(labels, shape), diameter or scale.diameter, factor)


def _bounded(factor: float, shape: tuple[int, ...], max_pixels: int | None) -> float:
    """`factor`, lowered so that an enlarged image stays within `max_pixels`."""
    if factor > 1 and max_pixels:
        factor = max(1.0, min(factor, (max_pixels / (shape[0] * shape[1])) ** 0.5))
    return factor
