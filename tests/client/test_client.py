"""nuclei-client against a real server process, on real DSB2018 samples plus a corrupt file:
the summary and exit status, a server killed and restarted mid-run, and resume."""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bench.server import free_port, start
from client import Client, ClientError
from tests.conftest import ROOT, SAMPLE_NAMES, png_bytes, read_sample

SUMMARY = "path,width,height,count,status,error,model_version,seconds"


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
    assert len(rows) == len(paths) and {r["status"] for r in rows.values()} == {"ok"}
    for path in paths:
        rel = path.relative_to(tmp_path / "in").as_posix()
        row, expected = rows[rel], Client(f"http://127.0.0.1:{server}").segment(path)
        assert (int(row["count"]), row["model_version"]) == (expected.count, expected.model_version)
        assert (int(row["width"]), int(row["height"])) == read_sample(path.stem.split(" – ")[0])[1].shape[1::-1]
        stem = tmp_path / "out" / path.relative_to(tmp_path / "in").with_suffix("")
        assert Path(f"{stem}.labels.png").read_bytes() == expected.content
        with open(f"{stem}.csv", newline="") as f:
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
