"""Instance labels → the four response bodies: mask PNG, label PNG, RLE JSON, Kaggle CSV."""

from __future__ import annotations

import json
import re
from enum import StrEnum
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any
from urllib.parse import quote

import numpy as np

from app.codec import encode_png
from app.rle import encode, nuclei, submission_csv


class OutputFormat(StrEnum):
    png = "png"
    labels = "labels"
    rle = "rle"
    csv = "csv"


MEDIA_TYPES = {
    OutputFormat.png: "image/png",
    OutputFormat.labels: "image/png",
    OutputFormat.rle: "application/json",
    OutputFormat.csv: "text/csv",
}
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


def rle_document(labels: np.ndarray, model: dict[str, str]) -> dict[str, Any]:
    found = nuclei(labels)
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
        "model": model,
    }


def image_id(filename: str | None) -> str:
    """The upload's name without folders or extension, reduced to one clean CSV field."""
    name = PureWindowsPath(PurePosixPath(filename or "").name).name
    stem = name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name
    clean = re.sub(r"[^\w.-]+", "_", stem).strip("._")
    return clean[:128] or "image"


def attachment(filename: str | None, extension: str) -> str:
    """Content-Disposition naming the download after the upload. Header values are Latin-1
    on the wire, so a non-ASCII name goes in RFC 6266 `filename*` beside an ASCII fallback."""
    name = f"{image_id(filename)}.{extension}"
    fallback = name.encode("ascii", "replace").decode().replace("?", "_")
    if fallback == name:
        return f'attachment; filename="{name}"'
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name)}"


def csv_body(labels: np.ndarray, filename: str | None) -> str:
    return submission_csv(image_id(filename), nuclei(labels))


def render(labels: np.ndarray, output: OutputFormat, filename: str | None,
           model: dict[str, str]) -> bytes:
    """The response body of one format."""
    if output is OutputFormat.png:
        return mask_png(labels)
    if output is OutputFormat.labels:
        return labels_png(labels)
    if output is OutputFormat.rle:
        return json.dumps(rle_document(labels, model), separators=(",", ":")).encode()
    return csv_body(labels, filename).encode()
