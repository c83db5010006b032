"""nuclei-client against a real server process, on real DSB2018 samples plus a corrupt file:
the summary and exit status, a server killed and restarted mid-run, and resume."""

from __future__ import annotations

import csv
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import tifffile

from bench.server import free_port, start
from client import Client, ClientError
from nuclei.naming import SUMMARY_COLUMNS
from tests.channels import dapi_png, layouts
from tests.conftest import ROOT, SAMPLE_NAMES, png_bytes, read_png, read_sample

SUMMARY = ",".join(SUMMARY_COLUMNS)


def start_server(port: int, log: Path) -> subprocess.Popen:
    """A server on a given port, so a restarted one is where the client looks."""
    return start(log_path=log, port=port).proc


def image_folder(root: Path, copies: int) -> list[Path]:
    """Real samples (flipped copies beyond the first) in two subfolders, and a corrupt file."""
    paths = []
    for k in range(copies):
        for name in SAMPLE_NAMES:
            _, image, _ = read_sample(name)
            path = root / f"plate {k % 2}" / f"{name} – {k}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(png_bytes(np.ascontiguousarray(np.flip(image, axis=k % 2) if k else image)))
            paths.append(path)
    (root / "plate 0" / "broken.png").write_bytes(b"this is text, not a PNG")
    return paths


def run_client(source: Path, out: Path, port: int, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "client", str(source), str(out), "--url",
                             f"http://127.0.0.1:{port}", "--quiet", *extra], cwd=ROOT)


def summary(out: Path) -> dict[str, dict[str, str]]:
    with (out / "summary.csv").open(newline="") as f:
        assert f.readline().strip() == SUMMARY
        f.seek(0)
        return {r["path"]: r for r in csv.DictReader(f)}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    port = free_port()
    proc = start_server(port, tmp_path_factory.mktemp("log") / "server.log")
    yield port
    proc.terminate()
    proc.wait(30)


def test_summary_rows_outputs_and_exit_status(server: int, tmp_path: Path) -> None:
    paths = image_folder(tmp_path / "in", copies=1)
    status = run_client(tmp_path / "in", tmp_path / "out", server).wait(120)
    rows = summary(tmp_path / "out")
    assert status == 1, "one corrupt file: exit status 1"
    broken = rows.pop("plate 0/broken.png")
    assert broken["status"] == "error" and broken["error"].startswith("415 ") and "PNG" in broken["error"]
    refused = httpx.post(f"http://127.0.0.1:{server}/segment",
                         files={"file": ("broken.png", (tmp_path / "in" / "plate 0" / "broken.png").read_bytes())})
    assert broken["error"] == f"{refused.status_code} {refused.json()['detail']}"  # the service's words
    assert len(rows) == len(paths) and {r["status"] for r in rows.values()} == {"ok"}
    for path in paths:
        rel = path.relative_to(tmp_path / "in").as_posix()
        row, expected = rows[rel], Client(f"http://127.0.0.1:{server}").segment(path)
        assert (int(row["count"]), row["model_version"]) == (expected.count, expected.model_version)
        assert (int(row["width"]), int(row["height"])) == read_sample(path.stem.split(" – ")[0])[1].shape[1::-1]
        stem = tmp_path / "out" / path.relative_to(tmp_path / "in").with_suffix("")
        assert Path(f"{stem}.labels.png").read_bytes() == expected.content
        with open(f"{stem}.measurements.csv", newline="") as f:
            assert len(list(csv.DictReader(f))) == expected.count


def test_the_api_raises_the_servers_detail(server: int) -> None:
    with pytest.raises(ClientError) as caught:
        Client(f"http://127.0.0.1:{server}").segment(b"GIF89a" + b"\0" * 20, filename="x.gif")
    assert caught.value.status == 415 and "GIF" in caught.value.detail


@pytest.mark.slow
def test_server_killed_mid_run_loses_no_image_and_a_rerun_skips_all(tmp_path: Path) -> None:
    paths = image_folder(tmp_path / "in", copies=6)
    port, log, out = free_port(), tmp_path / "server.log", tmp_path / "out"
    server = start_server(port, log)
    client = run_client(tmp_path / "in", out, port, "--concurrency", "2")
    deadline = time.monotonic() + 60
    while len(list(out.rglob("*.labels.png"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    server.send_signal(signal.SIGKILL)
    server.wait()
    done_at_kill = len(list(out.rglob("*.labels.png")))
    server = start_server(port, log)  # the client meets a refused port until the new one is up
    try:
        assert client.wait(300) == 1, "only the corrupt file fails"
        assert 0 < done_at_kill < len(paths), "the server died while the run was going"
        rows = summary(out)
        assert sum(r["status"] == "ok" for r in rows.values()) == len(paths)
        assert len(list(out.rglob("*.labels.png"))) == len(paths)
        before = {p: p.stat().st_mtime_ns for p in out.rglob("*.labels.png")}
        assert run_client(tmp_path / "in", out, port).wait(120) == 1
        assert {p: p.stat().st_mtime_ns for p in out.rglob("*.labels.png")} == before, "nothing redone"
        again = summary(out)
        assert {k: v["count"] for k, v in again.items() if v["status"] == "ok"} == \
            {k: v["count"] for k, v in rows.items() if v["status"] == "ok"}
    finally:
        server.terminate()
        server.wait(30)


def segment_requests(port: int) -> int:
    """POST /segment requests the server has answered, from its /metrics."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("http_requests_total{") and '"/segment"' in line and 'method="POST"' in line))


def test_one_request_per_image_for_the_default_outputs(server: int, tmp_path: Path) -> None:
    source = tmp_path / "in"
    source.mkdir()
    for name in SAMPLE_NAMES:
        (source / f"{name}.png").write_bytes(read_sample(name)[0])
    before = segment_requests(server)
    assert run_client(source, tmp_path / "out", server).wait(120) == 0
    assert segment_requests(server) - before == len(SAMPLE_NAMES)
    for name in SAMPLE_NAMES:
        labels = read_png((tmp_path / "out" / f"{name}.labels.png").read_bytes())
        with open(tmp_path / "out" / f"{name}.measurements.csv", newline="") as f:
            assert len(list(csv.DictReader(f))) == labels.max() > 0


def test_one_stem_two_images_and_a_macos_file_give_two_results_and_a_rerun_redoes_nothing(
        server: int, tmp_path: Path) -> None:
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    png, tif = read_sample("fluorescence_256x256")[0], read_sample("he_stained_256x320")[1]
    (source / "a.png").write_bytes(png)
    tifffile.imwrite(source / "a.tif", tif)
    (source / "._a.png").write_bytes(b"\x00\x05\x16\x07" + bytes(60))  # AppleDouble, not an image
    assert run_client(source, out, server).wait(120) == 0
    rows = summary(out)
    assert sorted(rows) == ["a.png", "a.tif"] and {r["status"] for r in rows.values()} == {"ok"}
    api = Client(f"http://127.0.0.1:{server}")
    for name, shape in (("a.png", (256, 256)), ("a.tif", tif.shape[:2])):  # each its own image's answer
        assert rows[name]["output"] == name
        labels = read_png((out / f"{name}.labels.png").read_bytes())
        assert labels.shape == shape and labels.max() == int(rows[name]["count"]) == api.segment(source / name).count
    assert sorted(p.name for p in out.iterdir()) == [
        "a.png.labels.png", "a.png.measurements.csv", "a.tif.labels.png", "a.tif.measurements.csv", "summary.csv"]
    written = {p: p.stat().st_mtime_ns for p in out.glob("a.*")}
    before = segment_requests(server)
    assert run_client(source, out, server).wait(120) == 0
    assert segment_requests(server) == before, "nothing redone"
    assert {p: p.stat().st_mtime_ns for p in out.glob("a.*")} == written
    assert {k: r["count"] for k, r in summary(out).items()} == {k: r["count"] for k, r in rows.items()}


def test_outputs_of_another_input_are_not_taken_for_this_ones(server: int, tmp_path: Path) -> None:
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    tifffile.imwrite(source / "a.tif", read_sample("he_stained_256x320")[1])
    assert run_client(source, out, server).wait(120) == 0  # a.labels.png: the TIFF's
    (source / "a.tif").unlink()
    (source / "a.png").write_bytes(read_sample("fluorescence_256x256")[0])
    assert run_client(source, out, server).wait(120) == 0
    expected = Client(f"http://127.0.0.1:{server}").segment(source / "a.png")
    assert (out / "a.labels.png").read_bytes() == expected.content
    assert summary(out)["a.png"]["count"] == str(expected.count)


def test_the_summary_neutralises_formulas_in_file_names(server: int, tmp_path: Path) -> None:
    source = tmp_path / "in"
    source.mkdir()
    (source / "=HYPERLINK(1).png").write_bytes(b"not an image")
    (source / "+sum.png").write_bytes(read_sample("fluorescence_256x256")[0])
    assert run_client(source, tmp_path / "out", server).wait(120) == 1
    rows = summary(tmp_path / "out")
    assert sorted(rows) == ["'+sum.png", "'=HYPERLINK(1).png"]
    assert rows["'+sum.png"]["status"] == "ok" and rows["'+sum.png"]["output"] == "'+sum"
    assert (tmp_path / "out" / "+sum.labels.png").exists()
    assert rows["'=HYPERLINK(1).png"]["error"].startswith("415 ")


class FakeClock:
    """time.monotonic and time.sleep of client.api: waits are recorded, never slept."""

    def __init__(self) -> None:
        self.now, self.waits = 0.0, []

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def mock_server(answers: list[httpx.Response], seen: list[httpx.Request]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers.pop(0) if len(answers) > 1 else answers[0]
    return httpx.MockTransport(handle)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr("client.api.time.monotonic", lambda: fake.now)
    monkeypatch.setattr("client.api.time.sleep", fake.sleep)
    return fake


BUSY = httpx.Response(503, headers={"Retry-After": "7"}, json={"detail": "server busy"})


def test_503_is_retried_after_its_retry_after(clock: FakeClock) -> None:
    seen: list[httpx.Request] = []
    ok = httpx.Response(200, content=b"PNG", headers={"X-Nuclei-Count": "3", "X-Model-Version": "1.3.0"})
    client = Client("http://service", transport=mock_server([BUSY, BUSY, ok], seen))
    result = client.segment(b"image bytes", format="labels", filename="a.png")
    assert (result.content, result.count, result.model_version) == (b"PNG", 3, "1.3.0")
    assert clock.waits == [7.0, 7.0] and len(seen) == 3
    assert all(r.url.params["format"] == "labels" for r in seen)


def test_a_server_busy_past_the_patience_is_given_up_with_the_last_reason(clock: FakeClock) -> None:
    seen: list[httpx.Request] = []
    client = Client("http://service", patience_s=30, transport=mock_server([BUSY], seen))
    with pytest.raises(ClientError) as caught:
        client.segment(b"image bytes")
    assert caught.value.status == 0 and "unreachable or busy for 30 s" in caught.value.detail
    assert "503: server busy" in caught.value.detail
    assert clock.waits == [7.0] * 4 + [2.0] and len(seen) == 6  # the last wait ends at the 30 s


def test_a_4xx_is_not_retried(clock: FakeClock) -> None:
    seen: list[httpx.Request] = []
    refused = httpx.Response(415, json={"detail": "GIF is not supported"})
    with pytest.raises(ClientError) as caught:
        Client("http://service", transport=mock_server([refused], seen)).segment(b"GIF89a")
    assert (caught.value.status, caught.value.detail, len(seen), clock.waits) == (415, "GIF is not supported", 1, [])


def test_the_patience_bounds_the_whole_outage_not_each_request(clock: FakeClock) -> None:
    """A second image that starts waiting 20 s into an outage gives up at 30 s, not at 50 s."""
    client = Client("http://service", patience_s=30, transport=mock_server([BUSY], []))
    with pytest.raises(ClientError):
        client.segment(b"first")
    assert clock.now == 30
    started = clock.now
    with pytest.raises(ClientError):
        client.segment(b"second")
    assert clock.now == started, "the outage had lasted its patience already: one try, no wait"


def test_a_success_ends_the_outage(clock: FakeClock) -> None:
    ok = httpx.Response(200, content=b"PNG", headers={"X-Nuclei-Count": "1"})
    client = Client("http://service", patience_s=30, transport=mock_server([BUSY, BUSY, ok, BUSY], []))
    client.segment(b"first")  # 14 s of outage, then served
    with pytest.raises(ClientError):
        client.segment(b"second")
    assert clock.now == 14 + 30, "a new outage gets the whole patience"


def checked(answers: dict[str, httpx.Response], key: str | None = None) -> str:
    """Client.check() against a server answering each path as given: '' or its one line."""
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/model" and request.headers.get("authorization") != "Bearer right":
            return httpx.Response(401, json={"detail": "missing or wrong API key"})
        return answers.get(request.url.path, httpx.Response(404, text="Not Found"))
    try:
        Client("http://service", api_key=key or "", transport=httpx.MockTransport(handle)).check()
    except ClientError as exc:
        return exc.detail
    return ""


def test_the_check_before_a_run_says_what_is_wrong_in_one_line() -> None:
    ready = httpx.Response(200, json={"status": "ready"})
    open_ = httpx.Response(200, json={"api_key_required": False})
    keyed = httpx.Response(200, json={"api_key_required": True})
    assert checked({"/ready": ready, "/limits": open_}) == ""
    assert "not a nuclei segmentation service" in checked({})
    assert "not a nuclei segmentation service" in checked({"/ready": ready, "/limits": ready})
    assert checked({"/ready": ready, "/limits": keyed}) == "http://service needs an API key: set NUCLEI_API_KEY"
    assert "refused the API key" in checked({"/ready": ready, "/limits": keyed}, key="wrong")
    assert checked({"/ready": ready, "/limits": keyed}, key="right") == ""


def run_to_end(args: list[str], timeout: float) -> tuple[int, str, float]:
    """(exit status, stderr, seconds) of nuclei-client with `args`."""
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "client", *args, "--quiet"], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)
    return done.returncode, done.stderr, time.monotonic() - start


def test_a_closed_port_or_a_wrong_url_is_one_line_and_exit_2(server: int, tmp_path: Path) -> None:
    image_folder(tmp_path / "in", copies=1)
    status, err, seconds = run_to_end([str(tmp_path / "in"), str(tmp_path / "out"), "--url",
                                       f"http://127.0.0.1:{free_port()}"], timeout=60)
    assert (status, len(err.strip().splitlines())) == (2, 1) and seconds < 10
    assert err.startswith("nuclei-client: cannot reach http://127.0.0.1:") and "--url" in err
    status, err, _ = run_to_end([str(tmp_path / "in"), str(tmp_path / "out"), "--url",
                                 f"http://127.0.0.1:{server}/nuclei"], timeout=60)
    assert (status, len(err.strip().splitlines())) == (2, 1)
    assert "is not a nuclei segmentation service (GET /limits answered 404" in err


def test_a_server_gone_for_longer_than_the_patience_ends_the_run_and_keeps_what_was_done(tmp_path: Path) -> None:
    paths = image_folder(tmp_path / "in", copies=6)
    port, out = free_port(), tmp_path / "out"
    server = start_server(port, tmp_path / "server.log")
    client = subprocess.Popen([sys.executable, "-m", "client", str(tmp_path / "in"), str(out), "--url",
                               f"http://127.0.0.1:{port}", "--quiet", "--patience", "5"], cwd=ROOT,
                              stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while len(list(out.rglob("*.labels.png"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    server.send_signal(signal.SIGKILL)
    server.wait()
    killed = time.monotonic()
    _, err = client.communicate(timeout=120)
    assert client.returncode == 2 and time.monotonic() - killed < 5 + 20, "ended about --patience after the kill"
    assert "unreachable or busy for 5 s" in err and "run the same command again" in err
    rows = summary(out)
    done = {r["path"] for r in rows.values() if r["status"] == "ok"}
    assert 3 <= len(done) < len(paths)
    assert f"stopped with {len(rows)} of {len(paths) + 1} images done" in err, "every row counted, the bad file too"
    assert {p.relative_to(out).as_posix().removesuffix(".labels.png") + ".png" for p in out.rglob("*.labels.png")} \
        == done, "every image done has its row and its outputs; no row without them"
    assert list(rows) == sorted(rows), "rows by path"


def test_channel_and_the_multichannel_warning_reach_the_summary(server: int, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    for name, data in layouts().items():
        (tmp_path / "in" / f"{name}.tif").write_bytes(data)
    expected = Client(f"http://127.0.0.1:{server}").segment(dapi_png(), format="labels").count
    assert run_client(tmp_path / "in", tmp_path / "c1", server, "--channel", "1").wait(120) == 0
    rows = summary(tmp_path / "c1")
    assert {r["count"] for r in rows.values()} == {str(expected)} and {r["warning"] for r in rows.values()} == {""}
    assert run_client(tmp_path / "in", tmp_path / "c0", server).wait(120) == 0
    for row in summary(tmp_path / "c0").values():
        assert "2 channels" in row["warning"] and "channel 0 was segmented" in row["warning"]
        assert row["count"] != str(expected)
    assert run_client(tmp_path / "in", tmp_path / "c2", server, "--channel", "2").wait(120) == 1
    assert {r["error"] for r in summary(tmp_path / "c2").values()} == \
        {"422 channel=2 is out of range: the image has 2 channel(s) (0..1)"}


def test_the_summary_says_which_images_to_check_and_no_quality_skips_the_pass(server: int, tmp_path: Path) -> None:
    paths = image_folder(tmp_path / "in", copies=1)
    assert run_client(tmp_path / "in", tmp_path / "out", server).wait(120) == 1  # the broken file
    rows = summary(tmp_path / "out")
    assert (rows["plate 0/broken.png"]["quality"], rows["plate 0/broken.png"]["flag"]) == ("", "")
    for path in paths:
        served = Client(f"http://127.0.0.1:{server}").segment(path, quality=True)
        row = rows[path.relative_to(tmp_path / "in").as_posix()]
        assert (float(row["quality"]), row["flag"]) == (served.quality, served.flag)
    assert {rows[p.relative_to(tmp_path / "in").as_posix()]["flag"] for p in paths} == {"ok", "check"}
    assert run_client(tmp_path / "in", tmp_path / "plain", server, "--no-quality").wait(120) == 1
    assert {(r["quality"], r["flag"]) for r in summary(tmp_path / "plain").values()} == {("", "")}


def test_model_picks_the_model_and_one_the_server_lacks_fails_fast_with_its_list(server: int, tmp_path: Path) -> None:
    """The server serves the committed folder: nuclei-unet (float32) beside the default INT8 model,
    and the stained-tissue specialist in both precisions."""
    paths = image_folder(tmp_path / "in", copies=1)
    url = f"http://127.0.0.1:{server}"
    status, err, seconds = run_to_end([str(tmp_path / "in"), str(tmp_path / "none"), "--url", url,
                                       "--model", "stained"], timeout=60)
    names = ", ".join(sorted(m["name"] for m in httpx.get(f"{url}/models").json()["models"]))
    assert "nuclei-unet.int8" in names and "stained-tissue.int8" in names
    assert (status, err.strip()) == (2, f"nuclei-client: {url} serves no model 'stained'; it serves: {names}")
    assert seconds < 10 and not (tmp_path / "none").exists(), "refused before any image is sent"

    def served(model: str) -> float:
        match = re.search(rf'^images_processed_total{{model="{re.escape(model)}"}} (\S+)$',
                          httpx.get(f"{url}/metrics").text, re.M)
        return float(match[1]) if match else 0.0

    before = served("nuclei-unet")
    status, err, _ = run_to_end([str(tmp_path / "in"), str(tmp_path / "out"), "--url", url,
                                 "--model", "nuclei-unet", "--no-quality"], timeout=300)
    assert status == 1, err  # the corrupt file
    assert served("nuclei-unet") - before == len(paths), "every image went to the model asked for"
    with Client(url) as client:
        result = client.segment(paths[0], model="nuclei-unet")
    assert (result.headers["x-model-name"], result.headers["x-model-route"]) == ("nuclei-unet", "requested")
