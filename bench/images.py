"""The images every measure runs on: real DSB2018 micrographs from samples/, as uploaded bytes.
1024×1024 has no sample, so the 520×696 one is mirrored out to that size: real nuclei and
real texture, which a blank or random image would not give the post-processing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


@dataclass(frozen=True)
class Image:
    key: str  # "HxW"
    name: str
    data: bytes  # PNG file bytes, as a client uploads them
    height: int
    width: int

    @property
    def megapixels(self) -> float:
        return self.height * self.width / 1e6


def _png(name: str, pixels: np.ndarray) -> Image:
    ok, data = cv2.imencode(".png", pixels)
    assert ok, name
    h, w = pixels.shape[:2]
    return Image(f"{h}x{w}", name, data.tobytes(), h, w)


def sample(name: str) -> Image:
    return _png(name, cv2.imread(str(SAMPLES / f"{name}.png"), cv2.IMREAD_UNCHANGED))


def mirrored(name: str, height: int, width: int) -> Image:
    """A sample grown to height×width by mirroring it at its bottom and right edges."""
    pixels = cv2.imread(str(SAMPLES / f"{name}.png"), cv2.IMREAD_UNCHANGED)
    pad = [(0, height - pixels.shape[0]), (0, width - pixels.shape[1])] + [(0, 0)] * (pixels.ndim - 2)
    return _png(f"{name} mirrored to {height}x{width}", np.pad(pixels, pad, mode="symmetric"))


def enlarged(name: str, factor: int) -> Image:
    """A sample enlarged `factor`× (cubic), as a 40×/63× objective shows the same nuclei."""
    pixels = cv2.imread(str(SAMPLES / f"{name}.png"), cv2.IMREAD_UNCHANGED)
    big = cv2.resize(pixels, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
    return _png(f"{name} ×{factor}", big)


def bench_images() -> list[Image]:
    """256×256, 520×696 and 1024×1024: the sizes DSB2018 and the service see most."""
    return [sample("fluorescence_256x256"), sample("fluorescence_520x696"),
            mirrored("fluorescence_520x696", 1024, 1024)]
