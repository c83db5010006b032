"""Our label outputs back into napari: `<stem>.labels.png` (the service, the web page,
nuclei-client, nuclei-batch) and `<stem>.labels.ome.tif` (a whole slide from nuclei-batch)
open as a Labels layer named `<stem>.labels`, as the widget names its result."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from nuclei.imageio import decode_image

SUFFIXES = (".labels.png", ".labels.ome.tif", ".labels.ome.tiff")
LayerData = tuple[np.ndarray, dict[str, Any], str]


def layer_name(path: str | Path) -> str:
    name = Path(path).name
    return name[: name.index(".labels.")] + ".labels"


def read_labels(path: str | Path) -> list[LayerData]:
    path = Path(path)
    data = decode_image(path.read_bytes()) if path.name.endswith(".png") else tifffile.imread(path)
    return [(data, {"name": layer_name(path)}, "labels")]


def get_reader(path: str | list[str]) -> Callable[[str], list[LayerData]] | None:
    """npe2 reader: our files only, one at a time (napari calls again for each of a list)."""
    if isinstance(path, list | tuple) or not str(path).lower().endswith(SUFFIXES):
        return None
    return read_labels
