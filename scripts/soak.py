"""`make soak`: hostile input and overload against a real `python -m app` process, on loopback.

    python -m scripts.soak [--requests 2000] [--concurrency 16] [--bombs-only]   (from the repository root)

1. Starts `python -m app` on a free 127.0.0.1 port and waits for /ready (`bench.server`).
2. Bombs: resets the server's peak RSS (VmHWM), posts images whose headers claim up to 10^10
   pixels and a chunked upload far over MAX_UPLOAD_BYTES, and compares the peak with idle RSS.
3. Load: `--requests` mixed good and bad requests from `--concurrency` clients at once, while a
   probe thread times GET /health every 50 ms. Every request has a time limit and the loop
   ends by itself after the last one (or at `--max-seconds`).
4. RSS after the load, one more good request, SIGTERM, exit status.

Prints a report and exits 1 when a criterion fails: a 5xx other than 503, a 503 without
Retry-After, a status other than the expected one, a transport error, health p99 ≥ 1 s,
RSS growth ≥ 10 %, bomb peak ≥ idle + 100 MB, or an unclean shutdown.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import select
import signal
import socket
import statistics
import struct
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np

from bench import proc
from bench.server import ROOT, serve
from tests.payloads import bomb_png, encode, tiff  # the hostile payloads live beside the tests that use them
from tests.payloads import deflated_tiff as bomb_samples_tiff
from tests.payloads import hand_tiff as bomb_tiff

SAMPLES = sorted((ROOT / "samples").glob("*.png"))
MB = 2**20
MAX_UPLOAD = 4 * MB  # the server's MAX_UPLOAD_BYTES here, so oversized uploads stay cheap to send


# ---------------------------------------------------------------- payloads


def bomb_jpeg(width: int, height: int) -> bytes:
    """A real JPEG whose SOF0 marker is rewritten to claim width × height."""
    data = bytearray(encode(".jpg", np.zeros((16, 16), np.uint8)))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def bomb_bmp(width: int, height: int) -> bytes:
    header = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 0, 0, 0, 0)
    return b"BM" + struct.pack("<IHHI", 54 + 64, 0, 0, 54) + header + b"\x00" * 64


def animated_gif() -> bytes:
    screen = b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0x80, 0, 0) + b"\xff\xff\xff\x00\x00\x00"
    frame = b"\x21\xf9\x04\x00\x0a\x00\x00\x00\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    return screen + b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00" + frame * 2 + b";"


@dataclass
class Kind:
    """One sort of request: how to build it and the statuses it may get."""

    name: str
    weight: float
    expected: frozenset[int]
    build: Callable[[random.Random], dict[str, Any]]  # the arguments of httpx's request()


def sample_crops(rng: random.Random, count: int) -> list[np.ndarray]:
    images = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in SAMPLES]
    crops = []
    for _ in range(count):
        image = rng.choice(images)
        h, w = rng.randint(48, 224), rng.randint(48, 224)
        y, x = rng.randint(0, image.shape[0] - h), rng.randint(0, image.shape[1] - w)
        crops.append(image[y : y + h, x : x + w].copy())
    return crops


def request_kinds(rng: random.Random) -> list[Kind]:
    crops = sample_crops(rng, 24)
    pngs = [encode(".png", c) for c in crops]
    jpegs = [encode(".jpg", c) for c in crops[:8]]
    tiffs16 = [tiff(cv2.cvtColor(c, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257) for c in crops[8:16]]
    first = pngs[0]
    samples_bomb = bomb_samples_tiff(256, 256, 64)
    oversized = b"\x89PNG\r\n\x1a\n" + bytes(MAX_UPLOAD + 1024)  # one copy, shared by every request
    busy = {200, 503}  # 503: the queue is full (concurrency 16 > QUEUE_DEPTH 8); bad images too

    def file(data: bytes, name: str = "image.png") -> dict[str, object]:
        return {"files": {"file": (name, data, "application/octet-stream")}}

    def segment(body: dict[str, object], **params: object) -> dict[str, object]:
        return {"method": "POST", "url": "/segment", "params": params, **body}

    fmt = ("png", "labels", "rle", "csv")
    return [
        Kind("good png", 30, frozenset(busy), lambda r: segment(file(r.choice(pngs)), format=r.choice(fmt))),
        Kind("good jpeg", 6, frozenset(busy), lambda r: segment(file(r.choice(jpegs), "x.jpg"), format="rle")),
        Kind("good 16-bit tiff", 6, frozenset(busy), lambda r: segment(file(r.choice(tiffs16), "x.tif"))),
        Kind("good, odd file name", 4, frozenset(busy), lambda r: segment(
            file(first, r.choice(['../../etc/pass"wd.png', "C:\\x\\名前 1.png", "a\nb.png", "=cmd|x.png"])),
            format="csv", threshold=0.5)),
        Kind("model card", 3, frozenset({200}), lambda r: {"method": "GET", "url": "/model"}),
        Kind("empty file", 4, frozenset({400, 503}), lambda r: segment(file(b""))),
        Kind("text named .png", 4, frozenset({415, 503}), lambda r: segment(file(b"not an image\n" * 20))),
        Kind("truncated png", 4, frozenset({400, 503}), lambda r: segment(file(r.choice(pngs)[:300]))),
        Kind("truncated jpeg", 3, frozenset({400, 503}), lambda r: segment(file(r.choice(jpegs)[:400], "x.jpg"))),
        Kind("truncated tiff", 3, frozenset({400, 503}), lambda r: segment(file(r.choice(tiffs16)[:200], "x.tif"))),
        Kind("zero-size png", 2, frozenset({400, 503}), lambda r: segment(file(bomb_png(0, 7)))),
        Kind("bomb png", 4, frozenset({413, 503}), lambda r: segment(file(bomb_png(100_000, 100_000)))),
        Kind("bomb tiff", 2, frozenset({413, 503}), lambda r: segment(file(bomb_tiff(90_000, 90_000), "x.tif"))),
        Kind("tiff samples bomb", 2, frozenset({415, 503}), lambda r: segment(file(samples_bomb, "x.tif"))),
        Kind("animated gif", 2, frozenset({415, 503}), lambda r: segment(file(animated_gif(), "x.gif"))),
        Kind("5-channel tiff", 2, frozenset({415, 503}), lambda r: segment(
            file(tiff(np.zeros((9, 9, 5), np.uint8), photometric="minisblack", planarconfig="contig"), "x.tif"))),
        Kind("missing file field", 3, frozenset({422}), lambda r: segment({"data": {"image": "x"}})),
        Kind("bad threshold", 3, frozenset({422}), lambda r: segment(
            file(first), threshold=r.choice(["nan", "-1", "1e999", "7"]))),
        Kind("bad format", 2, frozenset({422}), lambda r: segment(file(first), format="gif")),
        Kind("over MAX_UPLOAD_BYTES", 2, frozenset({413}), lambda r: segment(file(oversized))),
        Kind("unknown route", 2, frozenset({404}), lambda r: {"method": "GET", "url": "/admin"}),
        Kind("wrong method", 1, frozenset({405}), lambda r: {"method": "DELETE", "url": "/segment"}),
    ]


# ---------------------------------------------------------------- bombs: peak RSS vs idle


def chunked_upload(url: str, total: int) -> tuple[int, int]:
    """Stream `total` bytes as a chunked multipart upload on a raw socket; (status, bytes sent)
    when the server answers mid-stream (httpx would only read the answer after the last byte)."""
    host, port = url.removeprefix("http://").split(":")
    chunk, sent, reply = b"\x00" * 65536, 0, b""
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(b"POST /segment HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
                     b"Content-Type: multipart/form-data; boundary=b\r\n\r\n")
        head = b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n\r\n'
        sock.sendall(b"%x\r\n%s\r\n" % (len(head), head))
        while sent < total and not select.select([sock], [], [], 0.002)[0]:
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except OSError:
                break
            sent += len(chunk)
        while b"\r\n" not in reply:
            part = sock.recv(4096)
            if not part:
                break
            reply += part
    status = int(reply.split()[1]) if reply.startswith(b"HTTP/") else 0
    return status, sent


def bomb_phase(url: str, pid: int, report: Report) -> None:
    idle = proc.rss_mb(pid)
    report.line(f"bombs: idle RSS {idle:.1f} MB (VmHWM since start {proc.peak_rss_mb(pid):.1f} MB)")
    peak_was_reset = proc.reset_peak(pid)
    bombs = {
        "PNG 100000×100000 grey": bomb_png(100_000, 100_000),
        "PNG 60000×60000 grey": bomb_png(60_000, 60_000),
        "TIFF 90000×90000": bomb_tiff(90_000, 90_000),
        "JPEG 65535×65535": bomb_jpeg(65_535, 65_535),
        "BMP 50000×50000 RGB": bomb_bmp(50_000, 50_000),
        "TIFF 1024×1024×128 deflated": bomb_samples_tiff(1024, 1024, 128),
    }
    with httpx.Client(base_url=url, timeout=60, trust_env=False) as client:
        for name, data in bombs.items():
            want = 415 if "deflated" in name else 413  # too many samples per pixel: 415
            statuses = Counter(client.post("/segment", files={"file": ("bomb", data)}).status_code
                               for _ in range(5))
            ok = set(statuses) == {want}
            report.check(ok, f"  {name:28s} {len(data) / 1024:6.1f} kB file, "
                             f"{dict(statuses)} (want {want})")
    status, sent = chunked_upload(url, 64 * MB)
    report.check(status == 413 and sent < 4 * MAX_UPLOAD,
                 f"  chunked upload of 64 MB      refused with {status} after {sent / MB:.1f} MB sent "
                 f"(MAX_UPLOAD_BYTES {MAX_UPLOAD / MB:.0f} MB)")
    peak = proc.peak_rss_mb(pid)
    what = "peak RSS during bombs" if peak_was_reset else "VmHWM since start (clear_refs refused)"
    report.check(peak - idle < 100,
                 f"bombs: {what} {peak:.1f} MB = idle + {peak - idle:.1f} MB (limit +100 MB)")


# ---------------------------------------------------------------- load


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def line(self, text: str) -> None:
        print(text, flush=True)
        self.lines.append(text)

    def check(self, ok: bool, text: str) -> None:
        self.line(("  ok  " if ok else "  FAIL ") + text)
        if not ok:
            self.failures.append(text)


class HealthProbe(threading.Thread):
    """GET /health every `interval` s on its own connection until stopped; latencies in s."""

    def __init__(self, url: str, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.url, self.interval = url, interval
        self.latencies: list[float] = []
        self.failures = 0
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10, trust_env=False) as client:
            while not self.stop.is_set():
                start = time.perf_counter()
                try:
                    ok = client.get("/health").status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.latencies.append(time.perf_counter() - start)
                self.failures += not ok
                self.stop.wait(self.interval)


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


async def load(url: str, plan: list[tuple[Kind, dict[str, Any]]], concurrency: int, max_seconds: float
               ) -> tuple[dict[str, Counter], Counter, int, list[str]]:
    by_kind: dict[str, Counter] = defaultdict(Counter)
    statuses: Counter = Counter()
    problems: list[str] = []
    missing_retry_after = 0
    next_index = 0
    deadline = time.monotonic() + max_seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits, trust_env=False) as client:

        async def worker() -> None:
            nonlocal next_index, missing_retry_after
            while next_index < len(plan) and time.monotonic() < deadline:
                kind, request = plan[next_index]
                next_index += 1
                try:
                    response = await client.request(**request)
                    status = response.status_code
                    if status == 503 and "retry-after" not in response.headers:
                        missing_retry_after += 1
                    if status >= 400 and not response.headers.get("content-type", "").startswith(
                            "application/json"):
                        problems.append(f"{kind.name}: {status} without a JSON body")
                except httpx.HTTPError as exc:
                    status = 0
                    problems.append(f"{kind.name}: {type(exc).__name__} {exc}")
                by_kind[kind.name][status] += 1
                statuses[status] += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return by_kind, statuses, missing_retry_after, problems


def load_phase(url: str, pid: int, args: argparse.Namespace, report: Report) -> None:
    rng = random.Random(args.seed)
    kinds = request_kinds(rng)
    weights = [k.weight for k in kinds]
    plan = []
    for _ in range(args.requests):
        kind = rng.choices(kinds, weights)[0]
        plan.append((kind, kind.build(rng)))
    with httpx.Client(base_url=url, timeout=60, trust_env=False) as client:  # warm every code path once
        for _kind, request in plan[:40]:
            client.request(**request)
    time.sleep(1)
    before = proc.rss_mb(pid)
    probe = HealthProbe(url)
    probe.start()
    start = time.perf_counter()
    by_kind, statuses, missing_retry_after, problems = asyncio.run(
        load(url, plan, args.concurrency, args.max_seconds))
    elapsed = time.perf_counter() - start
    probe.stop.set()
    probe.join(15)
    time.sleep(2)
    after = proc.rss_mb(pid)

    done = sum(statuses.values())
    report.line(f"load: {done} requests in {elapsed:.1f} s ({done / elapsed:.1f}/s) "
                f"from {args.concurrency} concurrent clients")
    report.line("  by status: " + ", ".join(f"{s}: {n}" for s, n in sorted(statuses.items())))
    unexpected = 0
    for kind in kinds:
        counts = by_kind.get(kind.name, Counter())
        wrong = sum(n for s, n in counts.items() if s not in kind.expected)
        unexpected += wrong
        report.line(f"    {kind.name:24s} " + ", ".join(f"{s}: {n}" for s, n in sorted(counts.items()))
                    + (f"   <- {wrong} unexpected (want {sorted(kind.expected)})" if wrong else ""))
    for problem in problems[:10]:
        report.line(f"    ! {problem}")
    server_errors = sum(n for s, n in statuses.items() if s >= 500 and s != 503)
    good = sum(by_kind[k.name][200] for k in kinds if k.name.startswith("good"))
    report.check(done >= args.requests, f"all {args.requests} requests sent ({done})")
    report.check(server_errors == 0, f"5xx other than 503: {server_errors}")
    report.check(statuses.get(0, 0) == 0, f"transport errors and client timeouts: {statuses.get(0, 0)}")
    report.check(missing_retry_after == 0, f"503 without Retry-After: {missing_retry_after} of {statuses[503]}")
    report.check(unexpected == 0, f"statuses other than expected: {unexpected}")
    report.check(not problems, f"error responses without a JSON body: {len(problems)}")
    report.check(good > 0, f"good images segmented (200): {good}")
    lat = probe.latencies
    p99 = percentile(lat, 99) if lat else float("inf")
    report.check(p99 < 1 and probe.failures == 0,
                 f"/health under load: {len(lat)} probes, p50 {percentile(lat, 50) * 1000:.0f} ms, "
                 f"p99 {p99 * 1000:.0f} ms, max {max(lat) * 1000:.0f} ms, failures {probe.failures} "
                 "(p99 limit 1000 ms)")
    growth = (after - before) / before
    report.check(growth < 0.10, f"RSS before {before:.1f} MB, after {after:.1f} MB: "
                                f"{growth * 100:+.1f} % (limit +10 %)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-seconds", type=float, default=900, help="stop sending after this long")
    parser.add_argument("--bombs-only", action="store_true", help="only the peak-RSS check of the bombs")
    args = parser.parse_args()

    report = Report()
    env = {"LOG_LEVEL": "warning", "MAX_UPLOAD_BYTES": MAX_UPLOAD, "SHUTDOWN_TIMEOUT_S": 30}
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "server.log"
        try:
            with serve(env, log_path=log, timeout_s=120, poll_s=0.2) as server:
                report.line(f"server: python -m app, pid {server.pid}, {server.url}")
                bomb_phase(server.url, server.pid, report)
                if not args.bombs_only:
                    load_phase(server.url, server.pid, args, report)
                with httpx.Client(base_url=server.url, timeout=60, trust_env=False) as client:
                    last = client.post("/segment", files={"file": ("x.png", SAMPLES[0].read_bytes())})
                report.check(last.status_code == 200, f"a good request after the load: {last.status_code}")
                code = server.stop(timeout_s=40)
                report.check(code in (0, -signal.SIGTERM), f"SIGTERM: server exited with {code} "
                                                           "(uvicorn re-raises the signal after shutdown: -15; "
                                                           "-9: killed after 40 s)")
        except RuntimeError as exc:  # not ready: the server's log is in the message
            raise SystemExit(str(exc)) from None
        server_log = log.read_text(errors="replace")
        if "Traceback" in server_log:
            report.check(False, "server log has a traceback:\n" + server_log[-3000:])
    verdict = "PASS" if not report.failures else f"FAIL ({len(report.failures)} criteria)"
    report.line(f"soak: {verdict}")
    return 0 if not report.failures else 1


if __name__ == "__main__":
    sys.exit(main())
