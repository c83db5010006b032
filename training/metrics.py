"""Scores for instance label images: the DSB2018 metric and the pixel-level ones.

Used by `evaluate` and by the unit tests alike, so the numbers in the model card are the
numbers the tests pin down.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IOU_THRESHOLDS = np.arange(0.5, 1.0, 0.05)


def iou_matrix(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """IoU of every ground-truth nucleus (rows) with every predicted one (columns)."""
    n_true, n_pred = int(truth.max()), int(pred.max())
    if n_true == 0 or n_pred == 0:
        return np.zeros((n_true, n_pred))
    # Joint histogram of label pairs gives every intersection in one pass.
    inter = np.bincount(
        truth.ravel().astype(np.int64) * (n_pred + 1) + pred.ravel(),
        minlength=(n_true + 1) * (n_pred + 1),
    ).reshape(n_true + 1, n_pred + 1)
    area_true = inter.sum(axis=1)[1:, None]
    area_pred = inter.sum(axis=0)[None, 1:]
    inter = inter[1:, 1:]
    union = area_true + area_pred - inter
    return inter / np.maximum(union, 1)


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
    return ImageScores(
        dsb_score=dsb_score(truth, pred),
        ap_50=ap_50,
        pixel_accuracy=float((t == p).mean()),
        foreground_iou=inter / union if union else 1.0,
        dice=2 * inter / total if total else 1.0,
        n_true=iou.shape[0],
        n_pred=iou.shape[1],
    )
