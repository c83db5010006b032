"""Shared fixtures: the committed model, real sample images with their labels, the app."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.config import DEFAULT_MODEL, Settings
from app.main import create_app
from nuclei.imageio import decode_image
from nuclei.segmenter import Segmenter
from tests.payloads import encode

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
MODEL = DEFAULT_MODEL  # what the service serves by default: the INT8 model
FLOAT_MODEL = ROOT / "models" / "nuclei-unet.onnx"  # the export it was quantised from
SAMPLE_NAMES = sorted(p.stem for p in SAMPLES.glob("*.png"))


def read_sample(name: str) -> tuple[bytes, np.ndarray, np.ndarray]:
    """(file bytes, decoded image, int32 instance labels) of one sample."""
    data = (SAMPLES / f"{name}.png").read_bytes()
    labels = decode_image((SAMPLES / "labels" / f"{name}.png").read_bytes()).astype(np.int32)
    return data, decode_image(data), labels


def png_bytes(image: np.ndarray) -> bytes:
    return encode(".png", image)


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
