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

from napari_nuclei import models
from nuclei.imageio import decode_image
from nuclei.measure import COLUMNS, measure
from nuclei.naming import fields_of_headers


@dataclass(frozen=True)
class Nuclei:
    labels: np.ndarray  # int32, 0 background, 1..N
    features: pd.DataFrame  # one row per nucleus: `index` (its label) and nuclei.measure.COLUMNS
    model: dict[str, str]  # name, version, sha256
    diameter: float | None  # median nucleus diameter (px) segmented at
    route: str = ""  # why that model, as X-Model-Route says it: requested, modality: …, default

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


def local(image: np.ndarray, model: str = models.AUTOMATIC, diameter: float | None = None,
          threshold: float | None = None, where: Path | None = None) -> Nuclei:
    """`model`: a name of the models folder `where` (nuclei.registry), or `automatic`: the
    model the service would route the image to."""
    seg, route = models.choose(models.registry(where), model, image)
    sized = seg.segment_sized(image, threshold, diameter)
    return Nuclei(sized.labels, features(sized.labels, image), seg.info, sized.diameter, route)


def remote(image: np.ndarray, url: str, name: str = "image", diameter: float | None = None,
           threshold: float | None = None) -> Nuclei:
    from client import Client

    with Client(url, patience_s=60.0) as c:
        answer = c.segment(tiff_bytes(image), format="labels", filename=f"{name}.tif",
                           diameter=diameter, threshold=threshold)
    labels = decode_image(answer.content).astype(np.int32)
    model = fields_of_headers(answer.headers)
    route = model.pop("route")
    return Nuclei(labels, features(labels, image), model, answer.diameter, route)


def segment(image: np.ndarray, *, model: str | None = None, url: str | None = None, name: str = "image",
            diameter: float | None = None, threshold: float | None = None) -> Nuclei:
    """Exactly one of `model` (a model's name, or `automatic`: `local`) and `url` (a running service)."""
    if (model is None) == (url is None):
        raise ValueError("give a model name or a service URL, not both")
    if model is not None:
        return local(image, model, diameter, threshold)
    return remote(image, url, name, diameter, threshold)
