"""Several outputs of one segmentation in one body: a zip whose entries are named by the
output naming rule (`nuclei.naming`), so one inference serves every format a user wants
(`POST /segment?format=labels,measurements`), and the client reads it back by format."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence

from nuclei.encode import OutputFormat, Segmentation, image_id, render
from nuclei.naming import SUFFIXES, output_name

MEDIA_TYPE = "application/zip"
STORED = {OutputFormat.png, OutputFormat.labels}  # PNGs are compressed already


class FormatError(ValueError):
    """A `format` list naming no format or an unknown one (HTTP 422)."""


def parse_formats(text: str) -> tuple[OutputFormat, ...]:
    """'labels, measurements' → the formats, in order, each once."""
    names = [name.strip() for name in text.split(",")]
    unknown = [name for name in names if name not in OutputFormat.__members__]
    if unknown or not any(names):
        choices = ", ".join(f"'{f.value}'" for f in OutputFormat)
        raise FormatError(f"format: {','.join(unknown) or text!r} is not one of {choices}; "
                          "several formats: comma-separated, answered as one zip")
    return tuple(dict.fromkeys(OutputFormat(name) for name in names))


def bundle(seg: Segmentation, formats: Sequence[OutputFormat]) -> bytes:
    """A zip with one entry per format, `<image id><suffix>`, rendered from `seg` alone."""
    buffer = io.BytesIO()
    stem = image_id(seg.filename)
    with zipfile.ZipFile(buffer, "w") as archive:
        for fmt in formats:
            method = zipfile.ZIP_STORED if fmt in STORED else zipfile.ZIP_DEFLATED
            archive.writestr(output_name(stem, fmt), render(seg, fmt), compress_type=method)
    return buffer.getvalue()


def unbundle(data: bytes, formats: Sequence[OutputFormat]) -> dict[OutputFormat, bytes]:
    """A `bundle` → each format's body; ValueError when one is missing."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = archive.namelist()
        out = {}
        for fmt in formats:
            found = [n for n in names if n.endswith(SUFFIXES[fmt])]
            if len(found) != 1:
                raise ValueError(f"the answer holds {len(found)} entries for format {fmt.value}")
            out[fmt] = archive.read(found[0])
    return out
