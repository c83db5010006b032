"""Real `python -m app` processes on free loopback ports: start-up fails fast in one line on a
bad model or setting, uploads past the limit are refused on the wire, and SIGTERM drains
in-flight requests before a clean exit, as an orchestrator expects."""

from __future__ import annotations

import hashlib
import json
import re
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from bench.server import free_port, start
from bench.server import server_env as bench_server_env
from tests.conftest import GOOD, MODEL, ROOT, crop, png_bytes, upload


def server_env(**settings: object) -> dict[str, str]:
    """The environment of a `python -m app` run to completion (start-up failures)."""
    return bench_server_env({"host": "127.0.0.1", "port": free_port(), "log_level": "warning", **settings})


@pytest.mark.parametrize("damage", ["missing", "bytes changed", "not ONNX, card agrees"])
def test_bad_model_file_fails_start_up_fast_naming_it(tmp_path, damage):
    model = tmp_path / "models" / "nuclei-unet.onnx"
    model.parent.mkdir()
    if damage != "missing":
        model.write_bytes(MODEL.read_bytes()[:-64] + b"\x00" * 64)
        card = json.loads(MODEL.with_suffix(".json").read_text())
        if damage == "not ONNX, card agrees":
            model.write_bytes(b"this is not a protobuf" * 50)
            card["sha256"] = hashlib.sha256(model.read_bytes()).hexdigest()
        model.with_suffix(".json").write_text(json.dumps(card))
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "app"], cwd=ROOT, env=server_env(model_path=model),
                          capture_output=True, text=True, timeout=30)
    # a missing file is caught before the heavy imports (~0.2 s); a corrupt one once loaded (~0.6 s)
    assert time.perf_counter() - t0 < (5 if damage == "missing" else 20)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(model) in lines[0], proc.stderr


def test_bad_setting_fails_start_up_in_one_line():
    proc = subprocess.run([sys.executable, "-m", "app"], cwd=ROOT, env=server_env(queue_depth=0),
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0
    assert proc.stderr.strip() == "error: QUEUE_DEPTH: Input should be greater than or equal to 1"


# `python -m app` whose Segmenter holds anything bigger than the 64×64 warm-up until the file
# argv[1] exists, so a request is in flight for as long as the test wants, on any machine.
HOLDING_SERVER = """
import os, sys, time
from nuclei import segmenter
from app.__main__ import main

release, segment = sys.argv[1], segmenter.Segmenter.segment_sized

def held(self, image, *args, **kwargs):
    while image.shape[0] > 64 and not os.path.exists(release):
        time.sleep(0.01)
    return segment(self, image, *args, **kwargs)

segmenter.Segmenter.segment_sized = held
sys.exit(main())
"""


def start_server(log: Path, release: Path | None = None, **settings: object) -> tuple[subprocess.Popen, str]:
    """A server; with `release`, one that holds each image until that file exists."""
    command = [sys.executable, "-c", HOLDING_SERVER, str(release)] if release else None
    server = start({"log_level": "warning", **settings}, command=command, log_path=log, timeout_s=60, poll_s=0.1)
    return server.proc, server.url


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


@pytest.fixture(scope="module")
def small_upload_server(tmp_path_factory) -> Iterator[str]:
    proc, url = start_server(tmp_path_factory.mktemp("server") / "log", max_upload_bytes=2**20)
    yield url
    stop(proc)


def read_reply(sock: socket.socket) -> bytes:
    """One HTTP/1.1 response with a Content-Length, read off a raw socket."""
    reply = b""
    while b"\r\n\r\n" not in reply or len(reply.split(b"\r\n\r\n", 1)[1]) < int(
            re.search(rb"content-length: (\d+)", reply, re.I).group(1)):
        part = sock.recv(65536)
        if not part:
            break
        reply += part
    return reply


def test_streamed_upload_gets_413_while_still_streaming(small_upload_server):
    """Chunked, no Content-Length: the 413 comes back while the client is still sending."""
    port = int(small_upload_server.rsplit(":", 1)[1])
    limit, chunk = 2**20, b"\x00" * 65536
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /segment HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
                     b"Content-Type: multipart/form-data; boundary=b\r\n\r\n")
        head = b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n\r\n'
        sock.sendall(b"%x\r\n%s\r\n" % (len(head), head))
        while sent < 32 * limit and not select.select([sock], [], [], 0.005)[0]:
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        reply = read_reply(sock)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert limit <= sent < 8 * limit  # refused soon after the limit, long before the 32 MiB end
    assert httpx.post(small_upload_server + "/segment", trust_env=False, timeout=30,
                      **upload(GOOD)).status_code == 200


def test_huge_declared_upload_is_refused_before_any_body(small_upload_server):
    port = int(small_upload_server.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /segment HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10000000000\r\n"
                     b"Content-Type: multipart/form-data; boundary=b\r\n\r\n")
        reply = read_reply(sock)
    assert reply.startswith(b"HTTP/1.1 413") and b"upload larger than the limit" in reply


def test_sigterm_drains_in_flight_requests_then_exits_cleanly(tmp_path):
    release = tmp_path / "release"
    proc, url = start_server(tmp_path / "log", release, shutdown_timeout_s=60, log_level="info")
    try:
        with ThreadPoolExecutor(1) as pool:
            busy = pool.submit(httpx.post, url + "/segment", params={"format": "rle"}, timeout=30,
                               trust_env=False, **upload(png_bytes(crop(96, 96))))
            deadline = time.monotonic() + 10
            while "http_requests_in_flight 2.0" not in httpx.get(url + "/metrics", trust_env=False).text:
                assert time.monotonic() < deadline, "the request never got in flight"
                time.sleep(0.02)
            proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 10
            while True:  # until new connections are refused: polled, not a guess at how long it takes
                try:
                    httpx.get(url + "/health", timeout=2, trust_env=False)
                except httpx.ConnectError:
                    break
                assert time.monotonic() < deadline, "still accepting connections 10 s after SIGTERM"
                time.sleep(0.02)
            while "Waiting for connections to close" not in (tmp_path / "log").read_text():
                assert time.monotonic() < deadline, "the server does not wait for the request in flight"
                time.sleep(0.02)
            assert not busy.done(), "refused while the held request is still in flight"
            release.touch()
            try:
                response = busy.result(30)
            except httpx.HTTPError as exc:  # the server's own account, for a failure seen only under load
                raise AssertionError(f"{exc!r}; server log:\n{(tmp_path / 'log').read_text()}") from exc
        assert response.status_code == 200 and response.json()["width"] == 96
        # uvicorn re-raises the signal once it has shut down, so the status is "killed by
        # SIGTERM" (143 in a shell), as for any process that honours it
        assert proc.wait(15) == -signal.SIGTERM
    finally:
        stop(proc)
    log = (tmp_path / "log").read_text()
    assert "Waiting for connections to close" in log and "Application shutdown complete" in log, log
    assert "Traceback" not in log and "Cancel" not in log, log
