"""Hostile input, overload and faults: each refusal is a 4xx (or 503/504) with a JSON detail a
person can act on, the next good request still succeeds, and start-up and shutdown behave as
an orchestrator expects (real `python -m app` processes on free loopback ports)."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import hmac
import io
import json
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anyio
import cv2
import httpx
import numpy as np
import pytest
import schemathesis
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.admission import Admission, InferenceTimeout
from app.config import Settings
from app.main import create_app
from bench.localserver import free_port, wait_until_ready
from nuclei.imageio import ImageError, UnsupportedImageError, decode_image
from nuclei.normalize import ChannelError, to_rgb
from tests.conftest import MODEL, ROOT, make_client, png_bytes, read_sample
from tests.payloads import bomb_png, deflated_tiff, hand_tiff, png_chunk, tiff
from tests.payloads import encode as encoded

# ---------------------------------------------------------------- inputs, built by hand


def crop(height: int = 40, width: int = 48) -> np.ndarray:
    """A small RGB piece of a real micrograph: quick to segment, has nuclei in it."""
    return read_sample("fluorescence_256x256")[1][:height, :width, :3].copy()


GOOD = png_bytes(crop())


def raw_png(image: np.ndarray, color_type: int) -> bytes:
    """PNG of any colour type, grey + alpha (4) included, which OpenCV cannot write."""
    depth = 16 if image.dtype == np.uint16 else 8
    rows = b"".join(b"\x00" + row.astype(">u2" if depth == 16 else np.uint8).tobytes() for row in image)
    ihdr = struct.pack(">IIBBBBB", image.shape[1], image.shape[0], depth, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(rows))
            + png_chunk(b"IEND", b""))


def animated_gif(frames: int = 2) -> bytes:
    """A 1×1 GIF89a with `frames` frames and a NETSCAPE loop block: an animation."""
    screen = b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0x80, 0, 0) + b"\xff\xff\xff\x00\x00\x00"
    loop = b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"
    delay = b"\x21\xf9\x04\x00\x0a\x00\x00\x00"  # graphic control: 0.1 s per frame
    frame = delay + b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    return screen + loop + frame * frames + b";"


def os2_bmp(image: np.ndarray) -> bytes:
    """A 24-bit BMP with the 12-byte OS/2 core header, whose sizes are 16-bit fields."""
    height, width = image.shape[:2]
    stride = (width * 3 + 3) // 4 * 4
    rows = b"".join(image[y, :, ::-1].tobytes().ljust(stride, b"\x00") for y in range(height - 1, -1, -1))
    return (b"BM" + struct.pack("<IHHI", 26 + len(rows), 0, 0, 26)
            + struct.pack("<IHHHH", 12, width, height, 1, 24) + rows)


def multipart(filename: bytes, data: bytes) -> tuple[bytes, dict[str, str]]:
    """A form body written by hand, for file names that httpx would escape."""
    body = (b'--b0undary\r\nContent-Disposition: form-data; name="file"; filename="' + filename
            + b'"\r\nContent-Type: image/png\r\n\r\n' + data + b"\r\n--b0undary--\r\n")
    return body, {"content-type": "multipart/form-data; boundary=b0undary"}


def upload(data: bytes, name: str = "x.png") -> dict[str, object]:
    return {"files": {"file": (name, data, "application/octet-stream")}}


def post(client, data: bytes, name: str = "x.png", **params: object) -> httpx.Response:
    return client.post("/segment", params=params, **upload(data, name))


def assert_serves(client) -> None:
    """The process is still healthy: a good image is segmented right after."""
    r = post(client, GOOD)
    assert r.status_code == 200, r.text
    assert cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_UNCHANGED).shape == (40, 48)


_rgb = crop(16, 16)
_png = png_bytes(_rgb)
_jpeg = encoded(".jpg", _rgb)
_tiff = tiff(_rgb, photometric="rgb")

# (id, keyword arguments of client.post, status, a fragment the detail must contain)
MALFORMED = [
    ("empty file", upload(b""), 400, "empty"),
    ("empty body", {}, 422, "file"),
    ("missing file field", {"data": {"image": "x"}}, 422, "file: Field required"),
    ("empty file name", upload(GOOD, ""), 422, "file"),
    ("not multipart", {"content": GOOD, "headers": {"content-type": "image/png"}}, 422, "file"),
    ("broken multipart", {"content": b"--x\r\n", "headers": {"content-type": "multipart/form-data"}},
     400, "boundary"),
    ("text named .png", upload(b"just some text, not pixels\n", "notes.png"), 415, "PNG, JPEG, TIFF or BMP"),
    ("unknown format (WebP)", upload(b"RIFF\x1a\x00\x00\x00WEBPVP8 " + b"\x00" * 16, "x.webp"), 415,
     "unrecognised file type"),
    ("truncated PNG", upload(_png[: len(_png) // 2]), 400, "truncated"),
    ("PNG signature only", upload(_png[:8]), 400, "PNG header"),
    ("truncated JPEG", upload(_jpeg[: len(_jpeg) // 2], "x.jpg"), 400, "truncated"),
    ("JPEG without frame header", upload(b"\xff\xd8\xff\xe0" + b"\x00" * 30, "x.jpg"), 400, "JPEG header"),
    ("truncated TIFF", upload(_tiff[: len(_tiff) // 2], "x.tif"), 400, "TIFF"),
    ("TIFF header only", upload(_tiff[:8], "x.tif"), 400, "TIFF header"),
    ("TIFF with a mistyped tag", upload(hand_tiff(4, 4, text_height=True), "x.tif"), 400, "TIFF header"),
    ("TIFF wider than OpenCV reads", upload(hand_tiff(2_000_000, 1), "x.tif"), 400, "TIFF data"),
    ("truncated BMP", upload(encoded(".bmp", _rgb)[:80], "x.bmp"), 400, "BMP"),
    ("zero-size PNG", upload(bomb_png(0, 5)), 400, "empty image"),
    ("PNG of 2 000 000×1", upload(bomb_png(2_000_000, 1)), 400, "PNG"),
    ("decompression bomb", upload(bomb_png(100_000, 100_000)), 413, "100000×100000"),
    ("animated GIF", upload(animated_gif(), "x.gif"), 415, "GIF is not supported"),
    ("5-channel TIFF", upload(tiff(np.zeros((8, 8, 5), np.uint8), photometric="minisblack",
                                   planarconfig="contig"), "x.tif"), 415, "5-channel"),
]


@pytest.mark.parametrize(("kwargs", "status", "fragment"), [m[1:] for m in MALFORMED],
                         ids=[m[0] for m in MALFORMED])
def test_malformed_upload_is_a_clear_4xx_and_service_goes_on(client, kwargs, status, fragment):
    r = client.post("/segment", **kwargs)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    assert fragment in r.json()["detail"]
    assert_serves(client)


@pytest.mark.parametrize("threshold", ["NaN", "-inf", "-1e-9", "1e308", "1e999", "2", "0.5x", ""])
def test_bad_threshold_is_422_and_service_goes_on(client, threshold):
    r = post(client, GOOD, threshold=threshold)
    assert r.status_code == 422
    assert r.json()["detail"].startswith("threshold: ")
    assert_serves(client)


def test_bad_format_and_unknown_route_and_method(client):
    assert post(client, GOOD, format="../../etc/passwd").status_code == 422
    assert client.get("/segment").status_code == 405
    assert client.post("/nowhere", content=b"x").json() == {"detail": "Not Found"}
    assert_serves(client)


def non_finite() -> np.ndarray:
    image = crop()[..., 0].astype(np.float32) / 255
    image[np.eye(40, 48) > 0] = np.nan
    image[-5:], image[:, :3] = np.inf, -np.inf
    return image


ACCEPTED = [
    ("1×1 grey PNG", png_bytes(np.array([[200]], np.uint8)), (1, 1)),
    ("1×1 float16 TIFF", tiff(np.ones((1, 1), np.float16)), (1, 1)),
    ("16-bit RGB PNG", png_bytes(crop().astype(np.uint16) * 257), (40, 48)),
    ("float32 TIFF with NaN and inf", tiff(non_finite()), (40, 48)),
    ("float64 TIFF, all NaN", tiff(np.full((9, 7), np.nan)), (9, 7)),
    ("2-channel grey + alpha PNG", raw_png(np.dstack([crop()[..., 0], np.full((40, 48), 255, np.uint8)]), 4),
     (40, 48)),
    ("2-channel TIFF", tiff(crop()[..., :2].copy(), photometric="minisblack", planarconfig="contig"), (40, 48)),
    ("4-channel RGBA PNG", png_bytes(np.dstack([crop(), np.full((40, 48), 255, np.uint8)])), (40, 48)),
    ("multi-page TIFF: first page", tiff(np.stack([crop()[..., 0]] * 3)), (40, 48)),
    ("bool TIFF", tiff(crop()[..., 0] > 100), (40, 48)),
    ("OS/2 BMP", os2_bmp(crop()), (40, 48)),
]


@pytest.mark.parametrize(("data", "shape"), [a[1:] for a in ACCEPTED], ids=[a[0] for a in ACCEPTED])
def test_unusual_but_valid_images_are_segmented(client, data, shape):
    r = post(client, data, name="x.tif")
    assert r.status_code == 200, r.text
    assert cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_UNCHANGED).shape == shape


def test_multipage_tiff_of_different_sizes_uses_the_first(client):
    buf = io.BytesIO()
    with tifffile.TiffWriter(buf) as tw:
        tw.write(crop(24, 20)[..., 0])
        tw.write(crop(40, 48)[..., 0])
    doc = post(client, buf.getvalue(), name="stack.tif", format="rle").json()
    assert (doc["height"], doc["width"]) == (24, 20)


NAMES = [
    ("../../etc/passwd.png", "passwd"),
    ("C:\\Users\\me\\Desktop\\slide 7.png", "slide_7"),
    ('say "cheese".png', None),  # httpx sends the quotes as %22
    ("line\nbreak\r\n.png", None),
    ("ünïcødé 名前.tif", "ünïcødé_名前"),
    ("comma,semi;colon.png", "comma_semi_colon"),
    ("=HYPERLINK(evil).png", "HYPERLINK_evil"),
    ("." * 3 + "/" + "a" * 400 + ".png", "a" * 128),
    ("\u202egnp.exe", "gnp"),
]


def assert_one_clean_field(r: httpx.Response, expected: str | None) -> str:
    assert r.status_code == 200, r.text
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0] == ["ImageId", "EncodedPixels"] and len(rows) > 1
    ids = {row[0] for row in rows[1:]}
    assert all(len(row) == 2 for row in rows) and len(ids) == 1
    (image_id,) = ids
    assert re.fullmatch(r"[\w.-]{1,128}", image_id) and not image_id.startswith(".")
    assert expected is None or image_id == expected
    disposition = r.headers["content-disposition"]  # latin-1 and one line, or httpx would not have it
    assert disposition.startswith('attachment; filename="') and "\n" not in disposition
    return image_id


@pytest.mark.parametrize(("name", "expected"), NAMES, ids=[repr(n[0])[:24] for n in NAMES])
def test_file_name_becomes_one_clean_csv_field(client, name, expected):
    # threshold=0 marks every pixel foreground, so there is a row whatever the model's quality
    image_id = assert_one_clean_field(post(client, GOOD, name=name, format="csv", threshold=0), expected)
    assert "/" not in image_id and "\\" not in image_id


@pytest.mark.parametrize("raw", [b'a\\"b.png', b"tab\there.png", b"semi;colon=1.png", b"\xff\xfe.png"])
def test_raw_file_names_from_other_clients(client, raw):
    body, headers = multipart(raw, GOOD)
    r = client.post("/segment", params={"format": "csv", "threshold": 0}, content=body, headers=headers)
    assert_one_clean_field(r, None)
    assert_serves(client)


def test_non_ascii_name_keeps_utf8_in_the_header(client):
    r = post(client, GOOD, name="名前.png", format="csv", threshold=0)
    assert "filename*=UTF-8''%E5%90%8D%E5%89%8D.csv" in r.headers["content-disposition"]


def test_tiff_samples_bomb_is_refused_before_decoding():
    """1024×1024 px passes MAX_PIXELS, but 64 samples each make 64 MB from a 64 kB file:
    refused from the header, so the decoder never allocates the array (numpy's allocations
    show in tracemalloc)."""
    data = deflated_tiff(1024, 1024, 64)
    assert len(data) < 100_000
    tracemalloc.start()
    try:
        with pytest.raises(UnsupportedImageError, match="64-channel"):
            decode_image(data, max_pixels=4096 * 4096)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20


# ---------------------------------------------------------------- fuzzing

SEEDS = [encoded(ext, crop(12, 17)) for ext in (".png", ".jpg", ".bmp")] + [
    tiff(crop(12, 17), photometric="rgb"), tiff(crop(12, 17), photometric="rgb", compression="zlib"),
    tiff(crop(12, 17)[..., 0].astype(np.float32)), tiff(np.stack([crop(12, 17)[..., 0]] * 2)),
    tiff(np.moveaxis(crop(12, 17), -1, 0), photometric="rgb", planarconfig="separate"),
]


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(seed=st.sampled_from(SEEDS),
       edits=st.lists(st.tuples(st.integers(0, 2**16), st.integers(0, 255)), max_size=8),
       cut=st.one_of(st.none(), st.integers(0, 2**16)))
def test_mangled_image_bytes_raise_only_image_errors(seed, edits, cut):
    """Bit-flipped or cut-off files: decoded, or refused with an ImageError (a 4xx), never a
    crash that would be a 500 (tifffile and OpenCV raise many other kinds on their own)."""
    data = bytearray(seed)
    for pos, value in edits:
        data[pos % len(data)] = value
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    with contextlib.suppress(ImageError, ChannelError):
        to_rgb(decode_image(bytes(data), max_pixels=4096 * 4096))


FUZZ_APP = create_app(Settings(model_path=MODEL, max_pixels=256 * 256, max_upload_bytes=256 * 1024))
SCHEMA = schemathesis.openapi.from_asgi("/openapi.json", FUZZ_APP)


@SCHEMA.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_openapi_fuzz_finds_no_server_error(case):
    """schemathesis, from the app's own schema: no 5xx, and responses match what it declares."""
    response = case.call()
    case.validate_response(response, checks=[
        not_a_server_error, status_code_conformance, content_type_conformance,
        response_headers_conformance, response_schema_conformance])


# ---------------------------------------------------------------- upload size, while it streams


def test_body_is_refused_once_past_the_limit_without_reading_the_rest():
    """The ASGI stream is abandoned at the first chunk past MAX_UPLOAD_BYTES."""
    app = create_app(Settings(model_path=MODEL, max_upload_bytes=10 * 1024))
    head = b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n\r\n'
    chunks = [head] + [b"\x00" * 1024] * 1000
    reads, sent = 0, []

    async def receive() -> dict[str, object]:
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": chunks[reads - 1], "more_body": reads < len(chunks)}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/segment", "raw_path": b"/segment", "query_string": b"",
             "root_path": "", "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
             "headers": [(b"content-type", b"multipart/form-data; boundary=b")]}
    anyio.run(app, scope, receive, send)
    assert sent[0]["status"] == 413
    assert reads <= 12  # 10 kB in 1 kB chunks, then stop: the other ~990 kB are never read


def test_declared_content_length_over_limit_is_413_at_once():
    with make_client(max_upload_bytes=4096) as client:
        r = post(client, b"\x89PNG" + b"\x00" * 8192)
        assert r.status_code == 413 and "4096 bytes" in r.json()["detail"]
        assert_serves(client)


# ---------------------------------------------------------------- API key and CORS


def test_api_key_guards_segment_and_model_only(monkeypatch):
    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr("app.deps.hmac.compare_digest", lambda a, b: calls.append(1) or real(a, b))
    with make_client(api_key="s3cret-key") as client:
        for auth in (None, "Bearer wrong", "Bearer s3cret-ke", "Basic czNjcmV0LWtleQ==", "s3cret-key",
                     "Bearer s3cret-key-and-more"):
            headers = {"authorization": auth} if auth else {}
            for r in (client.post("/segment", headers=headers, **upload(GOOD)),
                      client.get("/model", headers=headers)):
                assert r.status_code == 401, (auth, r.text)
                assert r.headers["www-authenticate"] == "Bearer"
                assert "API key" in r.json()["detail"]
        good = {"authorization": "Bearer s3cret-key"}
        assert client.post("/segment", headers=good, **upload(GOOD)).status_code == 200
        assert client.get("/model", headers=good).status_code == 200
        for path in ("/health", "/ready", "/metrics"):
            assert client.get(path).status_code == 200, path
    assert calls  # the key is compared in constant time


def test_no_api_key_configured_means_open(client):
    assert client.get("/model").status_code == 200


def test_cors_is_off_unless_configured():
    preflight = {"origin": "https://evil.example", "access-control-request-method": "POST"}
    client = make_client()  # lifespan not needed for these routes
    assert "access-control-allow-origin" not in client.get("/health", headers={"origin": "https://evil.example"}).headers
    assert client.options("/segment", headers=preflight).status_code == 405
    allowed = make_client(cors_origins=["https://lab.example"])
    r = allowed.options("/segment", headers={**preflight, "origin": "https://lab.example"})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://lab.example"
    assert "access-control-allow-origin" not in allowed.get("/health", headers=preflight).headers


# ---------------------------------------------------------------- overload and time limit


def blocking_segment(monkeypatch, client, release: threading.Event, started: threading.Event) -> None:
    segmenter = client.app.state.segmenter
    segment = segmenter.segment

    def slow(image, threshold=None):
        started.set()
        release.wait(10)
        return segment(image, threshold)

    monkeypatch.setattr(segmenter, "segment", slow)


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
    running, peak, lock = 0, 0, threading.Lock()

    def work() -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.3)
        with lock:
            running -= 1

    async def main() -> None:
        admission = Admission(depth=8, workers=1, timeout_s=0.05)
        for _ in range(4):
            with pytest.raises(InferenceTimeout):
                await admission.run(work)
        admission.executor.shutdown(wait=True)

    anyio.run(main)
    assert peak == 1


# ---------------------------------------------------------------- real processes: start-up and shutdown


def server_env(**settings: object) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    env.update(HOST="127.0.0.1", PORT=str(free_port()), LOG_LEVEL="warning")
    env.update({k.upper(): str(v) for k, v in settings.items()})
    return env


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


# `python -m app` with Segmenter.segment slowed down for anything bigger than the 64×64 warm-up,
# so a request is surely in flight when SIGTERM arrives.
SLOW_SERVER = """
import sys, time
from nuclei import segmenter
from app.__main__ import main

delay, segment = float(sys.argv[1]), segmenter.Segmenter.segment

def slow(self, image, threshold=None):
    if image.shape[0] > 64:
        time.sleep(delay)
    return segment(self, image, threshold)

segmenter.Segmenter.segment = slow
sys.exit(main())
"""


def start_server(log: Path, delay_s: float = 0.0, **settings: object) -> tuple[subprocess.Popen, str]:
    env = server_env(**settings)
    command = [sys.executable, "-c", SLOW_SERVER, str(delay_s)] if delay_s else [sys.executable, "-m", "app"]
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{env['PORT']}"
    wait_until_ready(proc, url, log, timeout_s=60, poll_s=0.1)
    return proc, url


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
    proc, url = start_server(tmp_path / "log", delay_s=1.5, shutdown_timeout_s=20, log_level="info")
    try:
        with ThreadPoolExecutor(1) as pool:
            busy = pool.submit(httpx.post, url + "/segment", params={"format": "rle"}, timeout=30,
                               trust_env=False, **upload(png_bytes(crop(96, 96))))
            deadline = time.monotonic() + 10
            while "http_requests_in_flight 2.0" not in httpx.get(url + "/metrics", trust_env=False).text:
                assert time.monotonic() < deadline, "the request never got in flight"
                time.sleep(0.02)
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            with pytest.raises(httpx.ConnectError):  # no longer accepting
                httpx.get(url + "/health", timeout=2, trust_env=False)
            response = busy.result(30)
        assert response.status_code == 200 and response.json()["width"] == 96
        # uvicorn re-raises the signal once it has shut down, so the status is "killed by
        # SIGTERM" (143 in a shell), as for any process that honours it
        assert proc.wait(15) == -signal.SIGTERM
    finally:
        stop(proc)
    log = (tmp_path / "log").read_text()
    assert "Waiting for connections to close" in log and "Application shutdown complete" in log, log
    assert "Traceback" not in log and "Cancel" not in log, log
