"""The DSB2018 metric on hand-built label images with known answers."""

import numpy as np
import pytest

from training.metrics import dsb_score, iou_matrix, merges_and_splits, score_image


def labelled(shape: tuple[int, int], *boxes: tuple[int, int, int, int]) -> np.ndarray:
    """Label image with nucleus k+1 filling boxes[k] = (top, bottom, left, right)."""
    labels = np.zeros(shape, np.int32)
    for k, (top, bottom, left, right) in enumerate(boxes, start=1):
        labels[top:bottom, left:right] = k
    return labels


def two_nuclei() -> np.ndarray:
    return labelled((20, 20), (2, 8, 2, 8), (10, 18, 10, 18))


def test_perfect_match_scores_one():
    truth = two_nuclei()
    shuffled = np.where(truth == 1, 2, np.where(truth == 2, 1, 0))  # label numbers don't matter
    assert dsb_score(truth, shuffled) == 1.0
    s = score_image(truth, shuffled)
    assert (s.ap_50, s.pixel_accuracy, s.foreground_iou, s.dice) == (1.0, 1.0, 1.0, 1.0)


def test_one_missed_nucleus():
    truth = two_nuclei()
    pred = np.where(truth == 2, 1, 0)  # nucleus 1 missed
    # every threshold: TP 1, FP 0, FN 1 → 1/2
    assert dsb_score(truth, pred) == pytest.approx(0.5)


def test_one_split_nucleus():
    truth = np.zeros((10, 20), np.int32)
    truth[2:8, 2:18] = 1  # 6×16 = 96 px
    pred = np.zeros_like(truth)
    pred[2:8, 2:10] = 1  # each half: IoU 48/96 = 0.5, not > 0.5
    pred[2:8, 10:18] = 2
    assert iou_matrix(truth, pred) == pytest.approx(np.array([[0.5, 0.5]]))
    # no match at any threshold: TP 0, FP 2, FN 1
    assert dsb_score(truth, pred) == 0.0


def test_partial_overlap_counts_only_below_its_iou():
    truth = np.zeros((10, 10), np.int32)
    truth[0:10, 0:10] = 1
    pred = np.zeros_like(truth)
    pred[0:10, 0:7] = 1  # IoU 0.7: a match at t = 0.50, 0.55, 0.60, 0.65 (IoU > t), not above
    assert dsb_score(truth, pred) == pytest.approx(4 / 10)


def test_empty_prediction_scores_zero():
    truth = two_nuclei()
    pred = np.zeros_like(truth)
    assert dsb_score(truth, pred) == 0.0
    assert score_image(truth, pred).foreground_iou == 0.0


def test_empty_ground_truth():
    truth = np.zeros((20, 20), np.int32)
    assert dsb_score(truth, np.zeros_like(truth)) == 1.0  # nothing to find, nothing found
    assert dsb_score(truth, two_nuclei()) == 0.0  # every prediction is a false positive


def touching_pair() -> np.ndarray:
    """Two 6×6 nuclei side by side, sharing an edge."""
    return labelled((10, 16), (2, 8, 2, 8), (2, 8, 8, 14))


def test_perfect_prediction_has_no_merges_or_splits():
    truth = touching_pair()
    assert merges_and_splits(truth, truth) == (0, 0)
    s = score_image(truth, truth)
    assert (s.merged, s.split) == (0, 0)


def test_two_touching_nuclei_found_as_one_are_two_merged():
    truth = touching_pair()
    pred = (truth > 0).astype(np.int32)  # IoU 0.5 with each: neither matches
    assert merges_and_splits(truth, pred) == (2, 0)
    assert score_image(truth, pred).merged == 2


def test_one_nucleus_found_as_two_halves_is_one_split():
    truth = (touching_pair() > 0).astype(np.int32)
    pred = touching_pair()
    assert merges_and_splits(truth, pred) == (0, 1)
    assert score_image(truth, pred).split == 1


def test_only_nuclei_the_merge_costs_a_match_count():
    truth = np.zeros((10, 20), np.int32)
    truth[2:8, 2:14] = 1  # 72 px
    truth[2:8, 14:17] = 2  # 18 px: the merged prediction still matches nucleus 1 (IoU 0.8)
    pred = (truth > 0).astype(np.int32)
    assert merges_and_splits(truth, pred) == (1, 0)


def test_a_small_fragment_beside_a_matched_nucleus_is_no_split():
    truth = np.zeros((10, 20), np.int32)
    truth[2:8, 2:18] = 1
    pred = np.zeros_like(truth)
    pred[2:8, 2:15] = 1  # IoU 0.81: matched; the fragment is a false positive
    pred[2:8, 15:18] = 2
    assert merges_and_splits(truth, pred) == (0, 0)


def test_overlap_below_half_is_neither_merge_nor_split():
    truth = touching_pair()
    pred = np.zeros_like(truth)
    pred[2:8, 5:11] = 1  # half of each true nucleus: not more than half
    assert merges_and_splits(truth, pred) == (0, 0)


def test_empty_images_have_no_merges_or_splits():
    empty = np.zeros((10, 16), np.int32)
    assert merges_and_splits(empty, touching_pair()) == (0, 0)
    assert merges_and_splits(touching_pair(), empty) == (0, 0)
