"""Per-nucleus measurements, as CellProfiler and QuPath users expect them in a table.

Areas, centroids, boxes, shape moments and intensities come from one vectorised pass over
the labelled pixels; only the perimeter and the convex hull need OpenCV contours per nucleus,
on the nucleus' own box, so the cost grows with the nuclei's area, not image × nuclei.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

COLUMNS = (
    "id", "area", "perimeter", "centroid_x", "centroid_y", "bbox_x", "bbox_y", "bbox_width",
    "bbox_height", "equivalent_diameter", "eccentricity", "solidity", "mean_intensity",
    "integrated_intensity", "touches_border",
)
"""`id` is the nucleus' value in the label image; lengths in pixels, origin top-left."""


def grey_levels(image: np.ndarray) -> np.ndarray:
    """The uploaded image's grey values (float64, its own scale): colour channels averaged,
    alpha dropped, so intensities are in the units the user's image holds."""
    if image.ndim == 2:
        return image.astype(np.float64)
    channels = image.shape[2]
    colour = image[..., : 3 if channels >= 3 else 1]
    return colour.astype(np.float64).mean(axis=2)


def _contour_shape(mask: np.ndarray) -> tuple[float, float]:
    """(perimeter, convex hull area in pixels) of one nucleus' mask."""
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    perimeter = float(sum(cv2.arcLength(c, closed=True) for c in contours))
    hull = cv2.convexHull(np.concatenate(contours))
    filled = np.zeros_like(mask)
    cv2.fillConvexPoly(filled, hull, 1)
    return perimeter, float(np.count_nonzero(filled | mask))


def measure(labels: np.ndarray, image: np.ndarray | None = None) -> list[dict[str, Any]]:
    """One dict per nucleus (ascending id) with the `COLUMNS`; intensities are NaN without
    an image."""
    height, width = labels.shape
    flat = labels.ravel()
    where = np.flatnonzero(flat)
    if where.size == 0:
        return []
    order = np.argsort(flat[where], kind="stable")
    where = where[order]
    values = flat[where]
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
    ids = values[starts]
    ys, xs = np.divmod(where, width)
    area = np.diff(np.r_[starts, values.size])
    cx = np.add.reduceat(xs, starts) / area
    cy = np.add.reduceat(ys, starts) / area
    # Central second moments per nucleus → inertia eigenvalues → eccentricity (as regionprops).
    dx, dy = xs - np.repeat(cx, area), ys - np.repeat(cy, area)
    mxx = np.add.reduceat(dx * dx, starts) / area
    myy = np.add.reduceat(dy * dy, starts) / area
    mxy = np.add.reduceat(dx * dy, starts) / area
    root = np.sqrt(((mxx - myy) / 2) ** 2 + mxy**2)
    major, minor = (mxx + myy) / 2 + root, (mxx + myy) / 2 - root
    eccentricity = np.where(major > 0, np.sqrt(np.clip(1 - minor / np.where(major > 0, major, 1), 0, 1)), 0)
    x0, x1 = np.minimum.reduceat(xs, starts), np.maximum.reduceat(xs, starts)
    y0, y1 = np.minimum.reduceat(ys, starts), np.maximum.reduceat(ys, starts)
    if image is None:
        integrated = np.full(ids.size, np.nan)
    else:
        integrated = np.add.reduceat(grey_levels(image).ravel()[where], starts)
    rows = []
    for k, label in enumerate(ids.tolist()):
        crop = labels[y0[k] : y1[k] + 1, x0[k] : x1[k] + 1]
        perimeter, hull_area = _contour_shape((crop == label).astype(np.uint8))
        rows.append({
            "id": label, "area": int(area[k]), "perimeter": round(perimeter, 3),
            "centroid_x": round(float(cx[k]), 3), "centroid_y": round(float(cy[k]), 3),
            "bbox_x": int(x0[k]), "bbox_y": int(y0[k]),
            "bbox_width": int(x1[k] - x0[k] + 1), "bbox_height": int(y1[k] - y0[k] + 1),
            "equivalent_diameter": round(float(np.sqrt(4 * area[k] / np.pi)), 3),
            "eccentricity": round(float(eccentricity[k]), 4),
            "solidity": round(float(area[k] / hull_area), 4),
            "mean_intensity": round(float(integrated[k] / area[k]), 4),
            "integrated_intensity": round(float(integrated[k]), 3),
            "touches_border": bool(x0[k] == 0 or y0[k] == 0 or x1[k] == width - 1 or y1[k] == height - 1),
        })
    return rows
