"""In-process speed: the raw network call, the service's own functions end to end, and each
stage of a request called directly, one after the other.

The stages are the core's public functions, called here in the order `segment_bytes` calls
them, never patched: should the pipeline gain a step, the stages' sum stops matching
`segment_bytes` and the report (and tests/bench) shows the gap instead of a stage reading 0.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from bench.images import Image
from nuclei.encode import OutputFormat, Segmentation, render
from nuclei.imageio import decode_image, decode_plane
from nuclei.measure import measure as nuclei_measure
from nuclei.normalize import normalize
from nuclei.pipeline import segment_bytes
from nuclei.postprocess import instances
from nuclei.segmenter import Segmenter
from nuclei.tiling import pad_to_multiple, predict_tiled, tile_origins

STAGES = ("decode", "normalize", "predict_tiled", "instances", "render")
SEGMENT_STAGES = ("normalize", "predict_tiled", "instances")  # what Segmenter.segment() runs


def summary(seconds: list[float]) -> dict[str, Any]:
    """Count, median, p95 and minimum in ms: the median is what a request sees; the minimum is
    the steadiest measure on shared cores, where other work only ever adds time."""
    ms = np.asarray(seconds) * 1e3
    return {"n": len(ms), "p50_ms": round(float(np.median(ms)), 2), "p95_ms": round(float(np.percentile(ms, 95)), 2),
            "min_ms": round(float(ms.min()), 2)}


def timed_once(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def timed(fn: Callable[[], object], reps: int, budget_s: float, warm_up: bool = True) -> list[float]:
    """Seconds per call after one untimed warm-up; at least 2 calls, at most `reps`, no new
    call once `budget_s` has passed."""
    if warm_up:
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < reps and (len(times) < 2 or time.perf_counter() - start < budget_s):
        times.append(timed_once(fn))
    return times


def model_input(segmenter: Segmenter, image: Image) -> np.ndarray:
    """The whole image as one network input, 1×H'×W'×3, padded to the stride: the least work
    the model can do for it, whatever the tiling."""
    return np.ascontiguousarray(pad_to_multiple(normalize(decode_image(image.data)), segmenter.stride)[None])


def tiles(segmenter: Segmenter, image: Image) -> int:
    """How many tiles predict_tiled runs for the image (at the segmenter's tile size)."""
    s, padded = segmenter.inference, model_input(segmenter, image).shape[1:3]
    return int(np.prod([len(tile_origins(n, min(s.tile_size, n), s.overlap)) for n in padded]))


def run_stages(segmenter: Segmenter, image: Image, max_pixels: int) -> tuple[dict[str, float], bytes]:
    """One request's stages, each called directly as `segment_bytes` calls it: the seconds of
    each, and the body they made (the same bytes as segment_bytes', or the stages are stale)."""
    s = segmenter.inference
    marks = [time.perf_counter()]
    decoded, plane = decode_plane(image.data, max_pixels=max_pixels)
    marks.append(time.perf_counter())
    normalised = normalize(decoded)
    marks.append(time.perf_counter())
    probabilities = predict_tiled(normalised, segmenter.run_batch, tile_size=s.tile_size, overlap=s.overlap,
                                  stride=segmenter.stride, batch_size=s.batch_size)
    marks.append(time.perf_counter())
    labels = instances(probabilities, segmenter.thresholds)
    marks.append(time.perf_counter())
    body = render(Segmentation(labels, decoded, segmenter.info, f"{image.name}.png", plane.pixel_size_um),
                  OutputFormat.png)
    marks.append(time.perf_counter())
    return dict(zip(STAGES, np.diff(marks).tolist(), strict=True)), body


def measure(segmenter: Segmenter, image: Image, max_pixels: int, reps: int, budget_s: float,
            stages: bool = True) -> dict[str, Any]:
    """Raw session.run and segment_bytes(), and with `stages` segment() and each stage too,
    interleaved call by call so that a burst of load from elsewhere hits all of them alike."""
    x = model_input(segmenter, image)
    decoded = decode_image(image.data, max_pixels=max_pixels)
    calls: dict[str, Callable[[], object]] = {
        "session.run": lambda: segmenter.session.run(None, {segmenter.input_name: x}),
        "segment_bytes()": lambda: segment_bytes(segmenter, image.data, output_format=OutputFormat.png,
                                                 filename=f"{image.name}.png", max_pixels=max_pixels),
        "quality=true": lambda: segment_bytes(segmenter, image.data, output_format=OutputFormat.png,  # nuclei.quality
                                              filename=f"{image.name}.png", max_pixels=max_pixels, quality=True),
    }
    if stages:
        labels = segmenter.segment(decoded)
        calls["segment()"] = lambda: segmenter.segment(decoded)
        calls["measure()"] = lambda: nuclei_measure(labels, decoded)  # format=measurements' own work
    runs: dict[str, list[float]] = {}
    start = time.perf_counter()
    for rep in range(reps + 1):  # rep 0 warms up and is dropped
        laps = {name: timed_once(fn) for name, fn in calls.items()}
        if stages:
            laps |= run_stages(segmenter, image, max_pixels)[0]
            laps["stage sum"] = sum(laps[s] for s in STAGES)
            laps["segment() stages"] = sum(laps[s] for s in SEGMENT_STAGES)
        for name, seconds in laps.items():
            runs[name] = runs.get(name, []) + ([seconds] if rep else [])
        if rep >= 2 and time.perf_counter() - start > budget_s:
            break
    out = {name: summary(seconds) for name, seconds in runs.items()}
    e2e = out["segment_bytes()"]
    if stages:
        out["stage_sum_over_end_to_end"] = round(out["stage sum"]["min_ms"] / e2e["min_ms"], 3)
        out["measure_over_segment"] = round(out["measure()"]["min_ms"] / out["segment()"]["min_ms"], 3)
    return out | {
        "input_shape": list(x.shape),
        "tiles": tiles(segmenter, image),
        "images_per_s": round(1e3 / e2e["p50_ms"], 3),
        "megapixels_per_s": round(image.megapixels * 1e3 / e2e["p50_ms"], 3),
    }
