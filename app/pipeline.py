"""One request's work, end to end, as a plain function run on an inference thread:
bytes → decoded image → instance labels → response body."""

from __future__ import annotations

from dataclasses import dataclass

from app.codec import decode_image
from app.formats import MEDIA_TYPES, OutputFormat, render
from app.segmenter import Segmenter


@dataclass(frozen=True)
class Result:
    body: bytes
    media_type: str
    height: int
    width: int
    count: int


def segment_upload(
    segmenter: Segmenter,
    data: bytes,
    *,
    output: OutputFormat,
    filename: str | None,
    max_pixels: int,
    threshold: float | None = None,
) -> Result:
    image = decode_image(data, max_pixels=max_pixels)
    labels = segmenter.segment(image, threshold)
    body = render(labels, output, filename, segmenter.info)
    return Result(body, MEDIA_TYPES[output], labels.shape[0], labels.shape[1], int(labels.max(initial=0)))
