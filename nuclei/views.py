"""Test-time augmentation: the network run on dihedral views of an image (turned by 0°, 90°,
180°, 270°, each mirrored or not), each map turned back and the maps averaged.

A card asks for it (`inference.views`): a small specialist can afford 4 or 8 passes where the
default model cannot, and on the H&E tissue fold the averaged maps split packed nuclei better
than one pass (docs/training.md).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

VIEWS = {1: ((0, False),), 4: ((0, False), (0, True), (2, False), (2, True)),
         8: tuple((k, m) for k in range(4) for m in (False, True))}
"""views → (quarter turns, mirrored) of each pass; 4: the two mirror axes and their product."""


def averaged(predict: Callable[[np.ndarray], np.ndarray], image: np.ndarray, views: int) -> np.ndarray:
    """HxW(xC) image → the mean of `predict`'s HxWxK maps over `views` dihedral views."""
    total = None
    for turns, mirrored in VIEWS[views]:
        view = np.rot90(image, turns)
        maps = predict(np.ascontiguousarray(view[:, ::-1] if mirrored else view))
        maps = np.rot90(maps[:, ::-1] if mirrored else maps, -turns)
        total = maps.astype(np.float32, copy=True) if total is None else total + maps
    return total / len(VIEWS[views])
