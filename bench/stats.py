"""Timing loops bounded by repetitions and by seconds, and their summaries."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np


def summarize(seconds: list[float]) -> dict[str, Any]:
    """Median, p95, p99, mean, min, max in milliseconds, and the repetition count."""
    if not seconds:
        return {"n": 0}
    ms = np.asarray(seconds, dtype=np.float64) * 1e3
    return {
        "n": int(ms.size),
        "median_ms": round(float(np.median(ms)), 3),
        "p95_ms": round(float(np.percentile(ms, 95)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "mean_ms": round(float(ms.mean()), 3),
        "min_ms": round(float(ms.min()), 3),
        "max_ms": round(float(ms.max()), 3),
    }


def repeat(fn: Callable[[int], Any], *, min_reps: int, max_reps: int, budget_s: float, warmup: int = 1) -> list[float]:
    """Wall time of fn(i) per call: at least min_reps, at most max_reps, and no more calls
    once budget_s has passed (warm-up calls are not timed and not counted)."""
    for i in range(warmup):
        fn(-1 - i)
    times: list[float] = []
    start = time.perf_counter()
    for i in range(max_reps):
        t0 = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t0)
        if i + 1 >= min_reps and time.perf_counter() - start >= budget_s:
            break
    return times


class Clock:
    """Seconds since the run started, and what is left of its budget."""

    def __init__(self, budget_s: float) -> None:
        self.start = time.perf_counter()
        self.budget_s = budget_s

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    @property
    def left(self) -> float:
        return self.budget_s - self.elapsed
