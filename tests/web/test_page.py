"""The web page at GET /, in Debian's Chromium against the real app and model: one image
(count, outlines, table, downloads, and the screenshot), a file that is no image, a batch of
five (one request each, progress, 503 retried, the zip), two images of one stem beside a macOS
file, and a server that needs an API key.

The screenshot in docs/ is rewritten only when UPDATE_SCREENSHOT=1: a test run leaves the
tracked tree as it found it."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import zipfile
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
import tifffile
from fastapi import FastAPI
from fastapi.testclient import TestClient
from playwright.sync_api import expect

from app import webpage
from nuclei.naming import SUMMARY_COLUMNS, output_stems
from tests.web.conftest import API_KEY

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples"
SCREENSHOT = ROOT / "docs" / "images" / "web-page.png"
SHOWN = "he_stained_256x320"  # the sample in the screenshot

OUTLINE_PIXELS = """(canvas) => {
  const d = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4) if (d[i] < 90 && d[i + 1] > 190 && d[i + 2] < 150) n++;
  return n;
}"""


def api(url: str, path: Path, output_format: str, **headers: str) -> httpx.Response:
    response = httpx.post(
        f"{url}/segment",
        params={"format": output_format},
        headers=headers,
        timeout=60,
        files={"file": (path.name, path.read_bytes(), "image/png")},
    )
    response.raise_for_status()
    return response


def api_count(url: str, path: Path, **headers: str) -> int:
    return int(api(url, path, "geojson", **headers).headers["X-Nuclei-Count"])


def test_page_and_assets_are_served_without_any_outside_url() -> None:
    app = FastAPI()
    app.include_router(webpage.router)
    with TestClient(app) as client:
        page = client.get("/")
        assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert client.get("/web/app.js").headers["content-type"] == "text/javascript; charset=utf-8"
        assert client.get("/web/style.css").headers["content-type"] == "text/css; charset=utf-8"
        assert client.get("/web/index.html").status_code == 404
        assert client.get("/web/..%2Fwebpage.py").status_code == 404
    for asset in webpage.WEB.iterdir():
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", asset.read_text()), asset.name


def test_one_image_count_outlines_table_downloads(page, server, tmp_path: Path) -> None:
    sample = SAMPLES / f"{SHOWN}.png"
    expected = api_count(server, sample)
    diameter = api(server, sample, "geojson").headers["X-Nucleus-Diameter"]
    response = page.goto(server + "/")
    assert "default-src 'self'" in response.headers["content-security-policy"]
    files = page.get_by_test_id("files")
    assert files.get_attribute("multiple") is not None
    files.set_input_files(sample)

    count = page.get_by_test_id("count")
    page.wait_for_function("() => document.querySelector('[data-testid=count]').textContent !== '–'")
    assert int(count.text_content()) == expected > 0
    canvas = page.get_by_test_id("canvas")
    # the outlines are drawn once the browser has decoded the image, a moment after the count
    expect(canvas).to_have_attribute("data-outlines", str(expected))
    with_outlines = canvas.evaluate(OUTLINE_PIXELS)
    assert with_outlines > 20 * expected  # each nucleus ringed in green
    expect(page.locator("#size")).to_have_text(f"320 × 256 pixels · nuclei about {diameter} px across")
    expect(page.get_by_text(re.compile(r"1/1 images · [\d.]+ images/s"))).to_be_visible()

    # the measurements table: one row per nucleus, sorted by a click on a heading
    rows = page.locator("[data-testid=measurements] tbody tr")
    expect(rows).to_have_count(expected)
    area_column = page.locator("[data-testid=measurements] thead th").all_text_contents().index("area")

    def areas() -> list[float]:
        return [float(r.locator("td").nth(area_column).text_content()) for r in rows.all()]

    page.get_by_role("button", name="area").click()
    assert areas() == sorted(areas())
    page.get_by_role("button", name=re.compile("^area")).click()
    assert areas() == sorted(areas(), reverse=True)
    assert page.locator("th[aria-sort=descending]").text_content().startswith("area")

    shot = SCREENSHOT if os.environ.get("UPDATE_SCREENSHOT") == "1" else tmp_path / SCREENSHOT.name
    page.screenshot(path=shot, full_page=True)
    width, height = cv2.imread(str(shot)).shape[1::-1]
    assert width == 1280 and height > 900  # the whole page: the table runs below the fold

    # zoom and the outline toggle
    width = int(canvas.get_attribute("width"))
    page.get_by_test_id("zoom").fill("2")
    assert int(canvas.get_attribute("width")) == 4 * 320 != width
    page.get_by_test_id("outlines").uncheck()
    assert canvas.get_attribute("data-outlines") == "0"
    assert canvas.evaluate(OUTLINE_PIXELS) < with_outlines / 10

    # downloads: the 16-bit label image, the GeoJSON and the CSV, one nucleus each
    with page.expect_download() as download:
        page.get_by_test_id("dl-labels").click()
    assert download.value.suggested_filename == f"{SHOWN}.labels.png"
    labels = cv2.imdecode(np.frombuffer(Path(download.value.path()).read_bytes(), np.uint8), cv2.IMREAD_UNCHANGED)
    assert labels.dtype == np.uint16 and labels.shape == (256, 320) and labels.max() == expected
    with page.expect_download() as download:
        page.get_by_test_id("dl-geojson").click()
    assert len(json.loads(Path(download.value.path()).read_text())["features"]) == expected
    with page.expect_download() as download:
        page.get_by_test_id("dl-csv").click()
    table = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    served = httpx.post(f"{server}/segment", params={"format": "measurements", "quality": "true"}, timeout=60,
                        files={"file": (sample.name, sample.read_bytes())})
    assert Path(download.value.path()).read_bytes() == served.content, "the service's own table, byte for byte"
    assert len(table) == expected
    assert page.outside == []


def test_a_text_file_named_png_shows_its_error_beside_it(page, server, tmp_path: Path) -> None:
    fake = tmp_path / "notes.png"
    fake.write_text("Plate 3, well B7: fixed 10 min, DAPI 1:1000.\n")
    page.goto(server + "/")
    page.get_by_test_id("files").set_input_files([fake])
    row = page.locator("[data-testid=row][data-path='notes.png']")
    page.wait_for_selector("[data-testid=row][data-status=error]")
    status = row.get_by_test_id("status").text_content()
    assert re.match(r"(Not an image type the service reads|Could not read this image)", status), status
    assert row.locator("th").text_content() == "notes.png"
    assert page.get_by_test_id("progress-text").text_content().startswith("1/1 images")
    assert "1 failed" in page.get_by_test_id("progress-text").text_content()
    assert page.get_by_test_id("count").text_content() == "–"  # nothing shown
    assert page.get_by_test_id("zip").is_disabled()


def test_a_folder_of_five_images_progress_queue_depth_503_and_zip(page, server, tmp_path: Path) -> None:
    folder = tmp_path / "plate3"
    (folder / "well B7").mkdir(parents=True)
    for sample in sorted(SAMPLES.glob("*.png")):
        (folder / sample.name).write_bytes(sample.read_bytes())
    flipped = cv2.imread(str(SAMPLES / "fluorescence_256x256.png"), cv2.IMREAD_UNCHANGED)[:, ::-1]
    cv2.imwrite(str(folder / "well B7" / "fluorescence_256x256.png"), flipped)  # same name, other folder
    (folder / "notes.txt").write_text("not an image: the page leaves it out of a folder\n")
    images = sorted(str(p.relative_to(tmp_path)) for p in folder.rglob("*.png"))
    assert len(images) == 5

    # the first request is answered "queue full" by hand: the page must wait and send it again
    refused: list[str] = []

    def busy_once(route):
        if refused:
            route.fallback()
            return
        refused.append(route.request.url)
        route.fulfill(
            status=503,
            headers={"Retry-After": "1"},
            content_type="application/json",
            body=json.dumps({"detail": "server busy: too many requests queued; retry later"}),
        )

    page.route(lambda url: "/segment?" in url, busy_once)
    # the first two requests are held until both are sent: the page must use both of the
    # server's queue slots (and never a third), whatever the speed of this machine
    held: list = []

    def pair_up(route):
        if len(held) == 2:  # released already
            route.fallback()
            return
        held.append(route)
        if len(held) == 2:
            for waiting in held:
                waiting.fallback()

    page.route(lambda url: "/segment?" in url, pair_up)
    in_flight, most = set(), [0]

    def sent(request):
        if "/segment" in request.url:
            in_flight.add(request)
            most[0] = max(most[0], len(in_flight))

    def ended(request):
        in_flight.discard(request)

    page.on("request", sent)
    page.on("requestfinished", ended)
    page.on("requestfailed", ended)
    statuses: list[int] = []
    page.on("response", lambda r: "/segment" in r.url and statuses.append(r.status))

    page.goto(server + "/")
    page.get_by_test_id("folder").set_input_files(folder)
    progress = page.get_by_test_id("progress-text")
    page.wait_for_function(
        "() => /^5\\/5 images/.test(document.querySelector('[data-testid=progress-text]').textContent)", timeout=90_000
    )
    assert re.match(r"5/5 images · [\d.]+ images/s · finished$", progress.text_content())
    assert page.get_by_test_id("progress").evaluate("p => p.value === p.max && p.max === 5")
    assert len(refused) == 1 and statuses.count(503) == 1  # only the one made up above
    assert statuses.count(200) == 5  # outlines and labels for each image, in one request
    assert most[0] == 2  # the server's queue depth (GET /limits), and no more
    assert page.locator("[data-testid=row][data-status=done]").count() == 5

    with page.expect_download() as download:
        page.get_by_test_id("zip").click()
    assert download.value.suggested_filename == "nuclei-results.zip"
    with zipfile.ZipFile(download.value.path()) as archive:
        assert archive.testzip() is None  # every CRC right
        names = archive.namelist()
        summary = list(csv.DictReader(io.StringIO(archive.read("summary.csv").decode())))
        label_images = {n: archive.read(n) for n in names if n.endswith(".labels.png")}
    assert len(label_images) == 5 and len(names) == 5 * 3 + 1
    assert list(summary[0]) == list(SUMMARY_COLUMNS)  # nuclei-client's columns
    assert [r["path"] for r in summary] == images, "every image, rows by path"
    for row in summary:
        assert row["status"] == "ok" and row["error"] == "" and row["model_version"]
        labels = cv2.imdecode(
            np.frombuffer(label_images[row["path"].removesuffix(".png") + ".labels.png"], np.uint8),
            cv2.IMREAD_UNCHANGED,
        )
        assert labels.shape == (int(row["height"]), int(row["width"]))
        assert labels.max() == int(row["count"]) > 0
    assert page.outside == []


def test_a_server_that_needs_an_api_key(page, keyed_server) -> None:
    sample = SAMPLES / "fluorescence_256x256.png"
    page.goto(keyed_server + "/")
    key = page.get_by_label(re.compile("API key"))
    key.wait_for()  # shown at once: GET /limits says the server needs one
    page.get_by_test_id("files").set_input_files(sample)
    row = page.locator("[data-testid=row]")
    page.wait_for_selector("[data-testid=row][data-status=error]")
    assert row.get_by_test_id("status").text_content().startswith("This server needs an API key")

    key.fill(API_KEY)
    page.get_by_role("button", name="Retry failed images").click()
    page.wait_for_selector("[data-testid=row][data-status=done]")
    expected = api_count(keyed_server, sample, Authorization=f"Bearer {API_KEY}")
    assert page.get_by_test_id("count").text_content() == str(expected)


def test_two_images_of_one_stem_and_a_macos_file_give_two_results_in_the_zip(page, server, tmp_path: Path) -> None:
    folder = tmp_path / "plate"
    folder.mkdir()
    (folder / "a.png").write_bytes((SAMPLES / "fluorescence_520x696.png").read_bytes())  # 77 nuclei, not SHOWN's
    tifffile.imwrite(folder / "a.tif", cv2.imread(str(SAMPLES / f"{SHOWN}.png"), cv2.IMREAD_UNCHANGED)[..., ::-1])
    (folder / "._a.png").write_bytes(b"\x00\x05\x16\x07" + bytes(60))  # macOS AppleDouble: no image
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))  # an error row, worded as elsewhere
    page.goto(server + "/")
    page.get_by_test_id("folder").set_input_files(folder)
    page.wait_for_function(
        "() => /^3\\/3 images.*finished$/.test(document.querySelector('[data-testid=progress-text]').textContent)")
    assert page.locator("[data-testid=row][data-status=done]").count() == 2
    with page.expect_download() as download:
        page.get_by_test_id("zip").click()
    with zipfile.ZipFile(download.value.path()) as archive:
        names = sorted(archive.namelist())
        summary = {r["path"]: r for r in csv.DictReader(io.StringIO(archive.read("summary.csv").decode()))}
        counts = {name: int(read_labels(archive.read(f"plate/{name}.labels.png")).max()) for name in ("a.png", "a.tif")}
    outputs = [f"plate/{n}.{s}" for n in ("a.png", "a.tif") for s in ("geojson", "labels.png", "measurements.csv")]
    assert names == [*outputs, "summary.csv"]
    assert sorted(summary) == ["plate/a.png", "plate/a.tif", "plate/broken.png"]
    refused = httpx.post(f"{server}/segment", files={"file": ("broken.png", (folder / "broken.png").read_bytes())})
    assert summary.pop("plate/broken.png")["error"] == f"{refused.status_code} {refused.json()['detail']}"
    for name in ("a.png", "a.tif"):
        row = summary[f"plate/{name}"]
        assert (row["status"], row["error"], row["output"]) == ("ok", "", f"plate/{name}")
        assert counts[name] == int(row["count"]) == api_count(server, folder / name)
    assert counts["a.png"] != counts["a.tif"]


@pytest.mark.parametrize("paths", [
    ["a.png", "a.tif", "A.bmp", "a.png.bmp", "b/c.png", "B/c.png", "noext", "x/y.tiff"],
    ["plate/=1.png", "plate/=1.TIF", "plate/well B7/s.png", "plate/well B7/S.jpeg", "z~2.png", "z.png", "z.bmp"],
])
def test_the_page_names_outputs_by_the_rule_every_wing_uses(page, server, paths: list[str]) -> None:
    page.goto(server + "/")
    stems = page.evaluate("(paths) => outputStems(paths)", paths)
    expected = output_stems(paths)
    assert stems == [expected[p] for p in paths]
    hidden = ["._a.png", "x/.DS_Store", "__MACOSX/a.png", "Thumbs.db", "a.png", "plate/a.tif"]
    assert page.evaluate("(paths) => paths.filter(skipped)", hidden) == hidden[:4]


def read_labels(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


CANVAS_SPREAD = """(canvas) => {
  const d = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let [n, sum, squares] = [0, 0, 0];
  for (let i = 0; i < d.length; i += 4) {
    const grey = (d[i] + d[i + 1] + d[i + 2]) / 3;
    if (d[i + 1] > 190 && d[i] < 90) continue;  // an outline, not the image
    n++; sum += grey; squares += grey * grey;
  }
  return Math.sqrt(squares / n - (sum / n) ** 2);
}"""


def test_a_16_bit_two_channel_tiff_is_drawn_with_its_outlines_and_the_channel_is_chosen(
        page, server, tmp_path: Path) -> None:
    """Chromium cannot draw TIFF: the page draws the plane the service segmented (format=preview)."""
    from tests.channels import dapi_png, layouts

    tiff = tmp_path / "hyperstack.tif"
    tiff.write_bytes(layouts()["imagej"])
    expected = int(httpx.post(f"{server}/segment", files={"file": ("dapi.png", dapi_png())}, timeout=60)
                   .headers["X-Nuclei-Count"])
    page.goto(server + "/")
    page.get_by_test_id("channel").fill("1")
    page.get_by_test_id("files").set_input_files(tiff)
    canvas = page.get_by_test_id("canvas")
    expect(canvas).to_have_attribute("data-outlines", str(expected))
    assert page.get_by_test_id("count").text_content() == str(expected)
    assert canvas.evaluate(CANVAS_SPREAD) > 20, "the image is visible under the outlines, not black"
    assert canvas.evaluate(OUTLINE_PIXELS) > 20 * expected
    expect(page.locator("#view-note")).to_be_hidden()
    expect(page.get_by_test_id("plane-warning")).to_be_hidden()

    page.get_by_test_id("channel").fill("")
    page.get_by_role("button", name="Clear").click()
    page.get_by_test_id("files").set_input_files(tiff)
    warning = page.get_by_test_id("plane-warning")
    expect(warning).to_be_visible()
    expect(warning).to_contain_text("2 channels")
    expect(warning).to_contain_text("channel 0 was segmented")
    expect(page.locator("[data-testid=row]").first).to_have_attribute("data-status", "done")
    expect(page.locator("[data-testid=row] [data-testid=status]").first).to_have_text("Done: check the channel")
