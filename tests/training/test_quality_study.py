"""training.quality_study on the samples: every candidate in [0, 1] with its cost, and the
threshold and the flag table computed as docs/model.md reports them."""

from __future__ import annotations

import pytest

from tests.conftest import read_sample
from training.quality_study import CANDIDATES, choose_threshold, flag_table, study_image


def test_every_candidate_is_a_number_in_0_1_with_its_seconds(segmenter):
    _, image, truth = read_sample("he_stained_256x320")
    row = study_image(segmenter, image, truth)
    assert 0 < row["dsb"] < 1
    for name in CANDIDATES:
        assert 0 <= row[name] <= 1, name
        assert row[f"s_{name}"] > 0, name
    assert row["s_segment"] > 0


def test_the_threshold_flags_the_worst_fifth_and_the_table_compares_the_means():
    rows = [{"flip": k / 10, "dsb": k / 20, "modality": "colour tissue" if k < 2 else "x"} for k in range(10)]
    threshold = choose_threshold(rows)
    assert threshold == pytest.approx(0.18)
    assert sum(r["flip"] < threshold for r in rows) == 2
    table = flag_table(rows, threshold)
    assert "2 of 10 flagged" in table and "0.025 flagged vs 0.275 the rest" in table
    assert "colour tissue 2" in table
