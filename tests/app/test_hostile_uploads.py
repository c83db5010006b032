"""Hostile and unusual uploads through the app: each refusal is a 4xx with a JSON detail a
person can act on and the next good request still succeeds; odd but valid images are
segmented; any file name becomes one clean CSV field; an upload past the size limit is
refused while it streams."""

from __future__ import annotations

import csv
import io
import struct
import zlib

import anyio
import httpx
import numpy as np
import pytest
import tifffile

from app.config import Settings
from app.main import create_app
from tests.conftest import GOOD, MODEL, assert_serves, crop, make_client, png_bytes, post, read_png, upload
from tests.payloads import bomb_png, hand_tiff, png_chunk, tiff
from tests.payloads import encode as encoded

# ---------------------------------------------------------------- inputs, built by hand


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


# ---------------------------------------------------------------- refused with a clear 4xx

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


# ---------------------------------------------------------------- odd but valid: segmented


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
    assert read_png(r.content).shape == shape


def test_multipage_tiff_of_different_sizes_uses_the_first(client):
    buf = io.BytesIO()
    with tifffile.TiffWriter(buf) as tw:
        tw.write(crop(24, 20)[..., 0])
        tw.write(crop(40, 48)[..., 0])
    doc = post(client, buf.getvalue(), name="stack.tif", format="rle").json()
    assert (doc["height"], doc["width"]) == (24, 20)


# ---------------------------------------------------------------- file names

NAMES = [
    ("../../etc/passwd.png", "passwd"),
    ("C:\\Users\\me\\Desktop\\slide 7.png", "slide 7"),
    ("plate1 well A01 – DAPI.tif", "plate1 well A01 – DAPI"),
    ('say "cheese".png', None),  # httpx sends the quotes as %22
    ("line\nbreak\r\n.png", None),
    ("ünïcødé 名前.tif", "ünïcødé 名前"),
    ("comma,semi;colon.png", "comma,semi;colon"),
    ("=HYPERLINK(evil).png", "'=HYPERLINK(evil)"),
    ("+1.png", "'+1"),
    ("-2-3.tif", "'-2-3"),
    ("@SUM(A1).png", "'@SUM(A1)"),
    ("." * 3 + "/" + "a" * 400 + ".png", "a" * 400),
    ("\u202egnp.exe", "\u202egnp"),
]


def assert_one_clean_field(r: httpx.Response, expected: str | None) -> str:
    """One ImageId, RFC 4180 quoted (so a CSV reader gets exactly two fields per row), that a
    spreadsheet cannot run as a formula; the download name is one Latin-1 header line."""
    assert r.status_code == 200, r.text
    rows = list(csv.reader(io.StringIO(r.text, newline="")))
    assert rows[0] == ["ImageId", "EncodedPixels"] and len(rows) > 1
    ids = {row[0] for row in rows[1:]}
    assert all(len(row) == 2 for row in rows) and len(ids) == 1
    (image_id,) = ids
    assert image_id and not image_id.startswith(("=", "+", "-", "@"))
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


def test_an_image_without_nuclei_is_one_row_with_empty_pixels(client):
    black = np.zeros((64, 64), np.uint8)
    r = post(client, png_bytes(black), name="empty well.png", format="csv")
    assert r.headers["x-nuclei-count"] == "0"
    assert list(csv.reader(io.StringIO(r.text))) == [["ImageId", "EncodedPixels"], ["empty well", ""]]


def test_non_ascii_name_keeps_utf8_in_the_header(client):
    r = post(client, GOOD, name="名前.png", format="csv", threshold=0)
    assert "filename*=UTF-8''%E5%90%8D%E5%89%8D.csv" in r.headers["content-disposition"]


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
