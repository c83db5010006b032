"""Any nucleus size: segment an image at the scale the model was trained at.

The U-Net learnt nuclei of DSB2018's sizes (median equivalent diameter about 18 px). Shown
nuclei several times larger (40×/63× objectives), it cuts each one into fragments of the
size it knows, so the count explodes. Given a median nucleus diameter, the image is resized
so that its nuclei have the training diameter, the network's maps are computed there and
resized back to the image's size (as Cellpose resizes its flows back), and the nuclei are
found at full size with the post-processing's areas and distances scaled alike. Mapping
labels back by nearest neighbour instead left staircase outlines: −0.057 DSB2018 on
held-out images, where the maps lose 0.011 (docs/model.md).

Without a diameter it is estimated in two steps, so that big nuclei are seen before the
model fragments them:
1. a coarse scale-space estimate (`coarse_diameter`: the scale at which the Laplacian of
   Gaussian answers most strongly), which grows with the image whatever the model makes of it;
2. the model's own answer: the median equivalent diameter of the nuclei it finds. When the
   coarse estimate says more than `LARGE` × the training diameter, the first pass runs at the
   size that estimate suggests, and is kept only if the model confirms nuclei beyond its
   trained range and within a factor `LARGE` of the coarse estimate (clumps of ordinary
   nuclei also read as large blobs, and the model handles nuclei up to its range's top as
   they are: a validation image of 55 px nuclei scored 0.916 at full size, 0.770 shrunk).
   Otherwise the first pass runs at full size; out of the trained range the image is resized
   once, and so are nuclei above `BLURRED` training diameters (32 px) whose rims are blurred
   (`rim_width` over `RIM_BLURRED`, 7 px): what a magnified or enlarged image gives, and
   shrunk such nuclei score better, where sharp native nuclei of 40-55 px (rims of 5-7 px)
   keep their one pass (docs/model.md). A check pass refused only for its distance from the
   coarse estimate (a colony read as one blob) is taken after all when the full-size nuclei
   are narrower than their own rims: fragments of nuclei, not nuclei.
An ordinary image thus costs the coarse estimate (a few ms) and one pass.

Where large nuclei are resized to (`target`): not the training diameter but the top of the
range the model learnt best (DOWN_TO = 1.25 training diameters, 22.9 px for 1.3.0), where
outlines keep more pixels: a given `diameter` of each validation image's true median scores
0.5664 so, 0.5609 shrunk to 18.3 px. Shrinking every nucleus from 32 px on, whatever its
rims, cost native images of sharp 40–55 px nuclei 0.04 (docs/model.md): the rims decide.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class Scale(BaseModel):
    """The nucleus size the model was trained at, in pixels of median equivalent diameter
    (`training diameters` measures it on the training split). Images whose nuclei fall
    outside [low, high] are rescaled to `diameter` before segmenting. The card's `scale`
    section (nuclei.card); extra keys are kept, as in every card section."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, protected_namespaces=())

    diameter: float = Field(gt=0, description="median over training images of their median diameter")
    low: float = Field(gt=0, description="smaller nuclei than this are upscaled")
    high: float = Field(gt=0, description="larger nuclei than this are downscaled")
    down_to: float | None = Field(None, gt=0, description="px large nuclei are shrunk to; "
                                  "none: DOWN_TO training diameters")
    description: str = ""


# For a card written before `scale` existed: what `training diameters` measured on DSB2018.
DEFAULT_SCALE = Scale(diameter=18.3, low=8.5, high=59.2)

MIN_FACTOR, MAX_FACTOR = 1 / 8, 4.0
"""How far an image may be resized: beyond, nuclei are not resolved or the image explodes."""
TOLERANCE = 0.15  # a factor this close to 1, or to the factor of a pass already run: no new pass
LARGE = 2.0  # coarse estimates above this many training diameters are checked at the size they suggest
DOWN_TO = 1.25  # large nuclei are shrunk to this many training diameters (`target`)
BLURRED = 1.75  # the model's nuclei above this many training diameters, with blurred rims: shrunk
RIM_BLURRED = 7.0  # px: rims wider than this are blurred (`rim_width`), chosen on training-split images

SegmentAt = Callable[[float], np.ndarray]
"""factor → instance labels of the image segmented resized by `factor`, at the image's size."""


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
    estimate, a diameter the user gives is trusted even inside the trained range: magnified
    images, blurred and large, score better resized, 0.445 against 0.290 for a sample at ×2),
    or DiameterError naming the allowed range."""
    low, high = allowed(scale)
    if not low <= diameter <= high:
        raise DiameterError(f"diameter {diameter:g} px is outside the range this model can rescale "
                            f"to its training diameter of {scale.diameter:g} px: {low:.1f} to {high:.1f}")
    factor = target(diameter, scale) / diameter
    if abs(factor - 1) <= TOLERANCE:  # resizing by a few % changes little and costs a pass
        factor = 1.0
    pixels = round(shape[0] * factor) * round(shape[1] * factor)
    if max_pixels and factor > 1 and pixels > max_pixels:
        raise DiameterError(f"diameter {diameter:g} px needs the image enlarged {factor:.2f}× to "
                            f"{pixels} pixels, over the limit of {max_pixels}; give a larger diameter")
    return factor


def target(diameter: float, scale: Scale) -> float:
    """The diameter nuclei of `diameter` px are resized to: large ones to the top of the range
    the model learnt best (the card's `down_to`, else DOWN_TO training diameters, within the
    card's range), where their outlines keep more pixels than at the training diameter; small
    ones to the training diameter."""
    top = min(scale.high, scale.down_to or DOWN_TO * scale.diameter)
    return top if diameter > top else scale.diameter


def resize(image: np.ndarray, factor: float) -> np.ndarray:
    """`image` (HxW or HxWxC, a dtype OpenCV resizes) scaled by `factor`: area averaging down,
    bilinear up."""
    height, width = image.shape[:2]
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)


def to_size(maps: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Probability maps (HxWxK) of a resized image → maps at `shape`: bilinear up, area down."""
    if maps.shape[:2] == tuple(shape[:2]):
        return maps
    shrink = shape[0] * shape[1] < maps.shape[0] * maps.shape[1]
    back = cv2.resize(maps, (shape[1], shape[0]), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return back.reshape(*shape[:2], *maps.shape[2:])


def coarse_diameter(normalised: np.ndarray, work: int = 384) -> float:
    """A diameter estimate from the image alone: the nucleus diameter 2√2·σ of the scale σ at
    which the scale-normalised Laplacian of Gaussian of the (bright-nuclei) image answers most
    strongly (the mean of its positive part to the 4th power, so the centres of nuclei decide
    rather than texture). Coarse (within 25 % for 60 % of validation images) but unbiased and
    blind to what the model makes of the image. The image is first brought to `work` px at
    most, and each octave of σ is computed on a halved image, so it costs a few ms."""
    shrink = min(1.0, work / max(normalised.shape[:2]))
    small = resize(normalised, shrink) if shrink < 1 else normalised  # first: the rest is then cheap
    grey = (small.mean(axis=-1) if small.ndim == 3 else small).astype(np.float32, copy=False)
    best, best_sigma, level, down = -1.0, 1.0, grey, 1.0
    while min(level.shape) >= 16:
        for k in range(4):
            sigma = 2 ** (k / 4)  # in pixels of this octave's image
            response = -cv2.Laplacian(cv2.GaussianBlur(level, (0, 0), sigma), cv2.CV_32F) * sigma**2
            energy = float(np.mean(np.maximum(response, 0) ** 4))
            if energy > best:
                best, best_sigma = energy, sigma * down
        level, down = cv2.pyrDown(level), down * 2
    return float(2 * np.sqrt(2) * best_sigma / shrink)


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


def rim_width(normalised: np.ndarray, labels: np.ndarray) -> float:
    """How many pixels the found nuclei's rims take to rise: the contrast between their cores
    and the background over the median gradient on their outlines (after a 1 px blur against
    noise). Sharp nuclei rise within a few pixels (5-7 px for the sharpest 40-55 px validation
    nuclei); a magnified, out-of-focus or enlarged image's rims are wider (7-45 px at ×4), and
    so are the rims of fragments, which lie inside nuclei where the image is flat. 0 where
    there is nothing to measure (no nucleus, no background)."""
    grey = (normalised.mean(axis=-1) if normalised.ndim == 3 else normalised).astype(np.float32, copy=False)
    smooth = cv2.GaussianBlur(grey, (0, 0), 1.0)
    gy, gx = np.gradient(smooth)
    found = (labels > 0).astype(np.uint8)
    kernel = np.ones((3, 3), np.uint8)
    outline = (found - cv2.erode(found, kernel)).astype(bool)
    core = cv2.erode(found, kernel, iterations=2).astype(bool)
    background = ~cv2.dilate(found, kernel, iterations=3).astype(bool)
    if not (outline.any() and core.any() and background.any()):
        return 0.0
    contrast = float(np.median(smooth[core]) - np.median(smooth[background]))
    return contrast / max(float(np.median(np.hypot(gx, gy)[outline])), 1e-6)


def segment_auto(segment_at: SegmentAt, normalised: np.ndarray, coarse: float, scale: Scale,
                 max_pixels: int | None = None) -> Sized:
    """Segment at the size the nuclei call for (see the module's docstring): at most two
    passes, three where a refused check pass turns out right. The diameter reported is the
    median of the nuclei returned, the pass at the model's scale being the better witness.

    Enlarging needs a second witness: the pixel-weighted `typical_diameter` must be small
    too (under twice `scale.low`). An image the model does not understand can come back as a thousand specks, whose
    median says "tiny nuclei" while the real ones, or the fragments of them, hold the area;
    enlarging such an image multiplies the specks (a validation image at 2×: 1 075 for 18)."""
    passes: dict[float, np.ndarray] = {}

    def at(factor: float) -> np.ndarray:
        if factor not in passes:
            passes[factor] = segment_at(factor)
        return passes[factor]

    refused = None  # the factor a check pass called for, when only its agreement with `coarse` failed
    if coarse > LARGE * scale.diameter:
        first = float(np.clip(scale.diameter / coarse, MIN_FACTOR, 1.0))
        diameter = median_diameter(at(first))
        if diameter is not None and diameter > scale.high:
            factor = float(np.clip(target(diameter, scale) / diameter, MIN_FACTOR, 1.0))
            factor = first if abs(factor / first - 1) <= TOLERANCE else factor
            if 1 / LARGE <= diameter / coarse <= LARGE:
                return _sized(at(factor), diameter, factor)
            refused = factor
    labels = at(1.0)
    diameter = median_diameter(labels)
    if diameter is None:
        return Sized(labels, scale.diameter, 1.0)
    in_blur_band = BLURRED * scale.diameter < diameter <= scale.high
    rims = rim_width(normalised, labels) if refused is not None or in_blur_band else 0.0  # measured once
    if refused is not None and rims > diameter:
        return _sized(at(refused), diameter, refused)  # full-size nuclei narrower than their own rims: fragments
    too_large = diameter > scale.high or (in_blur_band and rims > RIM_BLURRED)
    too_small = diameter < scale.low and (typical_diameter(labels) or 0) < 2 * scale.low
    factor = float(np.clip(_bounded(target(diameter, scale) / diameter, normalised.shape, max_pixels),
                           MIN_FACTOR, MAX_FACTOR))
    if not (too_large or too_small) or factor == 1.0:
        return Sized(labels, diameter, 1.0)
    return _sized(at(factor), diameter, factor)


def _sized(labels: np.ndarray, estimate: float, factor: float) -> Sized:
    """The answer of a pass at the model's scale, with the median of its nuclei as the diameter
    (the estimate that chose the pass if it found none)."""
    return Sized(labels, median_diameter(labels) or estimate, factor)


def _bounded(factor: float, shape: tuple[int, ...], max_pixels: int | None) -> float:
    """`factor`, lowered so that an enlarged image stays within `max_pixels`."""
    if factor > 1 and max_pixels:
        factor = max(1.0, min(factor, (max_pixels / (shape[0] * shape[1])) ** 0.5))
    return factor
