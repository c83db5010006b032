"""Targets and instances are inverses: perfect network output gives back the ground truth."""

import numpy as np
import pytest

from nuclei.postprocess import (
    BOUNDARY,
    CONTACT,
    FOREGROUND,
    Thresholds,
    _grow_float,
    _relabel_sorted,
    grow,
    instances,
    relabel,
    targets,
)
from tests.conftest import SAMPLE_NAMES, read_sample
from training.metrics import dsb_score


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_perfect_maps_recover_real_nuclei(name):
    _, _, labels = read_sample(name)
    maps = targets(labels)
    # touching nuclei are split by boundary; only nuclei too small to keep a seed may merge
    recovered = instances(maps, Thresholds(min_area=1))
    assert dsb_score(labels, recovered) > 0.95
    assert ((recovered > 0) == (labels > 0)).all()


def test_touching_nuclei_are_separated():
    labels = np.zeros((20, 30), np.int32)
    labels[4:16, 3:15] = 1
    labels[4:16, 15:27] = 2  # shares a whole edge with nucleus 1
    out = instances(targets(labels), Thresholds())
    assert out.max() == 2
    assert dsb_score(labels, out) == 1.0


def test_contact_marks_only_where_two_nuclei_meet():
    labels = np.zeros((30, 40), np.int32)
    labels[4:14, 4:14] = 1
    labels[4:14, 16:26] = 2  # 2 px gap to nucleus 1
    labels[20:28, 30:38] = 3  # alone
    maps = targets(labels)
    assert maps.shape == (30, 40, 3)
    contact = maps[..., CONTACT] > 0
    assert contact[8, 14:16].all()  # the gap between 1 and 2
    assert not contact[8, 13] and not contact[8, 16]  # 3 px from the other nucleus: too far
    assert not contact[18:, 28:].any()  # nothing around the lone nucleus
    assert not contact[:, :4].any()


def test_a_contact_line_splits_a_fused_blob_only_when_used():
    probs = np.zeros((20, 40, 3), np.float32)
    probs[4:16, 4:36, FOREGROUND] = 1  # one blob, no boundary between its halves
    probs[4:16, 19:21, CONTACT] = 1
    assert instances(probs, Thresholds(contact=None)).max() == 1  # a two-channel model's rule
    split = instances(probs, Thresholds(contact=0.5))
    assert split.max() == 2 and split[10, 10] != split[10, 30]
    assert instances(probs[..., :2], Thresholds(contact=0.5)).max() == 1  # no contact channel


def test_seed_erosion_cuts_a_bridge_between_seeds_and_keeps_small_nuclei():
    """Two packed nuclei whose confident cores touch along a 3 px neck: one seed, one nucleus,
    until the seeds are thinned; a nucleus too small to survive the erosion keeps its seed."""
    probs = np.zeros((30, 60, 3), np.float32)
    yy, xx = np.mgrid[:30, :60]
    for cx in (15, 33):
        probs[..., FOREGROUND] += (yy - 15) ** 2 + (xx - cx) ** 2 <= 9**2
    probs[14:17, 15:34, FOREGROUND] = 1  # the neck joining them
    probs[4:7, 50:53, FOREGROUND] = 1  # a 3×3 nucleus, gone under any erosion
    probs = np.clip(probs, 0, 1)
    plain = instances(probs, Thresholds(min_area=1, min_seed_area=1))
    thinned = instances(probs, Thresholds(min_area=1, min_seed_area=1, seed_erosion=2))
    assert plain.max() == 2 and plain[15, 15] == plain[15, 33]  # merged
    assert thinned.max() == 3 and thinned[15, 15] != thinned[15, 33] and thinned[5, 51] > 0
    assert ((thinned > 0) == (plain > 0)).all(), "the seeds grow back to the whole foreground"
    assert Thresholds(seed_erosion=2).at_scale(2.0).seed_erosion == 4


def test_small_objects_are_dropped():
    probs = np.zeros((30, 30, 2), np.float32)
    probs[2:4, 2:4, FOREGROUND] = 1  # 4 px: speck
    probs[10:20, 10:20, FOREGROUND] = 1
    probs[10, 10:20, BOUNDARY] = 1
    out = instances(probs, Thresholds(min_area=10))
    assert out.max() == 1 and out[2, 2] == 0 and out[15, 15] == 1


def test_relabel_is_dense_and_ordered():
    labels = np.array([[0, 7, 7], [3, 0, 9]])
    assert relabel(labels).tolist() == [[0, 1, 1], [2, 0, 3]]


def test_relabel_follows_first_appearance_and_drops_small():
    labels = np.array([
        [0, 0, 9, 9, 0],
        [4, 0, 9, 0, 2],
        [4, 4, 0, 7, 2],
        [0, 0, 5, 7, 2],
    ])
    assert relabel(labels).tolist() == [
        [0, 0, 1, 1, 0],
        [2, 0, 1, 0, 3],
        [2, 2, 0, 4, 3],
        [0, 0, 5, 4, 3],
    ]
    # with min_area 3, labels 7 and 5 (2 and 1 pixels) become background
    assert relabel(labels, min_area=3).tolist() == [
        [0, 0, 1, 1, 0],
        [2, 0, 1, 0, 3],
        [2, 2, 0, 0, 3],
        [0, 0, 0, 0, 3],
    ]


def test_fast_paths_equal_their_references():
    """relabel counts runs and grow dilates in uint8/uint16; both must match the slow forms."""
    rng = np.random.default_rng(0)
    for high in (5, 300, 70000):
        labels = rng.integers(0, high, (40, 50)).astype(np.int32)
        labels[rng.random(labels.shape) < 0.7] = 0
        assert np.array_equal(relabel(labels), _relabel_sorted(labels))
        mask = rng.random(labels.shape) < 0.8
        for iterations in (1, 4, 100):
            assert np.array_equal(grow(labels, mask, iterations), _grow_float(labels, mask, iterations))
