"""Overload and time limit (app/admission.py): a full queue is 503 with Retry-After while
/health stays fast, a stuck inference is 504 rather than a hang, and timed-out work keeps
its worker so threads stay bounded."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import anyio
import pytest

from app.admission import Admission, InferenceTimeout
from tests.conftest import GOOD, assert_serves, blocking_segment, make_client, post


def test_full_queue_is_503_with_retry_after_and_health_stays_fast(monkeypatch):
    release, started = threading.Event(), threading.Event()
    with make_client(queue_depth=1, inference_workers=1) as client, ThreadPoolExecutor(1) as pool:
        blocking_segment(monkeypatch, client, release, started)
        first = pool.submit(post, client, GOOD)
        assert started.wait(10)
        r = post(client, GOOD)
        assert r.status_code == 503
        assert int(r.headers["retry-after"]) >= 1 and "busy" in r.json()["detail"]
        t0 = time.perf_counter()
        assert client.get("/health").status_code == 200
        assert time.perf_counter() - t0 < 2  # milliseconds, unless the machine is starved
        assert 'segment_rejected_total{reason="queue_full"} 1.0' in client.get("/metrics").text
        release.set()
        assert first.result(10).status_code == 200
        assert_serves(client)


def test_slow_inference_is_504_not_a_hang(monkeypatch):
    release, started = threading.Event(), threading.Event()
    with make_client(request_timeout_s=0.3) as client:
        blocking_segment(monkeypatch, client, release, started)
        t0 = time.perf_counter()
        r = post(client, GOOD)
        assert r.status_code == 504 and "0.3 s limit" in r.json()["detail"]
        assert time.perf_counter() - t0 < 8  # the stuck call would have held it 10 s
        release.set()
        monkeypatch.undo()
        assert_serves(client)


def test_timed_out_work_keeps_its_worker_so_threads_stay_bounded():
    """A timed-out thread cannot be killed; it must not free its slot for another one."""
    running, peak, lock, release = 0, 0, threading.Lock(), threading.Event()

    def work() -> None:  # held until every call has timed out, however fast the host
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        release.wait(10)
        with lock:
            running -= 1

    async def main() -> None:
        admission = Admission(depth=8, workers=1, timeout_s=0.05)
        for _ in range(4):
            with pytest.raises(InferenceTimeout):
                await admission.run(work)
        release.set()
        admission.executor.shutdown(wait=True)

    anyio.run(main)
    assert peak == 1
