"""The models the widget offers: every ONNX file with its card in one folder, the served INT8
model first; one Segmenter per model, kept, since loading a session takes longer than a run."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from nuclei.segmenter import Segmenter

REPOSITORY_MODELS = Path(__file__).resolve().parent.parent / "models"


def folder() -> Path:
    """$NUCLEI_MODELS, or the repository's models/ (the plugin is installed from the checkout)."""
    return Path(os.environ.get("NUCLEI_MODELS") or REPOSITORY_MODELS)


def available(where: Path | None = None) -> list[Path]:
    """ONNX files with a card beside them; `*.int8.onnx` (what the service serves) first."""
    found = [p for p in (where or folder()).glob("*.onnx") if p.with_suffix(".json").is_file()]
    return sorted(found, key=lambda p: (not p.name.endswith(".int8.onnx"), p.name))


@lru_cache(maxsize=4)
def segmenter(path: Path) -> Segmenter:
    return Segmenter(path)
