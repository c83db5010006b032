"""scripts/smoke.py, the container smoke test's checks, on this machine: its PNG helpers on
the real samples (OpenCV decodes what they write), and its HTTP commands against a real
`python -m app` process serving the default model and a stained-tissue specialist, run as
container-smoke runs them (`python3 -m scripts.smoke`)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from bench.server import free_port, start
from scripts import smoke
from tests.conftest import ROOT, SAMPLES, VERSION, read_png
from tests.models import add_model

SAMPLE = SAMPLES / "fluorescence_256x256.png"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scripts.smoke", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    folder = tmp_path_factory.mktemp("models")
    add_model(folder, "stained-tissue.int8", version="9.9.9", modalities=["colour tissue"])
    started = start({"models_dir": folder}, log_path=tmp_path_factory.mktemp("log") / "server.log")
    yield int(started.url.rsplit(":", 1)[1])
    started.proc.terminate()
    started.proc.wait(30)


def test_png_helpers_write_what_opencv_reads() -> None:
    data = SAMPLE.read_bytes()
    assert smoke.png_size(data) == (256, 256)
    bigger = smoke.padded(data, 5000)
    assert len(bigger) == len(data) + 5000 + 12 and np.array_equal(read_png(bigger), read_png(data))
    disc_image = read_png(smoke.synthetic(200))
    assert disc_image.shape == (200, 200) and set(np.unique(disc_image)) == {0, 200}
    assert 0.2 < np.count_nonzero(disc_image) / disc_image.size < 0.5
    with pytest.raises(ValueError, match="not a PNG"):
        smoke.png_size(b"GIF89a" + bytes(30))


def test_check_says_what_is_wrong_with_an_answer() -> None:
    mask = smoke.synthetic(8)
    assert smoke.check(200, "image/png", "3", mask, (8, 8)) == ""
    assert smoke.check(503, "application/json", None, b'{"detail":"busy"}', (8, 8)).startswith("HTTP 503")
    assert "expected image/png 9x8" in smoke.check(200, "image/png", "3", mask, (9, 8))
    assert "X-Nuclei-Count" in smoke.check(200, "image/png", None, mask, (8, 8))


def test_commands_against_a_real_server(server: int, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{server}"
    assert run("get", f"{url}/ready").stdout.strip() == "200"
    assert run("port-free", str(server)).returncode == 1
    assert run("port-free", str(free_port())).returncode == 0
    assert run("refused", str(free_port()), "5").returncode == 0
    answer = run("segment", f"{url}/segment", str(SAMPLE), str(1536 * 1024))
    assert answer.returncode == 0 and "HTTP 200 image/png" in answer.stdout, answer.stdout
    big = tmp_path / "big.png"
    assert run("synthetic", str(big), "512").returncode == 0 and smoke.png_size(big.read_bytes()) == (512, 512)
    sent = tmp_path / "sent"
    both = run("inflight", str(server), str(big), "2", str(sent))
    assert both.returncode == 0 and sent.exists(), both.stdout
    answers = [json.loads(line) for line in both.stdout.splitlines()]
    assert [a["status"] for a in answers] == [200, 200] and int(answers[0]["count"]) > 50
    (tmp_path / "inflight.out").write_text(both.stdout)
    first, last = map(float, run("times", str(tmp_path / "inflight.out")).stdout.split())
    assert first == min(a["t"] for a in answers) and last == max(a["t"] for a in answers)
    assert run("in-flight", str(server), "1", "0.5").returncode == 1  # nothing in flight now


def test_models_checks_that_a_sample_is_answered_by_the_model_its_route_names(server: int) -> None:
    url = f"http://127.0.0.1:{server}"
    colour = run("models", url, str(SAMPLES / "he_stained_256x320.png"), "colour tissue")
    assert colour.returncode == 0, colour.stdout
    assert f"GET /models: nuclei-unet.int8 {VERSION}, stained-tissue.int8 9.9.9;" in colour.stdout
    assert "he_stained_256x320.png -> stained-tissue.int8 (modality: colour tissue)" in colour.stdout
    grey = run("models", url, str(SAMPLE), "grey fluorescence, small nuclei")  # claimed by none: the default
    assert grey.returncode == 0 and "-> nuclei-unet.int8 (default)" in grey.stdout, grey.stdout
    wrong = run("models", url, str(SAMPLE), "colour tissue")  # a grey image called colour: the route disagrees
    assert wrong.returncode == 1 and "expected 'modality: colour tissue'" in wrong.stdout, wrong.stdout


def test_routed_as_listed_says_what_is_wrong() -> None:
    def model(name: str, *modalities: str, status: str = "loaded") -> dict:
        return {"name": name, "status": status, "reason": None if status == "loaded" else "sha256",
                "version": "1", "sha256": name * 4, "modalities": list(modalities)}

    listing = {"default": "a", "models": [model("a"), model("b", "colour tissue")]}
    answer = {"x-model-name": "b", "x-model-route": "modality: colour tissue", "x-model-version": "1",
              "x-model-sha256": "bbbb"}
    assert smoke.routed_as_listed(listing, answer, "colour tissue") == ""
    assert smoke.routed_as_listed(listing, answer | {"x-model-name": "a", "x-model-sha256": "aaaa"},
                                  "colour tissue").startswith("X-Model-Name 'a' is not the model the route names")
    assert "differ from GET /models" in smoke.routed_as_listed(listing, answer | {"x-model-version": "2"},
                                                               "colour tissue")
    assert "expected 'default'" in smoke.routed_as_listed(listing, answer, "bright-field")
    refused = {"default": "a", "models": [model("a"), model("b", "colour tissue", status="refused")]}
    assert smoke.routed_as_listed(refused, answer, "colour tissue") == "GET /models: refused: b (sha256)"


def test_image_reads_podmans_inspect_output(tmp_path: Path) -> None:
    inspect = tmp_path / "inspect.json"
    inspect.write_text(json.dumps([{"Config": {"User": "10001:10001", "Cmd": ["python", "-m", "app"]},
                                    "Healthcheck": {"Test": ["CMD", "python", "-c", "ok"]}}]))
    assert smoke.image(str(inspect), "user") == "10001:10001"
    assert smoke.image(str(inspect), "healthcheck") == "CMD\0python\0-c\0ok\0"
    assert run("image", str(inspect), "cmd").stdout == "python\0-m\0app\0"


def test_held_uploads_stay_in_flight_until_released(server: int, tmp_path: Path) -> None:
    """container-smoke's drain check: uploads the server counts in flight, whatever its speed,
    until the release file appears; then each is answered 200."""
    sent, release = tmp_path / "sent", tmp_path / "release"
    held = subprocess.Popen([sys.executable, "-m", "scripts.smoke", "inflight", str(server), str(SAMPLE), "2",
                             str(sent), str(release)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    smoke.wait_for(str(sent), 60)
    assert sent.exists()
    assert run("in-flight", str(server), "2", "30").returncode == 0, "both uploads are in the server"
    assert run("in-flight", str(server), "2", "0.5").returncode == 0, "and still there: nothing finishes them"
    assert held.poll() is None
    release.touch()
    out, _ = held.communicate(timeout=120)
    answers = [json.loads(line) for line in out.splitlines()]
    assert held.returncode == 0 and [a["status"] for a in answers] == [200, 200]
    assert run("in-flight", str(server), "1", "0.5").returncode == 1
