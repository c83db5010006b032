"""Per-nucleus measurements, as CellProfiler and QuPath users expect them in a table.

Areas, centroids and boxes are `nuclei.regions`' (the same numbers as every other format);
shape moments and intensities come from one vectorised pass over the pixels it groups; only
the perimeter and the convex hull need OpenCV contours per nucleus, on the nucleus' own box,
so the cost grows with the nuclei's area, not image × nuclei.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from nuclei.regions import Regions, regions

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


def measure(labels: np.ndarray, image: np.ndarray | None = None, found: Regions | None = None,
            ) -> list[dict[str, Any]]:
    """One dict per nucleus (ascending id) with the `COLUMNS`; intensities are NaN without
    an image. `found`: the labels' `regions`, when the caller has them already."""
    found = regions(labels) if found is None else found
    if not len(found):
        return []
    starts, area = found.starts, found.area
    # Central second moments per nucleus → inertia eigenvalues → eccentricity (as regionprops).
    dx, dy = found.xs - np.repeat(found.mean_x, area), found.ys - np.repeat(found.mean_y, area)
    mxx = np.add.reduceat(dx * dx, starts) / area
    myy = np.add.reduceat(dy * dy, starts) / area
    mxy = np.add.reduceat(dx * dy, starts) / area
    root = np.sqrt(((mxx - myy) / 2) ** 2 + mxy**2)
    major, minor = (mxx + myy) / 2 + root, (mxx + myy) / 2 - root
    eccentricity = np.where(major > 0, np.sqrt(np.clip(1 - minor / np.where(major > 0, major, 1), 0, 1)), 0)
    if image is None:
        integrated = np.full(len(found), np.nan)
    else:
        integrated = np.add.reduceat(grey_levels(image).ravel()[found.where], starts)
    rows = []
    for k, label in enumerate(found.ids.tolist()):
        x, y, w, h = found.bbox(k)
        cx, cy = found.centroid(k)
        perimeter, hull_area = _contour_shape((labels[y : y + h, x : x + w] == label).astype(np.uint8))
        rows.append({
            "id": label, "area": int(area[k]), "perimeter": round(perimeter, 3),
            "centroid_x": cx, "centroid_y": cy, "bbox_x": x, "bbox_y": y, "bbox_width": w, "bbox_height": h,
            "equivalent_diameter": round(float(np.sqrt(4 * area[k] / np.pi)), 3),
            "eccentricity": round(float(eccentricity[k]), 4),
            "solidity": round(float(area[k] / hull_area), 4),
            "mean_intensity": round(float(integrated[k] / area[k]), 4),
            "integrated_intensity": round(float(integrated[k]), 3),
            "touches_border": found.touches_border(k),
        })
    return rows
