"""Scores for instance label images: the DSB2018 metric and the pixel-level ones.

Used by `evaluate` and by the unit tests alike, so the numbers in the model card are the
numbers the tests pin down.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IOU_THRESHOLDS = np.arange(0.5, 1.0, 0.05)


def overlap_matrix(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Pixels shared by every label pair, background (label 0) included as row and column 0.

    Row sums are the true nuclei's areas, column sums the predicted ones'.
    """
    n_true, n_pred = int(truth.max()), int(pred.max())
    # Joint histogram of label pairs gives every intersection in one pass.
    return np.bincount(
        truth.ravel().astype(np.int64) * (n_pred + 1) + pred.ravel(),
        minlength=(n_true + 1) * (n_pred + 1),
    ).reshape(n_true + 1, n_pred + 1)


def _areas(overlap: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(intersections, true areas as a column, predicted areas as a row) of nuclei only."""
    return overlap[1:, 1:], overlap.sum(axis=1)[1:, None], overlap.sum(axis=0)[None, 1:]


def _iou(overlap: np.ndarray) -> np.ndarray:
    inter, area_true, area_pred = _areas(overlap)
    return inter / np.maximum(area_true + area_pred - inter, 1)


def iou_matrix(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """IoU of every ground-truth nucleus (rows) with every predicted one (columns)."""
    return _iou(overlap_matrix(truth, pred))


def merges_and_splits(truth: np.ndarray, pred: np.ndarray) -> tuple[int, int]:
    """(merged, split): true nuclei left unmatched at IoU 0.5 by a merge or by a split.

    They say why a nucleus counts as a false negative in AP@0.5, so merged + split ≤ FN.
    With inter[i, j] the pixels shared by true nucleus i and predicted nucleus j:

    - true i lies **in** prediction j when inter[i, j] > area(i) / 2, and prediction j lies
      in true i when inter[i, j] > area(j) / 2 (each nucleus lies in at most one other);
    - a **merge** is a prediction that ≥ 2 true nuclei lie in; every one of those true
      nuclei with no prediction at IoU > 0.5 is a *merged* true nucleus (two equal touching
      nuclei found as one: 2; a large and a small one: the large may still match, 1);
    - a true nucleus is *split* when ≥ 2 predictions lie in it, none matches it at
      IoU > 0.5 and it is not merged (one nucleus found as two halves: 1).
    """
    overlap = overlap_matrix(truth, pred)
    inter, area_true, area_pred = _areas(overlap)
    true_in_pred = 2 * inter > area_true
    pred_in_true = 2 * inter > area_pred
    unmatched = ~(_iou(overlap) > 0.5).any(axis=1)
    in_merge = (true_in_pred & (true_in_pred.sum(axis=0) >= 2)).any(axis=1)
    in_split = pred_in_true.sum(axis=1) >= 2
    merged = in_merge & unmatched
    return int(merged.sum()), int((in_split & unmatched & ~merged).sum())


def counts_at(iou: np.ndarray, threshold: float) -> tuple[int, int, int]:
    """TP, FP, FN with a match at IoU > threshold (unique for threshold ≥ 0.5)."""
    matches = iou > threshold
    tp = int(matches.any(axis=1).sum())
    fn = iou.shape[0] - tp
    fp = iou.shape[1] - int(matches.any(axis=0).sum())
    return tp, fp, fn


def dsb_score(truth: np.ndarray, pred: np.ndarray) -> float:
    """Mean over IoU thresholds 0.50…0.95 of TP / (TP + FP + FN); 1.0 if both empty."""
    iou = iou_matrix(truth, pred)
    if iou.shape == (0, 0):
        return 1.0
    scores = []
    for t in IOU_THRESHOLDS:
        tp, fp, fn = counts_at(iou, t)
        scores.append(tp / (tp + fp + fn))
    return float(np.mean(scores))


@dataclass(frozen=True)
class ImageScores:
    dsb_score: float
    ap_50: float
    pixel_accuracy: float
    foreground_iou: float
    dice: float
    n_true: int
    n_pred: int
    merged: int  # true nuclei lost to merges at IoU 0.5, see `merges_and_splits`
    split: int  # true nuclei lost to splits at IoU 0.5


def score_image(truth: np.ndarray, pred: np.ndarray) -> ImageScores:
    iou = iou_matrix(truth, pred)
    if iou.shape == (0, 0):
        ap_50 = 1.0
    else:
        tp, fp, fn = counts_at(iou, 0.5)
        ap_50 = tp / (tp + fp + fn)
    t, p = truth > 0, pred > 0
    inter, union = int((t & p).sum()), int((t | p).sum())
    total = int(t.sum() + p.sum())
    merged, split = merges_and_splits(truth, pred)
    return ImageScores(
        dsb_score=dsb_score(truth, pred),
        ap_50=ap_50,
        pixel_accuracy=float((t == p).mean()),
        foreground_iou=inter / union if union else 1.0,
        dice=2 * inter / total if total else 1.0,
        n_true=iou.shape[0],
        n_pred=iou.shape[1],
        merged=merged,
        split=split,
    )
