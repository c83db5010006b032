"""The plane that was segmented, as an 8-bit PNG a browser shows: a 16-bit or float TIFF
drawn as it is stored looks black (or cannot be drawn at all), so a person could not check
the outlines on the most common microscopy format, nor see which channel was read.

Each channel is stretched between its 0.5th and 99.5th percentiles; grey stays grey, colour
stays colour (alpha dropped). Nothing is inverted: it shows the image, not the model's input.
"""

from __future__ import annotations

import numpy as np

from nuclei.imageio import encode_png

LOW, HIGH = 0.5, 99.5


def preview(image: np.ndarray) -> np.ndarray:
    """HxW or HxWxC (any dtype) → uint8 HxW (grey) or HxWx3 (RGB)."""
    view = image[..., :1 if image.shape[2] < 3 else 3] if image.ndim == 3 else image[..., None]
    if view.dtype == np.uint8:
        out = view
    else:
        values = view.astype(np.float32)
        values[~np.isfinite(values)] = 0
        low, high = np.percentile(values.reshape(-1, values.shape[2]), (LOW, HIGH), axis=0)
        span = np.where(high > low, high - low, 1.0)
        out = np.clip((values - low) / span * 255 + 0.5, 0, 255).astype(np.uint8)
    return out[..., 0] if out.shape[2] == 1 else out


def preview_png(image: np.ndarray) -> bytes:
    """`preview` as PNG, in OpenCV's channel order (BGR) so the file reads as RGB."""
    out = preview(image)
    return encode_png(out[..., ::-1].copy() if out.ndim == 3 else out)
