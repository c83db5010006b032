"""One image → nuclei, with no Qt in sight, so the widget's worker thread and the tests call
the same function: a local model through `nuclei.segmenter`, or a service through `client`.
Either way the measurements are `nuclei.measure`'s, on the labels and the image's own values.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile

from napari_nuclei.models import segmenter
from nuclei.imageio import decode_image
from nuclei.measure import COLUMNS, measure


@dataclass(frozen=True)
class Nuclei:
    labels: np.ndarray  # int32, 0 background, 1..N
    features: pd.DataFrame  # one row per nucleus: `index` (its label) and nuclei.measure.COLUMNS
    model: dict[str, str]  # name, version, sha256
    diameter: float | None  # median nucleus diameter (px) segmented at

    @property
    def count(self) -> int:
        return int(self.labels.max(initial=0))


def features(labels: np.ndarray, image: np.ndarray) -> pd.DataFrame:
    """The measurements as napari wants a Labels layer's features: `index` is the label."""
    table = pd.DataFrame(measure(labels, image), columns=list(COLUMNS))
    table.insert(0, "index", table["id"])
    return table


def tiff_bytes(image: np.ndarray) -> bytes:
    """The layer's pixels as the service reads them back: TIFF keeps any dtype losslessly."""
    buf = io.BytesIO()
    colour = image.ndim == 3 and image.shape[2] in (3, 4)
    tifffile.imwrite(buf, image, photometric="rgb" if colour else "minisblack")
    return buf.getvalue()


def local(image: np.ndarray, model: Path, diameter: float | None = None,
          threshold: float | None = None) -> Nuclei:
    seg = segmenter(Path(model))
    sized = seg.segment_sized(image, threshold, diameter)
    return Nuclei(sized.labels, features(sized.labels, image), seg.info, sized.diameter)


def remote(image: np.ndarray, url: str, name: str = "image", diameter: float | None = None,
           threshold: float | None = None) -> Nuclei:
    from client import Client

    with Client(url, patience_s=60.0) as c:
        answer = c.segment(tiff_bytes(image), format="labels", filename=f"{name}.tif",
                           diameter=diameter, threshold=threshold)
    labels = decode_image(answer.content).astype(np.int32)
    h = answer.headers
    model = {"name": h.get("x-model-name", ""), "version": answer.model_version, "sha256": h.get("x-model-sha256", "")}
    used = h.get("x-nucleus-diameter")
    return Nuclei(labels, features(labels, image), model, float(used) if used else None)


def segment(image: np.ndarray, *, model: Path | None = None, url: str | None = None, name: str = "image",
            diameter: float | None = None, threshold: float | None = None) -> Nuclei:
    """Exactly one of `model` (an ONNX file with its card) and `url` (a running service)."""
    if (model is None) == (url is None):
        raise ValueError("give a model file or a service URL, not both")
    if model is not None:
        return local(image, model, diameter, threshold)
    return remote(image, url, name, diameter, threshold)
