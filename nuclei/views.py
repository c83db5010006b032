"""Test-time augmentation: the network run on mirrored views of an image (as it is, mirrored
left-right, turned 180°, and that mirrored), each map turned back and the maps averaged.

A card asks for it (`inference.views`): a small specialist can afford 4 passes where the
default model cannot, and on the H&E tissue fold the averaged maps split packed nuclei better
than one pass (docs/training.md).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

VIEWS = {1: ((0, False),), 4: ((0, False), (0, True), (2, False), (2, True))}
"""views → (quarter turns, mirrored) of each pass: both mirror axes and their product. Never
an odd number of quarter turns: the trust signal (nuclei/quality.py) compares the answer with a pass on the
image turned a quarter, which views including quarter turns would make the same pass (its
agreement 1.0 whatever the image). Eight views scored no better on the H&E tuning fold."""


def averaged(predict: Callable[[np.ndarray], np.ndarray], image: np.ndarray, views: int) -> np.ndarray:
    """HxW(xC) image → the mean of `predict`'s HxWxK maps over `views` mirrored views (one view:
    `predict`'s own maps, uncopied)."""
    if views == 1:
        return predict(image)
    total = None
    for turns, mirrored in VIEWS[views]:
        view = np.rot90(image, turns)
        maps = predict(np.ascontiguousarray(view[:, ::-1] if mirrored else view))
        maps = np.rot90(maps[:, ::-1] if mirrored else maps, -turns)
        total = maps.astype(np.float32, copy=True) if total is None else total + maps
    return total / len(VIEWS[views])
