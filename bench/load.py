"""The service over HTTP: a `bench.server` process driven by an httpx async client on the
same machine. Latency and throughput at a given concurrency, start-up to /ready, and the
server's resident memory over a soak, read from /proc by `bench.proc`."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import numpy as np

from bench import proc
from bench.images import Image
from bench.inprocess import summary
from bench.server import Server, serve


async def _drive(url: str, image: Image, requests: int, concurrency: int, deadline_s: float,
                 after_each: Callable[[], None]) -> tuple[list[float], int, float]:
    """POST /segment (format=png) from `concurrency` clients until `requests` are sent or
    `deadline_s` has passed; (latencies in s, errors, wall s)."""
    latencies: list[float] = []
    errors = 0
    counter = itertools.count()
    files = {"file": (f"{image.name}.png", image.data, "image/png")}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=600.0, limits=limits, trust_env=False) as client:
        start = time.perf_counter()

        async def worker() -> None:
            nonlocal errors
            while next(counter) < requests and time.perf_counter() - start < deadline_s:
                t0 = time.perf_counter()
                try:
                    errors += (await client.post("/segment", files=files)).status_code != 200
                except httpx.HTTPError:
                    errors += 1
                latencies.append(time.perf_counter() - t0)
                after_each()

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return latencies, errors, time.perf_counter() - start


def http_load(server: Server, image: Image, requests: int, concurrency: int, deadline_s: float) -> dict[str, Any]:
    """Latency p50/p95, images and megapixels per second, and the server's CPU per image."""
    asyncio.run(_drive(server.url, image, 1, 1, deadline_s, lambda: None))  # warm-up
    cpu0 = proc.cpu_s(server.pid)
    latencies, errors, wall = asyncio.run(_drive(server.url, image, requests, concurrency, deadline_s, lambda: None))
    done = len(latencies)
    return {"size": image.key, "concurrency": concurrency, "requests": done, "errors": errors, **summary(latencies),
            "images_per_s": round(done / wall, 3), "megapixels_per_s": round(done * image.megapixels / wall, 3),
            "server_cpu_ms_per_image": round(1e3 * (proc.cpu_s(server.pid) - cpu0) / done, 1)}


def soak(server: Server, image: Image, requests: int, concurrency: int, deadline_s: float) -> dict[str, Any]:
    """Server RSS after every response; its slope over the last half, in MB per 100 requests,
    is what a leak would show as (the first half includes the allocator's warming up)."""
    rss: list[float] = []
    latencies, errors, wall = asyncio.run(_drive(
        server.url, image, requests, concurrency, deadline_s, lambda: rss.append(proc.rss_mb(server.pid))))
    half = rss[len(rss) // 2:]
    slope = float(np.polyfit(np.arange(len(half)), half, 1)[0]) * 100 if len(half) >= 3 else float("nan")
    return {"size": image.key, "concurrency": concurrency, "requests": len(latencies), "errors": errors,
            "wall_s": round(wall, 1), "rss_first_mb": round(rss[0], 1), "rss_last_mb": round(rss[-1], 1),
            "peak_rss_mb": round(proc.peak_rss_mb(server.pid, children=True), 1),
            "slope_mb_per_100_requests": round(slope, 2)}


def startup(env: Mapping[str, object], runs: int) -> dict[str, Any]:
    """Process start → first 200 from /ready (imports, model load, warm-up), `runs` fresh starts."""
    seconds = []
    for _ in range(runs):
        with serve(env) as server:
            seconds.append(server.ready_s)
            idle = proc.rss_mb(server.pid, children=True)
    return {"runs": [round(s, 2) for s in seconds], "median_s": round(float(np.median(seconds)), 2),
            "idle_rss_mb": round(idle, 1)}
