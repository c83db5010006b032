"""Bytes in, encoded nuclei out: decode → segment → encode, as one plain function that the
service runs on an inference thread and any wing holding file bytes can call."""

from __future__ import annotations

from dataclasses import dataclass

from nuclei.encode import MEDIA_TYPES, OutputFormat, render
from nuclei.imageio import decode_image
from nuclei.segmenter import Segmenter


@dataclass(frozen=True)
class Result:
    body: bytes
    media_type: str
    height: int
    width: int
    count: int


def segment_bytes(
    segmenter: Segmenter,
    data: bytes,
    *,
    output_format: OutputFormat,
    filename: str | None,
    max_pixels: int,
    threshold: float | None = None,
) -> Result:
    image = decode_image(data, max_pixels=max_pixels)
    labels = segmenter.segment(image, threshold)
    body = render(labels, output_format, filename, segmenter.info)
    return Result(body, MEDIA_TYPES[output_format], labels.shape[0], labels.shape[1], int(labels.max(initial=0)))
