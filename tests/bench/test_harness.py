"""The benchmark's own instruments, on real processes and a real sample: if one of them
drifts from the service (a stage added to the pipeline, a /proc field misread, a server that
never becomes ready), these fail instead of the benchmark printing a wrong number."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

from app.config import Settings
from app.main import load_segmenter
from bench import proc
from bench.images import sample
from bench.inprocess import STAGES, run_stages
from bench.server import serve
from nuclei.encode import OutputFormat
from nuclei.pipeline import segment_bytes


@pytest.fixture(scope="module")
def segmenter():
    return load_segmenter(Settings.model_construct())  # the service's defaults, as bench measures


def test_stages_called_directly_make_the_pipelines_body(segmenter):
    """Deterministic: the stages bench times are the whole pipeline, in its order."""
    image = sample("fluorescence_256x256")
    max_pixels = Settings.model_construct().max_pixels
    seconds, body = run_stages(segmenter, image, max_pixels)
    expected = segment_bytes(segmenter, image.data, output_format=OutputFormat.png, filename=f"{image.name}.png",
                             max_pixels=max_pixels)
    assert body == expected.body
    assert list(seconds) == list(STAGES)
    assert all(s > 0 for s in seconds.values())


def test_proc_reader_reads_a_real_process_and_its_children():
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; b = bytearray(64 * 2**20); print('ok', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ok"
        rss, peak = proc.rss_mb(child.pid), proc.peak_rss_mb(child.pid)
        assert rss > 64 and peak >= rss
        assert child.pid in proc.descendants(os.getpid())
        assert proc.rss_mb(os.getpid(), children=True) >= proc.rss_mb(os.getpid()) + 64
        assert proc.cpu_s(os.getpid()) > 0
    finally:
        child.kill()
        child.wait()
    assert proc.rss_mb(child.pid) == 0  # gone: 0, not an exception


def test_server_launcher_starts_a_ready_server_and_stops_it(monkeypatch):
    monkeypatch.setenv("MODEL_PATH", "/nonexistent.onnx")  # the shell's settings do not reach the server
    with serve({"log_level": "warning"}) as server:
        assert httpx.get(f"{server.url}/ready", trust_env=False).status_code == 200
        assert 0 < server.ready_s < 120
        assert proc.rss_mb(server.pid) > 0
    assert server.proc.returncode in (0, -15)


def test_previous_model_comes_out_of_git_and_is_timed_beside_the_served_one(segmenter, tmp_path):
    from bench.previous import PREVIOUS, checkout_previous, compare
    from nuclei.segmenter import Segmenter

    before = Segmenter(checkout_previous(tmp_path))
    assert before.card.version == PREVIOUS["version"] == "1.3.0"
    result = compare(segmenter, before, [sample("fluorescence_256x256")], reps=2, budget_s=0.0)
    timing = result["sizes"]["256x256"]
    assert timing["served"]["n"] == timing["previous"]["n"] == timing["one pass"]["n"] == 2
    assert 0.1 < timing["ratio_previous"] < 10 and 0.1 < timing["ratio_one pass"] < 10
