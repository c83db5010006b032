"""Shared fixtures and helpers for every folder of tests: the committed models, real sample
images with their labels, the app and how to post an image to it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.config import DEFAULT_MODEL, Settings
from app.main import create_app
from nuclei import card as cards
from nuclei.imageio import decode_image
from nuclei.segmenter import Segmenter
from tests.payloads import encode

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
MODEL = DEFAULT_MODEL  # what the service serves by default: the INT8 model
FLOAT_MODEL = ROOT / "models" / "nuclei-unet.onnx"  # the export it was quantised from
VERSION = cards.load(MODEL).version  # what the service must say answered: its card's version
SAMPLE_NAMES = sorted(p.stem for p in SAMPLES.glob("*.png"))


def read_sample(name: str) -> tuple[bytes, np.ndarray, np.ndarray]:
    """(file bytes, decoded image, int32 instance labels) of one sample."""
    data = (SAMPLES / f"{name}.png").read_bytes()
    labels = decode_image((SAMPLES / "labels" / f"{name}.png").read_bytes()).astype(np.int32)
    return data, decode_image(data), labels


def png_bytes(image: np.ndarray) -> bytes:
    return encode(".png", image)


def crop(height: int = 40, width: int = 48) -> np.ndarray:
    """A small RGB piece of a real micrograph: quick to segment, has nuclei in it."""
    return read_sample("fluorescence_256x256")[1][:height, :width, :3].copy()


GOOD = png_bytes(crop())  # a valid upload; its mask is 40×48


def read_png(content: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(content, np.uint8), cv2.IMREAD_UNCHANGED)


def upload(data: bytes, name: str = "x.png") -> dict[str, object]:
    """Keyword arguments of client.post for a multipart upload of `data` as `name`."""
    return {"files": {"file": (name, data, "application/octet-stream")}}


def post(client, data: bytes, name: str = "x.png", **params: object) -> httpx.Response:
    return client.post("/segment", params=params, **upload(data, name))


def assert_serves(client) -> None:
    """The process is still healthy: a good image is segmented right after."""
    r = post(client, GOOD)
    assert r.status_code == 200, r.text
    assert read_png(r.content).shape == (40, 48)


def write_kaggle_layout(root: Path, names: list[str] | None = None) -> Path:
    """The samples as a DSB2018 folder (one mask PNG per nucleus), for training tests."""
    for name in names or SAMPLE_NAMES:
        data, _, labels = read_sample(name)
        image_id = (SAMPLES / "labels" / f"{name}.id").read_text().strip()
        (root / image_id / "images").mkdir(parents=True)
        (root / image_id / "masks").mkdir()
        (root / image_id / "images" / f"{image_id}.png").write_bytes(data)
        for k in range(1, int(labels.max()) + 1):
            mask = np.where(labels == k, 255, 0).astype(np.uint8)
            (root / image_id / "masks" / f"{k:04d}.png").write_bytes(png_bytes(mask))
    return root


@pytest.fixture(scope="session")
def segmenter() -> Segmenter:
    return Segmenter(MODEL)


@pytest.fixture(scope="session")
def client() -> Iterator[TestClient]:
    with TestClient(create_app(Settings(model_path=MODEL))) as c:
        yield c


def make_client(**settings: object) -> TestClient:
    """An app with other settings; use inside `with` so the lifespan runs."""
    return TestClient(create_app(Settings(model_path=MODEL, **settings)))


def blocking_segment(monkeypatch, client, release: threading.Event, started: threading.Event) -> None:
    """The client's default model holds each segmentation until `release` is set: a request
    kept in flight on purpose, whatever the host's speed."""
    segmenter = client.app.state.registry.default
    segment = segmenter.segment_sized  # what the service calls

    def held(image, *args, **kwargs):
        started.set()
        release.wait(10)
        return segment(image, *args, **kwargs)

    monkeypatch.setattr(segmenter, "segment_sized", held)
