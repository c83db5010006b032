"""`python -m training quality-study`: which trust signal ranks images by their true DSB2018
score, at what cost (docs/model.md, "Segmentation quality").

Candidates, each in [0, 1], each from the served model alone:
    flip     agreement with a second pass on the image flipped and transposed (nuclei.quality)
    tile     the same on one central tile of a quarter of the image: a quarter of the cost
    size     consistency of the scale-space diameter estimate with the model's own
    outline  1 − the foreground map's uncertainty 4p(1 − p) on the nuclei's outlines
The flag threshold is chosen on training-split images (the worst fifth's upper bound,
rounded), then reported on the validation split it never saw.
"""

from __future__ import annotations

import argparse
import csv
import logging
import random
import time

import cv2
import numpy as np
from scipy.stats import pearsonr, spearmanr

from nuclei.modality import modality
from nuclei.normalize import normalize
from nuclei.quality import agreement, assess, flipped, unflipped
from nuclei.scale import coarse_diameter
from nuclei.segmenter import Segmenter
from training.data import Dataset
from training.evaluate import resolve_ids
from training.metrics import dsb_score

log = logging.getLogger("training")
CANDIDATES = ("flip", "tile", "size", "outline")
FLAGGED_SHARE = 0.2  # the share of training images the threshold flags


def tile_agreement(segmenter: Segmenter, image: np.ndarray, labels: np.ndarray, factor: float) -> float:
    """Agreement on the central tile of half the image's sides, its first answer cropped."""
    h, w = labels.shape
    top, left = h // 4, w // 4
    crop = (slice(top, top + h // 2), slice(left, left + w // 2))
    diameter = segmenter.card.nucleus_scale.diameter / factor
    second = segmenter.segment_sized(flipped(image[crop]), diameter=diameter).labels
    return agreement(labels[crop], unflipped(second))


def outline_certainty(segmenter: Segmenter, image: np.ndarray, labels: np.ndarray) -> float:
    p = segmenter.probabilities(image)[..., 0]
    mask = (labels > 0).astype(np.uint8)
    kernel = np.ones((3, 3), np.uint8)
    band = cv2.dilate(mask, kernel) != cv2.erode(mask, kernel)
    return float(1 - np.mean(4 * p[band] * (1 - p[band]))) if band.any() else 1.0


def study_image(segmenter: Segmenter, image: np.ndarray, truth: np.ndarray) -> dict:
    start = time.perf_counter()
    sized = segmenter.segment_sized(image)
    seconds = {"segment": time.perf_counter() - start}
    values = {}

    def timed(name, fn):
        t0 = time.perf_counter()
        values[name] = round(float(fn()), 4)
        seconds[name] = time.perf_counter() - t0

    timed("flip", lambda: assess(segmenter, image, sized).score)
    timed("tile", lambda: tile_agreement(segmenter, image, sized.labels, sized.factor))
    timed("size", lambda: _size_consistency(image, sized.diameter))
    timed("outline", lambda: outline_certainty(segmenter, image, sized.labels))
    return {"dsb": round(dsb_score(truth, sized.labels), 4), **values,
            **{f"s_{k}": round(v, 4) for k, v in seconds.items()}}


def _size_consistency(image: np.ndarray, diameter: float) -> float:
    coarse = coarse_diameter(normalize(image))
    return min(coarse, diameter) / max(coarse, diameter)


def run(segmenter: Segmenter, dataset: Dataset, ids: list[str]) -> list[dict]:
    rows = []
    for n, image_id in enumerate(ids, 1):
        sample = dataset.load(image_id)
        row = {"image_id": image_id, "modality": modality(sample.image, sample.labels),
               **study_image(segmenter, sample.image, sample.labels)}
        rows.append(row)
        log.info("%3d/%d %s dsb %.3f flip %.3f", n, len(ids), image_id[:12], row["dsb"], row["flip"])
    return rows


def choose_threshold(rows: list[dict], name: str = "flip") -> float:
    """The value below which the worst FLAGGED_SHARE of these images fall, to 2 decimals."""
    return round(float(np.quantile([r[name] for r in rows], FLAGGED_SHARE)), 2)


def ranking_table(rows: list[dict]) -> str:
    base = np.mean([r["s_segment"] for r in rows])
    lines = ["| signal | Spearman | Pearson | extra seconds per image | × one segmentation |",
             "|---|---|---|---|---|"]
    dsb = [r["dsb"] for r in rows]
    for name in CANDIDATES:
        values = [r[name] for r in rows]
        cost = float(np.mean([r[f"s_{name}"] for r in rows]))
        lines.append(f"| {name} | {spearmanr(values, dsb)[0]:.3f} | {pearsonr(values, dsb)[0]:.3f} "
                     f"| {cost:.3f} | {cost / base:.2f} |")
    return "\n".join(lines) + f"\n\none segmentation (segment_sized): {base:.3f} s per image"


def flag_table(rows: list[dict], threshold: float, name: str = "flip") -> str:
    flagged = [r for r in rows if r[name] < threshold]
    rest = [r for r in rows if r[name] >= threshold]
    kinds = ", ".join(f"{k} {sum(r['modality'] == k for r in flagged)}"
                      for k in sorted({r["modality"] for r in flagged}))
    mean = lambda rs: float(np.mean([r["dsb"] for r in rs])) if rs else float("nan")  # noqa: E731
    return (f"threshold {threshold:.2f}: {len(flagged)} of {len(rows)} flagged, mean DSB2018 "
            f"{mean(flagged):.3f} flagged vs {mean(rest):.3f} the rest "
            f"(gap {mean(rest) - mean(flagged):.3f}); flagged by modality: {kinds}")


def quality_study_command(args: argparse.Namespace) -> int:
    segmenter = Segmenter(args.model)
    dataset = Dataset(args.data)
    training_ids = resolve_ids("training", segmenter, dataset)
    training_ids = random.Random(args.seed).sample(training_ids, min(args.training_images, len(training_ids)))
    validation_ids = resolve_ids("validation", segmenter, dataset)
    train_rows = run(segmenter, dataset, training_ids)
    threshold = choose_threshold(train_rows)
    val_rows = run(segmenter, dataset, validation_ids)
    print(f"\ntraining split ({len(train_rows)} images, seed {args.seed}): "
          + flag_table(train_rows, threshold))
    print(f"\nvalidation split ({len(val_rows)} images)\n" + ranking_table(val_rows))
    print("\nvalidation: " + flag_table(val_rows, threshold))
    if args.report:
        with open(args.report, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["split", *val_rows[0]])
            writer.writeheader()
            writer.writerows([{"split": "training", **r} for r in train_rows]
                             + [{"split": "validation", **r} for r in val_rows])
    return 0
