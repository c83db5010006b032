"""Which kind of micrograph an image is, so that scores can be reported per kind.

DSB2018 mixes kinds that the model finds very differently hard; one mean over all images
hides the weak ones (stained tissue, bright-field) behind the ~80 % grey fluorescence.
The ground-truth labels are available wherever we score, so they decide what the image
alone decides badly: whether the nuclei are darker than the background, and how big they are.
The service routes a request by the same function with no labels (`modality(image)`): the
image alone then decides, and colour, the split routing needs, is read from the image either way.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np

from nuclei import scale
from nuclei.normalize import normalize

COLOUR_TISSUE = "colour tissue"
BRIGHT_FIELD = "bright-field"
FLUORESCENCE_SMALL = "grey fluorescence, small nuclei"
FLUORESCENCE_LARGE = "grey fluorescence, large nuclei"
MODALITIES = (COLOUR_TISSUE, BRIGHT_FIELD, FLUORESCENCE_SMALL, FLUORESCENCE_LARGE)

# Mean per-pixel channel spread (max − min over R, G, B, grey levels) above which an image is
# colour. In stage1_train grey images have exactly 0 and stained ones 11 or more: any cut
# in between gives the same 97 colour images.
COLOUR_SPREAD = 2.0
# Median equivalent diameter (px) of the grey fluorescence images of the 1.3.0 training split
# (442 images, each summarised by the median over its nuclei): 16.56 px. Nuclei of at least
# this median are "large". Split both halves of the fluorescence set to see whether the
# model's errors come from small, crowded nuclei or from large, textured ones.
LARGE_NUCLEUS_DIAMETER = 16.6


def median_diameter(labels: np.ndarray) -> float:
    """Median over the nuclei of sqrt(4·area/π), px; 0 for an image without nuclei."""
    return scale.median_diameter(labels) or 0.0


def colour_spread(image: np.ndarray) -> float:
    """Mean per-pixel spread (max − min) over R, G, B, in grey levels; 0 for grey and grey +
    alpha. Unsigned integers stay integers (max − min cannot overflow): 40× quicker than in
    float64, and the service asks it of every image it routes."""
    if image.ndim == 2 or image.shape[-1] < 3:
        return 0.0
    r, g, b = (image[..., k] for k in range(3))
    if image.dtype.kind != "u":
        r, g, b = (c.astype(np.float64) for c in (r, g, b))
    return float((np.maximum(np.maximum(r, g), b) - np.minimum(np.minimum(r, g), b)).mean())


def _rgb(image: np.ndarray) -> np.ndarray:
    """Float RGB of an image as decoded: grey, grey + alpha, RGB or RGBA."""
    if image.ndim == 2:
        image = image[..., None]
    channels = image[..., :3] if image.shape[-1] >= 3 else image[..., :1]
    return channels.astype(np.float64)


def modality(image: np.ndarray, labels: np.ndarray | None = None) -> str:
    """One of MODALITIES for a raw decoded image and its instance labels (0 = background).

    colour → colour tissue; grey with nuclei darker than the background → bright-field;
    otherwise grey fluorescence, split by `median_diameter` at LARGE_NUCLEUS_DIAMETER.
    Without nuclei or background to compare, a median grey above half of the range (a
    bright background) counts as bright-field, like `training.augment.is_rare_style`.
    Without labels (a request to route) the same bright-background rule decides, and the
    size comes from the image alone (`nuclei.scale.coarse_diameter`).
    """
    if colour_spread(image) > COLOUR_SPREAD:
        return COLOUR_TISSUE
    grey = _rgb(image).mean(axis=-1)
    nucleus = labels > 0 if labels is not None else np.zeros(grey.shape, bool)
    if nucleus.any() and not nucleus.all():
        dark_nuclei = float(grey[nucleus].mean()) < float(grey[~nucleus].mean())
    else:
        full_scale = float(np.iinfo(image.dtype).max) if image.dtype.kind in "ui" else 1.0
        dark_nuclei = float(np.median(grey)) > full_scale / 2
    if dark_nuclei:
        return BRIGHT_FIELD
    size = median_diameter(labels) if labels is not None else scale.coarse_diameter(normalize(image))
    if size >= LARGE_NUCLEUS_DIAMETER:
        return FLUORESCENCE_LARGE
    return FLUORESCENCE_SMALL


def claimed_modality(image: np.ndarray, claimed: Collection[str]) -> str | None:
    """`modality(image)` when it is one of `claimed`, else None, computing only what tells
    them apart from the rest: when colour tissue alone is claimed, whether the image is colour
    (under 1 ms at 520×696, against ~55 ms for the whole rule on a grey image, whose size
    estimate normalises it). The service routes requests by it (nuclei.registry)."""
    if set(claimed) <= {COLOUR_TISSUE}:
        colour = bool(claimed) and colour_spread(image) > COLOUR_SPREAD
        return COLOUR_TISSUE if colour else None
    kind = modality(image)
    return kind if kind in claimed else None
