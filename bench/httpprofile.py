"""Where the service's time goes while it answers HTTP requests: py-spy samples the running
server from outside while the benchmark drives it, and each sample goes into one bucket,
chosen by the innermost frame that belongs to a stage of ours or to a library we know.

onnxruntime's profiler sees only `session.run`; this shows the rest of a request (HTTP
parsing, multipart, routing, the thread hand-off, telemetry) next to it, on the same scale.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

# (bucket, path fragments); a frame matches when its file path contains a fragment.
BUCKETS: list[tuple[str, tuple[str, ...]]] = [
    ("model (onnxruntime session.run)", ("onnxruntime",)),
    ("decode", ("app/codec.py",)),
    ("normalise", ("app/normalize.py",)),
    ("tiling", ("app/tiling.py",)),
    ("post-process", ("app/postprocess.py",)),
    ("encode", ("app/formats.py", "app/rle.py")),
    ("multipart parsing", ("multipart/", "formparsers.py")),
    ("telemetry + logging", ("app/telemetry.py", "/logging/", "prometheus_client")),
    ("HTTP protocol (uvicorn, h11, httptools)", ("uvicorn/", "/h11/", "httptools")),
    ("FastAPI + Starlette (routing, validation, responses)", ("fastapi/", "starlette/", "pydantic")),
    ("event loop + thread hand-off", ("asyncio/", "uvloop", "selectors.py", "concurrent/futures", "threading.py")),
]
OTHER = "other"


def available() -> str | None:
    """py-spy from this interpreter's environment (the dev extra), else from PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.is_file() else shutil.which("py-spy")


def bucket_of(stack: list[str]) -> str:
    """stack: frames root → leaf, each 'function (path:line)'."""
    for frame in reversed(stack):
        for name, fragments in BUCKETS:
            if any(f in frame for f in fragments):
                return name
    return OTHER


def parse_raw(text: str) -> Counter[str]:
    """py-spy's raw (collapsed-stack) output → samples per bucket."""
    counts: Counter[str] = Counter()
    for line in text.splitlines():
        stack, _, n = line.rpartition(" ")
        if stack and n.isdigit():
            counts[bucket_of(stack.split(";"))] += int(n)
    return counts


def profile(pid: int, drive: Callable[[], dict[str, Any]], out: Path, rate: int = 250) -> dict[str, Any]:
    """Sample process `pid` while drive() runs; samples per bucket, and the same as
    milliseconds per request (samples ÷ rate ÷ requests; only threads doing work count)."""
    exe = available()
    if exe is None:
        return {"note": "py-spy not installed"}
    recorder = subprocess.Popen(
        [exe, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw", "--nonblocking",
         "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    time.sleep(0.5)  # attached before the first request
    if recorder.poll() is not None:
        return {"note": f"py-spy could not attach: {recorder.stderr.read().decode().strip()[:200]}"}
    try:
        run = drive()
    finally:
        recorder.send_signal(signal.SIGINT)
        try:
            recorder.wait(timeout=30)
        except subprocess.TimeoutExpired:
            recorder.kill()
            recorder.wait()
    if not out.is_file():
        return {"note": "py-spy wrote no profile"}
    counts = parse_raw(out.read_text())
    total = sum(counts.values()) or 1
    requests = run["requests"]
    return {
        "rate_hz": rate,
        "requests": requests,
        "concurrency": run["concurrency"],
        "samples": total,
        "run": {k: run[k] for k in ("latency", "images_per_s", "server_cpu_ms_per_request",
                                    "client_cpu_ms_per_request") if k in run},
        "buckets": [
            {"bucket": name, "samples": n, "share": round(n / total, 4),
             "ms_per_request": round(1000 * n / rate / requests, 3)}
            for name, n in counts.most_common()
        ],
        "py_spy": os.path.basename(exe),
    }
