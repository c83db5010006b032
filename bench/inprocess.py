"""In-process measurements: the raw onnxruntime call, and the service's own request function
(`nuclei.pipeline.segment_bytes`) with the time of each stage.

Stages are timed by wrapping, for the duration of the measurement, the functions the
service's code looks up at call time (`nuclei.pipeline.decode_image` and `render`,
`nuclei.segmenter.normalize`, `predict_tiled` and `instances`, and the segmenter's `run_batch`),
so the code path measured is the service's, not a copy of it.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

import nuclei.pipeline
import nuclei.segmenter
from nuclei.imageio import decode_image
from nuclei.encode import OutputFormat
from nuclei.normalize import normalize
from nuclei.pipeline import segment_bytes
from nuclei.segmenter import Segmenter
from nuclei.tiling import pad_to_multiple
from bench.images import BenchImage
from bench.stats import repeat, summarize

STAGES = ("decode", "normalize", "tiling", "model", "postprocess", "encode", "other")
PATCHES = (  # (module, attribute, stage)
    (nuclei.pipeline, "decode_image", "decode"),
    (nuclei.pipeline, "render", "encode"),
    (nuclei.segmenter, "normalize", "normalize"),
    (nuclei.segmenter, "predict_tiled", "tiled"),
    (nuclei.segmenter, "instances", "postprocess"),
)


class StageTimes:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def wrap(self, stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[stage] += time.perf_counter() - t0

        return timed


@contextmanager
def instrumented(segmenter: Segmenter) -> Iterator[StageTimes]:
    times = StageTimes()
    saved = []
    for module, attr, stage in PATCHES:
        if hasattr(module, attr):
            saved.append((module, attr, getattr(module, attr)))
            setattr(module, attr, times.wrap(stage, getattr(module, attr)))
    segmenter.run_batch = times.wrap("model", type(segmenter).run_batch.__get__(segmenter))  # type: ignore[method-assign]
    try:
        yield times
    finally:
        for module, attr, original in saved:
            setattr(module, attr, original)
        del segmenter.run_batch


def model_input(segmenter: Segmenter, data: bytes) -> np.ndarray:
    """The whole image as the network's input tensor: 1×H'×W'×3, H' and W' padded to the stride."""
    return np.ascontiguousarray(pad_to_multiple(normalize(decode_image(data)), segmenter.stride)[None])


def raw_onnxruntime(
    segmenter: Segmenter, x: np.ndarray, *, min_reps: int, max_reps: int, budget_s: float
) -> dict[str, Any]:
    """session.run on one input tensor, nothing else."""
    feed = {segmenter.input_name: x}
    times = repeat(
        lambda _i: segmenter.session.run(None, feed), min_reps=min_reps, max_reps=max_reps, budget_s=budget_s, warmup=1
    )
    return {"input_shape": list(x.shape), **summarize(times)}


def pipeline(
    segmenter: Segmenter,
    images: list[BenchImage],
    *,
    max_pixels: int,
    min_reps: int,
    max_reps: int,
    budget_s: float,
    output: OutputFormat = OutputFormat.png,
) -> dict[str, Any]:
    """segment_bytes, as a request runs it, cycling over `images`; per-stage times."""
    per_call: list[dict[str, float]] = []
    bodies = 0

    def once(i: int) -> None:
        nonlocal bodies
        image = images[i % len(images)]
        with instrumented(segmenter) as st:
            t0 = time.perf_counter()
            result = segment_bytes(
                segmenter, image.data, output=output, filename=f"{image.name}.png", max_pixels=max_pixels
            )
            total = time.perf_counter() - t0
        if i >= 0:
            s = dict(st.seconds)
            tiled = s.pop("tiled", 0.0)
            s["tiling"] = max(0.0, tiled - s.get("model", 0.0))
            s["other"] = max(0.0, total - sum(s.values()))
            s["total"] = total
            per_call.append(s)
            bodies += len(result.body)

    t0, cpu0 = time.perf_counter(), time.process_time()
    repeat(once, min_reps=min_reps, max_reps=max_reps, budget_s=budget_s, warmup=1)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    totals = np.array([c["total"] for c in per_call])
    mean_total = float(totals.mean())
    stages = {}
    for stage in STAGES:
        values = np.array([c.get(stage, 0.0) for c in per_call])
        stages[stage] = {
            "median_ms": round(float(np.median(values)) * 1e3, 3),
            "mean_ms": round(float(values.mean()) * 1e3, 3),
            "share": round(float(values.mean()) / mean_total, 4),
        }
    megapixels = float(np.mean([images[i % len(images)].megapixels for i in range(len(per_call))]))
    return {
        **summarize(list(totals)),
        "images_per_s": round(1.0 / mean_total, 3),
        "megapixels_per_s": round(megapixels / mean_total, 3),
        "wall_s": round(wall, 2),
        # All threads of this process (onnxruntime's included), per call, warm-up counted.
        "cpu_ms_per_image": round(1000 * cpu / (len(per_call) + 1), 2),
        "stages": stages,
        "pre_post_encode_share": round(1.0 - stages["model"]["share"], 4),
        "mean_body_bytes": int(bodies / max(1, len(per_call))),
        "output_format": output.value,
    }
