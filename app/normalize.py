"""The one input normalisation, used identically by training and by the service.

DSB2018 mixes fluorescence (bright nuclei on black), brightfield and H&E (dark nuclei on a
bright background), in 8 or 16 bits, grey or colour. Scaling each image by its own
percentiles removes the bit depth and exposure; flipping images whose background is bright
makes nuclei bright everywhere, so a small network need not learn both polarities.
"""

from __future__ import annotations

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


def to_rgb(image: np.ndarray) -> np.ndarray:
    """HxW or HxWxC (C in 1..4) → HxWx3, keeping the dtype."""
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3:
        raise ChannelError(f"expected a 2-D image, got an array of shape {image.shape}")
    channels = image.shape[2]
    if channels in (1, 2):  # grey, grey + alpha
        return np.repeat(image[..., :1], 3, axis=2)
    if channels in (3, 4):  # RGB, RGBA
        return image[..., :3]
    raise ChannelError(f"{channels}-channel images are not supported (grey, RGB or RGBA only)")


def normalize(image: np.ndarray) -> np.ndarray:
    """Any decoded image → float32 HxWx3 in [0, 1] with bright nuclei."""
    rgb = to_rgb(image).astype(np.float32, copy=False)
    finite = np.isfinite(rgb)
    if not finite.all():
        rgb = np.where(finite, rgb, 0.0).astype(np.float32)
    low, high = np.percentile(rgb, (LOW_PERCENTILE, HIGH_PERCENTILE))
    scale = high - low
    if scale <= 0:
        return np.zeros(rgb.shape, np.float32)
    out = np.clip((rgb - low) / scale, 0.0, 1.0, dtype=np.float32)
    if float(np.median(out.mean(axis=2))) > 0.5:
        out = 1.0 - out
    return out
