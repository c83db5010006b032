"""The service end to end: `python -m app` (uvicorn) on loopback, driven by an httpx async
client. Start-up to /ready, latency and throughput at a given concurrency, and the server's
resident memory read from /proc (VmRSS now, VmHWM the peak)."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.images import ROOT, BenchImage
from bench.localserver import free_port, wait_until_ready
from bench.stats import summarize


def _proc_status(pid: int, field: str) -> float:
    """A memory field of /proc/<pid>/status in MB (0 when the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0.0


def _proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    """One `python -m app` process, started by us and stopped by us (by its own pid)."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **env, "HOST": "127.0.0.1", "PORT": str(self.port)}
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 60.0) -> float:
        """Seconds from spawning the process to the first 200 from /ready."""
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child writes to it until stop()
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app"], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        wait_until_ready(self.proc, self.url, self.log_path, timeout_s, poll_s=0.01)
        return time.perf_counter() - t0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def rss_mb(self) -> float:
        return _proc_status(self.pid, "VmRSS")

    def peak_rss_mb(self) -> float:
        return _proc_status(self.pid, "VmHWM")

    def cpu_s(self) -> float:
        return _proc_cpu_s(self.pid)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


async def _drive(
    server: Server, images: list[BenchImage], requests: int, concurrency: int, track_rss: bool
) -> dict[str, Any]:
    latencies: list[float] = []
    rss: list[float] = []
    statuses: Counter[str] = Counter()
    counter = itertools.count()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=server.url, timeout=600.0, limits=limits) as client:

        async def worker() -> None:
            while (i := next(counter)) < requests:
                image = images[i % len(images)]
                files = {"file": (f"{image.name}.png", image.data, "image/png")}
                t0 = time.perf_counter()
                try:
                    response = await client.post("/segment", files=files)
                    statuses[str(response.status_code)] += 1
                except httpx.HTTPError as exc:
                    statuses[type(exc).__name__] += 1
                latencies.append(time.perf_counter() - t0)
                if track_rss:
                    rss.append(server.rss_mb())

        t0, client_cpu0, server_cpu0 = time.perf_counter(), time.process_time(), server.cpu_s()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
        client_cpu, server_cpu = time.process_time() - client_cpu0, server.cpu_s() - server_cpu0
    megapixels = sum(images[i % len(images)].megapixels for i in range(requests))
    ok = statuses.get("200", 0)
    out = {
        "concurrency": concurrency,
        "requests": requests,
        "errors": requests - ok,
        "statuses": dict(statuses),
        "latency": summarize(latencies),
        "wall_s": round(wall, 3),
        "images_per_s": round(requests / wall, 3),
        "megapixels_per_s": round(megapixels / wall, 3),
        # Both processes share the machine's cores: what each burns per image bounds throughput.
        "server_cpu_ms_per_request": round(1000 * server_cpu / requests, 2),
        "client_cpu_ms_per_request": round(1000 * client_cpu / requests, 2),
    }
    if track_rss:
        out["rss_mb"] = rss
    return out


def load(
    server: Server, images: list[BenchImage], requests: int, concurrency: int, track_rss: bool = False, warmup: int = 1
) -> dict[str, Any]:
    """`requests` POST /segment (format=png) with `concurrency` clients in flight."""
    if warmup:
        asyncio.run(_drive(server, images, warmup, 1, False))
    return asyncio.run(_drive(server, images, requests, concurrency, track_rss))


def leak_check(rss_mb: list[float], tolerance_mb: float) -> dict[str, Any]:
    """RSS over a soak: its level after the whole run, and its growth over the second half
    (median of the last 10% of samples minus the median of the 10% ending at half-way, and
    the fitted slope over the second half)."""
    n = len(rss_mb)
    if n < 20:
        return {"requests": n, "note": "too few requests for a leak check"}
    half, window = n // 2, max(5, n // 10)
    mid = float(np.median(rss_mb[half - window : half]))
    end = float(np.median(rss_mb[-window:]))
    slope = float(np.polyfit(np.arange(n - half), np.asarray(rss_mb[half:]), 1)[0])
    growth = end - mid
    return {
        "requests": n,
        "rss_at_half_mb": round(mid, 1),
        "rss_at_end_mb": round(end, 1),
        "rss_max_mb": round(max(rss_mb), 1),
        "growth_second_half_mb": round(growth, 2),
        "slope_kb_per_request": round(slope * 1024, 2),
        "tolerance_mb": round(tolerance_mb, 1),
        "no_growth": bool(growth <= tolerance_mb),
        "trace_every_10": [round(v, 1) for v in rss_mb[::10]],
    }
