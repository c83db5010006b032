"""Network output → instance labels: the step that turns probabilities into nuclei.

The network predicts foreground (any nucleus pixel), boundary (the rim of each nucleus,
including the line where two nuclei touch) and, from model 2.0 on, contact (only the pixels
between two nuclei that touch or nearly touch, where chains of packed nuclei fuse). Confident
foreground minus boundary and contact leaves one blob per nucleus even where nuclei touch;
these seeds are then grown back out to the foreground (a seeded watershed on a flat
landscape), so each nucleus regains its rim. The same function scores the model in training
and answers requests in the service; models with two output channels skip the contact step.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

FOREGROUND, BOUNDARY, CONTACT = 0, 1, 2
OUTPUT_CHANNELS = {
    FOREGROUND: "foreground probability: pixel belongs to any nucleus",
    BOUNDARY: "boundary probability: pixel is on a nucleus rim or between touching nuclei",
    CONTACT: "contact probability: pixel lies within 2 px of two different nuclei (where they touch)",
}
CONTACT_RADIUS = 2


@dataclass(frozen=True)
class Thresholds:
    """Post-processing settings, stored in the model card next to the weights."""

    foreground: float = 0.5  # how far a nucleus extends
    seed: float = 0.5  # how sure a pixel must be to start a nucleus (never below `foreground`)
    boundary: float = 0.5
    contact: float | None = None  # None: the model has no contact channel, or it is unused
    min_seed_area: int = 3
    min_area: int = 10
    max_growth: int = 12
    seed_erosion: int = 0  # px: seeds thinned by this before labelling, cutting the bridges of packed nuclei

    def at_scale(self, by: float) -> Thresholds:
        """The same settings for maps `by` times the model's scale: areas by², distances by."""
        if by == 1:
            return self
        return replace(self, min_seed_area=max(1, round(self.min_seed_area * by * by)),
                       min_area=max(1, round(self.min_area * by * by)),
                       max_growth=max(1, round(self.max_growth * by)),
                       seed_erosion=round(self.seed_erosion * by))


def targets(labels: np.ndarray) -> np.ndarray:
    """Instance labels → the HxWx3 float32 maps the network learns (inverse of `instances`).

    A pixel is boundary when its 3×3 neighbourhood holds another label (background
    included), so touching nuclei are split by a two-pixel line of boundary. It is contact
    when two different nuclei lie within `CONTACT_RADIUS` of it, background pixels in a
    narrow gap included: the few pixels that decide whether neighbours stay apart.
    """
    lab = labels.astype(np.float32)  # exact up to 2**24 labels
    kernel = np.ones((3, 3), np.uint8)
    edge = cv2.dilate(lab, kernel) != cv2.erode(lab, kernel)
    foreground = labels > 0
    return np.stack([foreground, foreground & edge, contact(lab)], axis=-1).astype(np.float32)


def contact(lab: np.ndarray) -> np.ndarray:
    """Pixels with two different non-zero labels within `CONTACT_RADIUS` (float32 labels in)."""
    size = 2 * CONTACT_RADIUS + 1
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    empty = np.float32(2**24)
    highest = cv2.dilate(lab, disc)
    lowest = cv2.erode(np.where(lab > 0, lab, empty), disc)
    return (lowest < empty) & (highest > lowest)


def foreground_mask(probabilities: np.ndarray, threshold: float) -> np.ndarray:
    return probabilities[..., FOREGROUND] > threshold


def instances(probabilities: np.ndarray, thresholds: Thresholds) -> np.ndarray:
    """HxWxC probabilities → int32 HxW labels (0 background, 1..N nuclei, no gaps)."""
    foreground = foreground_mask(probabilities, thresholds.foreground)
    seed_threshold = max(thresholds.seed, thresholds.foreground)
    same = seed_threshold == thresholds.foreground
    sure = foreground if same else foreground_mask(probabilities, seed_threshold)
    seeds = sure & (probabilities[..., BOUNDARY] < thresholds.boundary)
    if thresholds.contact is not None and probabilities.shape[-1] > CONTACT:
        seeds &= probabilities[..., CONTACT] < thresholds.contact
    seeds = seeds.astype(np.uint8)
    if thresholds.seed_erosion:
        seeds = thinned(seeds, thresholds.seed_erosion)
    count, markers = cv2.connectedComponents(seeds, connectivity=4)
    markers = _drop_small(markers, count, thresholds.min_seed_area)
    labels = grow(markers, foreground, thresholds.max_growth + thresholds.seed_erosion)
    labels = _label_orphans(labels, foreground)
    return relabel(labels, min_area=thresholds.min_area)


def thinned(seeds: np.ndarray, radius: int) -> np.ndarray:
    """uint8 seeds eroded by a disc of `radius`: two nuclei whose seeds a thin bridge joins
    become two seeds. A seed that would vanish whole (a small nucleus) is kept as it was."""
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    eroded = cv2.erode(seeds, disc)
    count, blobs = cv2.connectedComponents(seeds, connectivity=4)
    survives = np.zeros(count, bool)
    survives[blobs[eroded > 0]] = True
    survives[0] = True
    return eroded | (~survives[blobs]).astype(np.uint8)


def grow(markers: np.ndarray, mask: np.ndarray, iterations: int) -> np.ndarray:
    """Dilate labelled seeds into unlabelled pixels of `mask`, one ring per iteration.

    A free pixel takes the largest label among its 4-neighbours, so the dilation may run
    in any dtype that holds the labels exactly: the smallest unsigned one is fastest.
    """
    if markers.dtype.kind not in "iu" or mask.dtype != bool or not markers.size:
        return _grow_float(markers, mask, iterations)
    low, high = int(markers.min()), int(markers.max())
    if low < 0 or high > np.iinfo(np.uint16).max:
        return _grow_float(markers, mask, iterations)
    labels = markers.astype(np.uint8 if high <= np.iinfo(np.uint8).max else np.uint16)
    kernel = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    free = mask & (labels == 0)
    left = int(np.count_nonzero(free))
    for _ in range(iterations):
        if not left:
            break
        grown = cv2.dilate(labels, kernel)
        grown *= free  # only free pixels change; there `labels` is 0
        labels |= grown
        free &= grown == 0
        before, left = left, int(np.count_nonzero(free))
        if left == before:  # nothing grew: later rings would not either
            break
    return labels.astype(np.int32)


def _grow_float(markers: np.ndarray, mask: np.ndarray, iterations: int) -> np.ndarray:
    """`grow` for labels that do not fit uint16 (or are negative): float32 dilation."""
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
    extra = extra.astype(np.int32, copy=False)
    np.add(extra, int(labels.max()), out=extra, where=extra > 0)
    return labels + extra  # orphans are where `labels` is 0


def _drop_small(labels: np.ndarray, count: int, min_area: int) -> np.ndarray:
    if min_area <= 1 or count <= 1:
        return labels.astype(np.int32, copy=False)
    areas = np.bincount(labels.ravel(), minlength=count)
    small = areas < min_area
    small[0] = False
    if not small.any():
        return labels.astype(np.int32, copy=False)
    lookup = np.arange(len(areas), dtype=np.int32)
    lookup[small] = 0
    return lookup[labels]


def relabel(labels: np.ndarray, min_area: int = 1) -> np.ndarray:
    """Renumber labels to 1..N in order of first appearance (row-major).

    Labels covering fewer than `min_area` pixels become background first. A label's first
    pixel starts a run of equal values, so only run starts are searched, not every pixel.
    """
    flat = labels.ravel()
    if not _small_non_negative_ints(flat):
        if min_area > 1:
            labels = _drop_small(labels, int(labels.max()) + 1, min_area)
        return _relabel_sorted(labels)
    areas = np.bincount(flat)
    keep = areas >= max(min_area, 1)
    keep[0] = False
    starts = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    runs = np.concatenate((flat[:1], flat[starts]))
    runs = runs[keep[runs]]
    values, first = np.unique(runs, return_index=True)
    lookup = np.zeros(len(areas), np.int32)
    lookup[values[np.argsort(first)]] = np.arange(1, len(values) + 1, dtype=np.int32)
    return lookup[labels]


def _small_non_negative_ints(flat: np.ndarray) -> bool:
    """Whether np.bincount can count these labels in memory about the image's size."""
    if flat.dtype.kind not in "iu" or not flat.size:
        return False
    return int(flat.min()) >= 0 and int(flat.max()) < 4 * flat.size + 65536


def _relabel_sorted(labels: np.ndarray) -> np.ndarray:
    """`relabel` by a full sort, for labels that are not non-negative integers."""
    values, first, inverse = np.unique(labels.ravel(), return_index=True, return_inverse=True)
    nonzero = np.flatnonzero(values > 0)
    order = np.argsort(first[nonzero])
    lookup = np.zeros(len(values), np.int32)
    lookup[nonzero[order]] = np.arange(1, len(nonzero) + 1, dtype=np.int32)
    return lookup[inverse].reshape(labels.shape)
