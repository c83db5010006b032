"""nuclei.quality: the agreement measure on labels whose answer is known, the flip and its
inverse, and the signal on the samples through the served model and the pipeline."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from nuclei.bundle import unbundle
from nuclei.encode import OutputFormat
from nuclei.pipeline import segment_bytes
from nuclei.quality import CHECK, OK, THRESHOLD, Quality, agreement, assess, flipped, unflipped
from tests.conftest import SAMPLE_NAMES, read_sample


def discs(centres: list[tuple[int, int]], radius: int = 5, shape: tuple[int, int] = (64, 64)) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    labels = np.zeros(shape, np.int32)
    for k, (y, x) in enumerate(centres, start=1):
        labels[(yy - y) ** 2 + (xx - x) ** 2 <= radius**2] = k
    return labels


CENTRES = [(10, 10), (10, 40), (40, 10), (40, 40)]


def test_agreement_is_one_for_the_same_nuclei_whatever_their_ids():
    labels = discs(CENTRES)
    assert agreement(labels, labels) == 1.0
    assert agreement(labels, discs(CENTRES[::-1])) == 1.0
    assert agreement(np.zeros((8, 8), np.int32), np.zeros((8, 8), np.int32)) == 1.0


def test_agreement_counts_missing_and_moved_nuclei():
    four, two = discs(CENTRES), discs(CENTRES[:2])
    assert agreement(four, two) == pytest.approx(2 * 2 / (4 + 2))  # F1 at every IoU threshold
    assert agreement(two, four) == agreement(four, two)
    assert agreement(four, np.zeros_like(four)) == 0.0
    shifted = discs([(y, x + 3) for y, x in CENTRES])  # IoU of two radius-5 discs 3 px apart: ~0.41
    assert agreement(four, shifted) == 0.0
    nudged = discs([(y, x + 1) for y, x in CENTRES])  # IoU ~0.77: matched at 0.50…0.75 only
    assert agreement(four, nudged) == pytest.approx(6 / 10)


def test_flipped_is_undone_by_unflipped_for_grey_and_colour():
    rng = np.random.default_rng(0)
    for image in (rng.integers(0, 255, (5, 7), np.uint8), rng.integers(0, 255, (5, 7, 3), np.uint8)):
        turned = flipped(image)
        assert turned.shape[:2] == (7, 5) and turned.shape[2:] == image.shape[2:]
        assert not np.array_equal(turned, np.swapaxes(image, 0, 1))  # a transpose alone is not it
        assert np.array_equal(unflipped(turned), image)


def test_flag_below_the_threshold():
    assert Quality.of(THRESHOLD).flag == OK
    assert Quality.of(THRESHOLD - 0.01).flag == CHECK
    assert Quality.of(0.91234).headers() == {"X-Segmentation-Quality": "0.912", "X-Segmentation-Flag": OK}


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_the_second_pass_mapped_back_agrees_with_the_first_on_most_nuclei(segmenter, name):
    _, image, _ = read_sample(name)
    sized = segmenter.segment_sized(image)
    quality = assess(segmenter, image, sized)
    assert 0.7 < quality.score < 1  # two passes never agree on every outline, but on most nuclei
    # the second answer mapped back lies on the first: flipping it would not
    second = segmenter.segment_sized(flipped(image), diameter=sized.diameter).labels
    assert agreement(sized.labels, unflipped(second)) > agreement(sized.labels, np.swapaxes(second, 0, 1))


def test_pipeline_reports_quality_in_every_format_only_when_asked(segmenter):
    data, _, _ = read_sample("fluorescence_256x256")
    kwargs = {"filename": "a.png", "max_pixels": 1 << 24}
    plain = segment_bytes(segmenter, data, output_format=OutputFormat.rle, **kwargs)
    assert plain.quality is None
    assert {"quality", "flag"}.isdisjoint(json.loads(plain.body))
    formats = (OutputFormat.rle, OutputFormat.geojson, OutputFormat.measurements)
    rated = segment_bytes(segmenter, data, output_format=formats, quality=True, **kwargs)
    assert rated.quality is not None and rated.quality.flag in (OK, CHECK)
    assert rated.count == plain.count  # the answer itself is the same
    bodies = unbundle(rated.body, formats)
    rle = json.loads(bodies[OutputFormat.rle])
    assert (rle["quality"], rle["flag"]) == (rated.quality.score, rated.quality.flag)
    assert json.loads(bodies[OutputFormat.geojson])["properties"] == rated.quality.fields()
    rows = list(csv.DictReader(io.StringIO(bodies[OutputFormat.measurements].decode())))
    assert len(rows) == rated.count
    assert {(float(r["quality"]), r["flag"]) for r in rows} == {(rated.quality.score, rated.quality.flag)}


def test_the_stained_tissue_sample_is_flagged_and_the_clean_fluorescence_one_is_not(segmenter):
    flags = {}
    for name in ("he_stained_256x320", "fluorescence_520x696"):
        image = read_sample(name)[1]
        flags[name] = assess(segmenter, image, segmenter.segment_sized(image)).flag
    assert flags == {"he_stained_256x320": CHECK, "fluorescence_520x696": OK}


def test_without_quality_the_model_runs_as_often_as_before_and_with_it_twice(segmenter, monkeypatch):
    data, _, _ = read_sample("fluorescence_520x696")
    calls: list[tuple[int, ...]] = []
    run_batch = segmenter.run_batch
    monkeypatch.setattr(segmenter, "run_batch", lambda batch: calls.append(batch.shape) or run_batch(batch))
    kwargs = {"output_format": OutputFormat.png, "filename": "a.png", "max_pixels": 1 << 24}
    segment_bytes(segmenter, data, **kwargs)
    plain = list(calls)
    segmenter.segment(read_sample("fluorescence_520x696")[1])
    assert calls[len(plain):] == plain  # quality off: the model's runs of a plain segmentation, no more
    calls.clear()
    segment_bytes(segmenter, data, quality=True, **kwargs)
    assert len(calls) == 2 * len(plain)  # on: one more pass, of the flipped image
    assert [s[1:3] for s in calls[len(plain):]] == [s[1:3][::-1] for s in plain]
