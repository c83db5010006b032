"""The models the widget offers: the service's models of one folder (`nuclei.registry`), by
the names their cards give them, after `automatic`: the model the service would answer the
image with (a card claiming its modality, else the default). Each model is loaded once and
kept, since loading a session takes longer than a run; a file changed on disk is reloaded
before the next run, as the service does it."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from nuclei.registry import REQUESTED, Choice, Registry, model_files

REPOSITORY_MODELS = Path(__file__).resolve().parent.parent / "models"
DEFAULT_FILE = "nuclei-unet.int8.onnx"  # the service's default model (MODEL_PATH)
AUTOMATIC = "automatic"


def folder() -> Path:
    """$NUCLEI_MODELS, or the repository's models/ (the plugin is installed from the checkout)."""
    return Path(os.environ.get("NUCLEI_MODELS") or REPOSITORY_MODELS)


def default_file(where: Path) -> Path:
    """The service's default model when the folder holds it, else its first INT8 model, else its first."""
    files = sorted(model_files(where), key=lambda p: (p.name != DEFAULT_FILE, not p.name.endswith(".int8.onnx"),
                                                      p.name))
    return files[0] if files else where / DEFAULT_FILE


@lru_cache(maxsize=4)
def _registry(where: Path) -> Registry:
    return Registry(where, default_file(where))


def registry(where: Path | None = None) -> Registry:
    """The models of `where` (default: `folder()`), brought up to date with the folder."""
    models = _registry(Path(os.path.abspath(where or folder())))
    if models.stale():
        models.refresh()
    return models


def names(models: Registry) -> list[str]:
    """What the picker lists: `automatic` (when the default model serves), then every model by name."""
    return ([AUTOMATIC] if models.serving.default is not None else []) + sorted(models.serving.models)


def refused(models: Registry) -> list[str]:
    """`file: reason` of each file the registry refuses."""
    return [f"{e['file']}: {e['reason']}" for e in models.entries() if e["status"] == "refused"]


def choose(models: Registry, name: str, image: np.ndarray) -> Choice:
    """The model for `image`: by the service's routing for `automatic`, else the one named."""
    return models.route(image) if name == AUTOMATIC else Choice(models.get(name), REQUESTED)
