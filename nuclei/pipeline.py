"""Bytes in, encoded nuclei out: decode → segment → encode, as one plain function that the
service runs on an inference thread and any wing holding file bytes can call."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from nuclei import bundle
from nuclei.encode import MEDIA_TYPES, OutputFormat, Segmentation, render
from nuclei.imageio import Plane, decode_plane
from nuclei.quality import Quality, assess
from nuclei.registry import Choice
from nuclei.segmenter import Segmenter

Choose = Callable[[np.ndarray], Choice]
"""Picks the model for a decoded image, with the reason (nuclei.registry: `model=` or modality)."""


@dataclass(frozen=True)
class Result:
    body: bytes
    media_type: str
    height: int
    width: int
    count: int
    plane: Plane
    diameter: float  # median nucleus diameter (px) used: the one asked for, or the estimate
    quality: Quality | None = None  # when asked for: the model's agreement with itself
    model: dict[str, str] = field(default_factory=dict)  # the card's name, version, sha256 of the model that ran
    route: str = ""  # why that model (a Choose's reason); empty when the caller gave the model


def segment_bytes(
    segmenter: Segmenter | Choose,
    data: bytes,
    *,
    output_format: OutputFormat | Sequence[OutputFormat],
    filename: str | None,
    max_pixels: int,
    threshold: float | None = None,
    page: int = 0,
    channel: int | None = None,
    pixel_size_um: float | None = None,
    diameter: float | None = None,
    quality: bool = False,
) -> Result:
    """`pixel_size_um` overrides the TIFF's resolution tags for the µm measurements;
    `diameter` (px) the automatic nucleus size (nuclei.scale); `quality` adds the trust signal
    (nuclei.quality: one more pass). Several formats: one segmentation, every body in one zip
    (`nuclei.bundle`). `segmenter` may be a Choose: the model is then picked for the image
    decoded, the plane that is segmented."""
    image, plane = decode_plane(data, max_pixels=max_pixels, page=page, channel=channel)
    segmenter, route = segmenter(image) if callable(segmenter) else (segmenter, "")
    sized = segmenter.segment_sized(image, threshold, diameter, max_pixels=max_pixels)
    labels = sized.labels
    trust = assess(segmenter, image, sized, threshold) if quality else None
    seg = Segmentation(labels, image, segmenter.info, filename, pixel_size_um or plane.pixel_size_um,
                       sized.diameter, trust)
    formats = (output_format,) if isinstance(output_format, OutputFormat) else tuple(output_format)
    if len(formats) == 1:
        body, media_type = render(seg, formats[0]), MEDIA_TYPES[formats[0]]
    else:
        body, media_type = bundle.bundle(seg, formats), bundle.MEDIA_TYPE
    return Result(body, media_type, labels.shape[0], labels.shape[1], seg.count, plane,
                  sized.diameter, trust, segmenter.info, route)
