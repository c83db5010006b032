"""Instance labels → the bodies of each output format: mask PNG, label PNG, RLE JSON, Kaggle CSV."""

from __future__ import annotations

import json
import re
from enum import StrEnum
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np

from nuclei.imageio import encode_png
from nuclei.rle import encode, nuclei, submission_csv


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


def rle_document(labels: np.ndarray, info: dict[str, str]) -> dict[str, Any]:
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
        "model": info,
    }


def image_id(filename: str | None) -> str:
    """The upload's name without folders or extension, reduced to one clean CSV field."""
    name = PureWindowsPath(PurePosixPath(filename or "").name).name
    stem = name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name
    clean = re.sub(r"[^\w.-]+", "_", stem).strip("._")
    return clean[:128] or "image"


def csv_body(labels: np.ndarray, filename: str | None) -> str:
    return submission_csv(image_id(filename), nuclei(labels))


def render(labels: np.ndarray, output_format: OutputFormat, filename: str | None,
           info: dict[str, str]) -> bytes:
    """The body of one output format; `info` names the model (`ModelCard.info`)."""
    if output_format is OutputFormat.png:
        return mask_png(labels)
    if output_format is OutputFormat.labels:
        return labels_png(labels)
    if output_format is OutputFormat.rle:
        return json.dumps(rle_document(labels, info), separators=(",", ":")).encode()
    return csv_body(labels, filename).encode()
