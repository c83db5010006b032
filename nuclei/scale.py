"""Any nucleus size: segment an image at the scale the model was trained at.

The U-Net learnt nuclei of DSB2018's sizes (median equivalent diameter about 18 px). Shown
nuclei several times larger (40×/63× objectives), it cuts each one into fragments of the
size it knows, so the count explodes. Given a median nucleus diameter, the image is resized
so that its nuclei have the training diameter, segmented there, and the labels are mapped
back to full resolution (nearest neighbour, then `relabel`).

Without a diameter, it is estimated from the first pass (Cellpose's size model, in spirit):
the median equivalent diameter of the nuclei found. In range, that pass is the answer, so an
ordinary image costs one pass and a few milliseconds; out of range, the image is resized
once. Why the median of the instances, and not a distance transform of the foreground:
measured on the 60 validation images, the instances' median is within ±13 % of the truth
for 80 % of native images, where the inscribed-circle diameter of the foreground is biased
low by ~13 % and spreads twice as wide; when nuclei are far too large both fail alike.

Known failure: nuclei so large (≳ 2.5× the training diameter) that the model breaks them
into pieces of an ordinary size, so the first pass reads them as in range (a validation
image at 2×: 17 nuclei of 120 px read as 62 of 17 px). Tried and dropped: a second look at
1/4 or 1/8 of the size (there, clumps of ordinary nuclei read as giant ones: 3 of 6
native validation images were shrunk and lost most of their nuclei) and the pixel-weighted
diameter alone (merged clumps pull it up: 2 of the same 6 shrunk). Give `diameter` for such
images.
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
TOLERANCE = 0.15  # a given diameter this close (relative) to the training one: no resizing

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


def typical_diameter(labels: np.ndarray) -> float | None:
    """The area-weighted median equivalent diameter: the size of the nucleus a random nucleus
    pixel belongs to. Specks the model makes of an image it does not understand weigh little,
    where in a plain median a thousand of them outvote every real nucleus."""
    areas = np.bincount(labels.ravel())[1:]
    areas = np.sort(areas[areas > 0])
    if not areas.size:
        return None
    middle = np.searchsorted(np.cumsum(areas), areas.sum() / 2)
    return float(np.sqrt(4 * areas[middle] / np.pi))


def segment_auto(segment_at: SegmentAt, shape: tuple[int, ...], scale: Scale,
                 max_pixels: int | None = None) -> Sized:
    """Segment at full size; only when the nuclei found are out of the trained range, once
    more at the size that brings their median diameter to the training one.

    Enlarging needs a second witness: the pixel-weighted `typical_diameter` must be small
    too (under twice `scale.low`). An image the model does not understand can come back as a thousand specks, whose
    median says "tiny nuclei" while the real ones, or the fragments of them, hold the area;
    enlarging such an image multiplies the specks (a validation image at 2×: 1 075 for 18)."""
    labels = segment_at(1.0)
    diameter = median_diameter(labels)
    if diameter is None:
        return Sized(labels, scale.diameter, 1.0)
    too_large = diameter > scale.high
    too_small = diameter < scale.low and (typical_diameter(labels) or 0) < 2 * scale.low
    factor = float(np.clip(_bounded(scale.diameter / diameter, shape, max_pixels), MIN_FACTOR, MAX_FACTOR))
    if not (too_large or too_small) or factor == 1.0:
        return Sized(labels, diameter, 1.0)
    return Sized(to_shape(segment_at(factor), shape), diameter, factor)


def _bounded(factor: float, shape: tuple[int, ...], max_pixels: int | None) -> float:
    """`factor`, lowered so that an enlarged image stays within `max_pixels`."""
    if factor > 1 and max_pixels:
        factor = max(1.0, min(factor, (max_pixels / (shape[0] * shape[1])) ** 0.5))
    return factor
