"""DSB2018 run-length encoding: the documented layout, round trips, per-nucleus records."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from nuclei.rle import decode, encode, nuclei, submission_csv
from tests.conftest import read_sample


def test_column_major_one_based():
    mask = np.zeros((3, 4), bool)
    mask[1:3, 1] = True  # column 1, rows 1-2 → pixels 5, 6 (1-based, top to bottom first)
    mask[0, 2] = True  # column 2, row 0 → pixel 7: continues the run
    assert encode(mask) == "5 3"
    assert (decode("5 3", 3, 4) == mask).all()


def test_empty_and_full():
    assert encode(np.zeros((5, 5), bool)) == ""
    assert encode(np.ones((5, 5), bool)) == "1 25"
    assert not decode("", 5, 5).any()


@settings(max_examples=200, deadline=None)
@given(arrays(np.bool_, st.tuples(st.integers(1, 40), st.integers(1, 40))))
def test_any_mask_round_trips(mask):
    assert (decode(encode(mask), *mask.shape) == mask).all()


@settings(max_examples=100, deadline=None)
@given(arrays(np.int32, st.tuples(st.integers(1, 30), st.integers(1, 30)), elements=st.integers(0, 6)))
def test_instances_round_trip_and_describe_themselves(labels):
    found = nuclei(labels)
    assert [n.id for n in found] == sorted(set(labels[labels > 0].tolist()))
    for n in found:
        mask = decode(n.rle, *labels.shape)
        assert (mask == (labels == n.id)).all()
        ys, xs = np.nonzero(mask)
        assert n.area == len(xs)
        assert n.bbox == (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
        assert np.allclose(n.centroid, (xs.mean(), ys.mean()), atol=0.0006)


def test_real_labels_round_trip():
    _, _, labels = read_sample("fluorescence_520x696")
    found = nuclei(labels)
    assert len(found) == labels.max() == 76
    rebuilt = np.zeros_like(labels)
    for n in found:
        rebuilt[decode(n.rle, *labels.shape)] = n.id
    assert (rebuilt == labels).all()
    assert (decode(encode(labels > 0), *labels.shape) == (labels > 0)).all()


def test_submission_rows_match_nuclei():
    _, _, labels = read_sample("fluorescence_256x256")
    lines = submission_csv("abc", nuclei(labels)).splitlines()
    assert lines[0] == "ImageId,EncodedPixels"
    assert len(lines) == 1 + labels.max()
    assert all(line.startswith("abc,") for line in lines[1:])
