"""Network output → instance labels: the step that turns probabilities into nuclei.

The network predicts two maps: foreground (any nucleus pixel) and boundary (the rim of each
nucleus, including the line where two nuclei touch). Confident foreground minus boundary
leaves one blob per nucleus even where nuclei touch; these seeds are then grown back out to
the foreground, so each nucleus regains its rim. The same function scores the model in
training and answers requests in the service.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

FOREGROUND, BOUNDARY = 0, 1
OUTPUT_CHANNELS = {
    FOREGROUND: "foreground probability: pixel belongs to any nucleus",
    BOUNDARY: "boundary probability: pixel is on a nucleus rim or between touching nuclei",
}


@dataclass(frozen=True)
class Thresholds:
    """Post-processing settings, stored in the model card next to the weights."""

    foreground: float = 0.5  # how far a nucleus extends
    seed: float = 0.5  # how sure a pixel must be to start a nucleus (never below `foreground`)
    boundary: float = 0.5
    min_seed_area: int = 3
    min_area: int = 10
    max_growth: int = 12


def targets(labels: np.ndarray) -> np.ndarray:
    """Instance labels → the HxWx2 float32 maps the network learns (inverse of `instances`).

    A pixel is boundary when its 3×3 neighbourhood holds another label (background
    included), so touching nuclei are split by a two-pixel line of boundary.
    """
    lab = labels.astype(np.float32)
    kernel = np.ones((3, 3), np.uint8)
    edge = cv2.dilate(lab, kernel) != cv2.erode(lab, kernel)
    foreground = labels > 0
    return np.stack([foreground, foreground & edge], axis=-1).astype(np.float32)


def foreground_mask(probabilities: np.ndarray, threshold: float) -> np.ndarray:
    return probabilities[..., FOREGROUND] > threshold


def instances(probabilities: np.ndarray, thresholds: Thresholds) -> np.ndarray:
    """HxWx2 probabilities → int32 HxW labels (0 background, 1..N nuclei, no gaps)."""
    foreground = foreground_mask(probabilities, thresholds.foreground)
    sure = foreground_mask(probabilities, max(thresholds.seed, thresholds.foreground))
    seeds = sure & (probabilities[..., BOUNDARY] < thresholds.boundary)
    count, markers = cv2.connectedComponents(seeds.astype(np.uint8), connectivity=4)
    markers = _drop_small(markers, count, thresholds.min_seed_area)
    labels = grow(markers, foreground, thresholds.max_growth)
    labels = _label_orphans(labels, foreground)
    return relabel(_drop_small(labels, int(labels.max()) + 1, thresholds.min_area))


def grow(markers: np.ndarray, mask: np.ndarray, iterations: int) -> np.ndarray:
    """Dilate labelled seeds into unlabelled pixels of `mask`, one ring per iteration."""
    labels = markers.astype(np.float32)  # float32 dilation is exact up to 2**24 labels
    kernel = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    for _ in range(iterations):
        free = mask & (labels == 0)
        if not free.any():
            break
        grown = cv2.dilate(labels, kernel)
        take = free & (grown > 0)
        if not take.any():
            break
        labels[take] = grown[take]
    return labels.astype(np.int32)


def _label_orphans(labels: np.ndarray, foreground: np.ndarray) -> np.ndarray:
    """Foreground blobs without any seed (very small nuclei) become nuclei of their own."""
    orphans = foreground & (labels == 0)
    if not orphans.any():
        return labels
    _count, extra = cv2.connectedComponents(orphans.astype(np.uint8), connectivity=8)
    extra = extra.astype(np.int32)
    offset = int(labels.max())
    return np.where(extra > 0, extra + offset, labels)


def _drop_small(labels: np.ndarray, count: int, min_area: int) -> np.ndarray:
    if min_area <= 1 or count <= 1:
        return labels.astype(np.int32)
    areas = np.bincount(labels.ravel(), minlength=count)
    small = areas < min_area
    small[0] = False
    if not small.any():
        return labels.astype(np.int32)
    return np.where(small[labels], 0, labels).astype(np.int32)


def relabel(labels: np.ndarray) -> np.ndarray:
    """Renumber labels to 1..N in order of first appearance (row-major)."""
    values, first, inverse = np.unique(labels.ravel(), return_index=True, return_inverse=True)
    nonzero = np.flatnonzero(values > 0)
    order = np.argsort(first[nonzero])
    lookup = np.zeros(len(values), np.int32)
    lookup[nonzero[order]] = np.arange(1, len(nonzero) + 1, dtype=np.int32)
    return lookup[inverse].reshape(labels.shape)
