"""nuclei-client against a real server process, on real DSB2018 samples plus a corrupt file:
the summary and exit status, a server killed and restarted mid-run, and resume."""

from __future__ import annotations

import csv
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
from tests.conftest import ROOT, SAMPLE_NAMES, png_bytes, read_png, read_sample

SUMMARY = "path,width,height,count,status,error,model_version,seconds,output"


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
    time.sleep(2)
    server = start_server(port, log)
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
    for name in ("a.png", "a.tif"):
        assert rows[name]["output"] == name
        labels = read_png((out / f"{name}.labels.png").read_bytes())
        assert labels.max() == int(rows[name]["count"]) == api.segment(source / name).count
    assert rows["a.png"]["count"] != rows["a.tif"]["count"]
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
    assert caught.value.status == 0 and "gave up after 30 s" in caught.value.detail
    assert "503: server busy" in caught.value.detail
    assert clock.waits == [7.0] * 4 and len(seen) == 5  # a fifth wait would pass the 30 s


def test_a_4xx_is_not_retried(clock: FakeClock) -> None:
    seen: list[httpx.Request] = []
    refused = httpx.Response(415, json={"detail": "GIF is not supported"})
    with pytest.raises(ClientError) as caught:
        Client("http://service", transport=mock_server([refused], seen)).segment(b"GIF89a")
    assert (caught.value.status, caught.value.detail, len(seen), clock.waits) == (415, "GIF is not supported", 1, [])
