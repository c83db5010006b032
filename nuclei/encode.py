"""Instance labels → the body of each output format: mask PNG, label PNG, RLE JSON, Kaggle
CSV, QuPath GeoJSON and a measurements table."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np

from nuclei.imageio import encode_png
from nuclei.measure import COLUMNS, measure
from nuclei.preview import preview_png
from nuclei.quality import Quality
from nuclei.regions import Regions, regions
from nuclei.rle import encode, nuclei, submission_csv


class OutputFormat(StrEnum):
    png = "png"
    labels = "labels"
    rle = "rle"
    csv = "csv"
    geojson = "geojson"
    measurements = "measurements"
    preview = "preview"


MEDIA_TYPES = {
    OutputFormat.png: "image/png",
    OutputFormat.labels: "image/png",
    OutputFormat.rle: "application/json",
    OutputFormat.csv: "text/csv",
    OutputFormat.geojson: "application/geo+json",
    OutputFormat.measurements: "text/csv",
    OutputFormat.preview: "image/png",
}
MICRON_COLUMNS = {"area_um2": ("area", 2), "perimeter_um": ("perimeter", 1),
                  "equivalent_diameter_um": ("equivalent_diameter", 1)}
"""Added when the pixel size is known: column → (pixel column, power of the pixel size)."""


@dataclass(frozen=True)
class Segmentation:
    """One segmented image and what its outputs need beside the labels."""

    labels: np.ndarray
    image: np.ndarray  # the decoded plane, for intensities
    info: dict[str, str]  # the model: `ModelCard.info`
    filename: str | None = None
    pixel_size_um: float | None = None
    diameter: float | None = None  # median nucleus diameter (px) segmented at
    quality: Quality | None = None  # the trust signal, when asked for (nuclei.quality)

    @property
    def quality_fields(self) -> dict[str, float | str]:
        """`quality` and `flag` for a document or a table row; nothing when not asked for."""
        return self.quality.fields() if self.quality else {}

    @property
    def count(self) -> int:
        return int(self.labels.max(initial=0))

    @cached_property
    def regions(self) -> Regions:
        """Area, centroid and box of every nucleus: found once, read by every format."""
        return regions(self.labels)
MAX_LABELS_PNG = 65535


class TooManyNucleiError(ValueError):
    """More nuclei than a 16-bit label PNG can number (HTTP 422: ask for RLE instead)."""


def mask_png(labels: np.ndarray) -> bytes:
    """Union of all nuclei: single channel, 0/255, the input's size."""
    return encode_png(np.where(labels > 0, 255, 0).astype(np.uint8))


def labels_png(labels: np.ndarray) -> bytes:
    """16-bit instance labels, as napari, CellProfiler and QuPath import them."""
    if labels.max(initial=0) > MAX_LABELS_PNG:
        raise TooManyNucleiError(
            f"{int(labels.max())} nuclei do not fit a 16-bit label image; use format=rle")
    return encode_png(labels.astype(np.uint16))


def rle_document(seg: Segmentation) -> dict[str, Any]:
    labels, diameter = seg.labels, seg.diameter
    found = nuclei(labels, seg.regions)
    return {
        "width": int(labels.shape[1]),
        "height": int(labels.shape[0]),
        "count": len(found),
        "mask_rle": encode(labels > 0),
        "instances": [
            {"id": n.id, "rle": n.rle, "area": n.area, "bbox": list(n.bbox),
             "centroid": list(n.centroid)}
            for n in found
        ],
        "diameter": None if diameter is None else round(diameter, 1),
        **seg.quality_fields,
        "model": seg.info,
    }


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(text: str) -> str:
    """`text` as a table cell: a leading = + - @ (or tab, CR) is neutralised with a quote so
    a spreadsheet never runs it as a formula."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def image_id(filename: str | None) -> str:
    """The upload's name without folders or extension, kept as it is, except that it is made
    `spreadsheet_safe`."""
    name = PureWindowsPath(PurePosixPath(filename or "").name).name
    stem = name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name
    return spreadsheet_safe(stem or "image")


def measurements_rows(seg: Segmentation) -> list[dict[str, Any]]:
    rows = measure(seg.labels, seg.image, seg.regions)
    if seg.pixel_size_um:
        for row in rows:
            for column, (source, power) in MICRON_COLUMNS.items():
                row[column] = round(row[source] * seg.pixel_size_um**power, 4)
    return rows


def measurements_columns(seg: Segmentation) -> list[str]:
    """The measurements' columns: the µm ones when the pixel size is known; the image's
    `quality` and `flag` (the same on every row) when they were asked for."""
    return (list(COLUMNS) + (list(MICRON_COLUMNS) if seg.pixel_size_um else [])
            + list(seg.quality_fields))


def measurements_csv(seg: Segmentation) -> str:
    """One row per nucleus; `id` is its value in format=labels."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=measurements_columns(seg), lineterminator="\n")
    writer.writeheader()
    writer.writerows({**row, **seg.quality_fields} for row in measurements_rows(seg))
    return buf.getvalue()


def render(seg: Segmentation, output_format: OutputFormat) -> bytes:
    """The body of one output format."""
    labels = seg.labels
    if output_format is OutputFormat.png:
        return mask_png(labels)
    if output_format is OutputFormat.labels:
        return labels_png(labels)
    if output_format is OutputFormat.rle:
        return json.dumps(rle_document(seg), separators=(",", ":")).encode()
    if output_format is OutputFormat.measurements:
        return measurements_csv(seg).encode()
    if output_format is OutputFormat.preview:
        return preview_png(seg.image)
    if output_format is OutputFormat.geojson:
        from nuclei import geojson

        collection = geojson.feature_collection(labels, measurements_rows(seg), found=seg.regions)
        if seg.quality:  # the image's own properties (a foreign member QuPath ignores)
            collection["properties"] = seg.quality_fields
        return geojson.dumps(collection).encode()
    return submission_csv(image_id(seg.filename), nuclei(labels, seg.regions)).encode()
