"""DSB2018 in the Kaggle layout (folder or zip) → images and instance label images.

    stage1_train/<id>/images/<id>.png    the image
    stage1_train/<id>/masks/*.png        one nucleus per file, 0/255
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from nuclei.imageio import decode_image, read_header
from nuclei.labelio import stack_masks

LAYOUT = "<root>/<id>/images/<id>.png and <root>/<id>/masks/*.png (the Kaggle DSB2018 layout)"


class DatasetError(Exception):
    """A dataset path that does not hold DSB2018 in the Kaggle layout."""


@dataclass
class Sample:
    image_id: str
    image: np.ndarray  # as decoded: HxW or HxWxC, original dtype
    labels: np.ndarray  # int32 HxW, 0 background, 1..N nuclei


class Dataset:
    """Lazy access to one DSB2018 copy, by image id, from a folder or a zip file."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.exists():
            raise DatasetError(f"dataset not found: {self.path} (expected a folder or .zip with {LAYOUT})")
        if self.path.is_file() and not zipfile.is_zipfile(self.path):
            raise DatasetError(f"{self.path} is not a zip file (expected a folder or .zip with {LAYOUT})")
        self._zip = zipfile.ZipFile(self.path) if self.path.is_file() else None
        names = self._zip.namelist() if self._zip else [
            p.relative_to(self.path).as_posix() for p in self.path.rglob("*.png")
        ]
        self._images: dict[str, str] = {}
        self._masks: dict[str, list[str]] = {}
        for name in sorted(names):
            parts = PurePosixPath(name).parts
            if len(parts) < 3 or not name.endswith(".png"):
                continue
            image_id, kind = parts[-3], parts[-2]
            if kind == "images" and parts[-1] == f"{image_id}.png":
                self._images[image_id] = name
            elif kind == "masks":
                self._masks.setdefault(image_id, []).append(name)
        self.ids = sorted(i for i in self._images if i in self._masks)
        if not self.ids:
            raise DatasetError(f"no labelled images in {self.path}: expected {LAYOUT}")

    def _read(self, name: str) -> bytes:
        if self._zip is not None:
            return self._zip.read(name)
        return (self.path / name).read_bytes()

    def image_bytes(self, image_id: str) -> bytes:
        """The image file as stored, to copy it unchanged."""
        return self._read(self._images[image_id])

    def size(self, image_id: str) -> tuple[int, int]:
        """(height, width) from the image's header alone: a cheap filter before `load`."""
        header = read_header(self.image_bytes(image_id))
        return header.height, header.width

    def load(self, image_id: str) -> Sample:
        image = decode_image(self.image_bytes(image_id))
        masks = (decode_image(self._read(name)) for name in self._masks[image_id])
        return Sample(image_id, image, stack_masks(masks, image.shape[:2]))

    def __iter__(self) -> Iterator[Sample]:
        return (self.load(i) for i in self.ids)


def split_ids(ids: list[str], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Deterministic split by hashing ids with a seed: stable when images are added."""
    def key(image_id: str) -> str:
        return hashlib.sha256(f"{seed}:{image_id}".encode()).hexdigest()

    ordered = sorted(ids, key=key)
    n_val = max(1, round(len(ids) * val_fraction))
    return sorted(ordered[n_val:]), sorted(ordered[:n_val])
