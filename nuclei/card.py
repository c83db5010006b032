"""The model card: the JSON beside each ONNX file that says what the model expects, how to
run it and how well it scores. One typed schema, one `load` (sha256 checked), one `save`:
export, tune, quantize and evaluate all write through it, so no writer can drop or misspell
a field the service reads.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from nuclei.modality import MODALITIES
from nuclei.postprocess import Thresholds
from nuclei.scale import DEFAULT_SCALE, Scale


class CardError(RuntimeError):
    """The model file or its card is missing, corrupt, or they do not belong together."""


class _Section(BaseModel):
    # Extra keys are kept, so a card written by a newer exporter still round-trips.
    model_config = ConfigDict(extra="allow", populate_by_name=True, protected_namespaces=())


class InputSpec(_Section):
    name: str
    layout: str
    dtype: str
    channels: int
    stride: int = Field(gt=0, description="height and width must be multiples of it")
    normalization: str


class OutputSpec(_Section):
    layout: str
    activation: str
    channels: dict[str, str] = Field(description="channel index → what its probability means")


class Inference(_Section):
    """How the service tiles an image for this model. On disk the tile size is `tile`, the
    name the committed cards were written with."""

    tile_size: int = Field(512, alias="tile", ge=16)
    overlap: int = Field(128, ge=0)  # margin 64 px each side: 99.9 % of probabilities move by < 0.01
    batch_size: int = Field(2, ge=1)
    views: Literal[1, 4] = Field(1, description="mirrored views averaged (nuclei.views): 1 = none")


# One INT8 tile covers a 1024×1024 image: fewer, larger tiles do less overlap work, and the
# INT8 model's activations at 1024² still keep the server under 500 MB (docs/performance.md).
INT8_INFERENCE = Inference(tile=1024, batch_size=1)


class Training(_Section):
    data: str
    split: str
    train_images: int
    validation_ids: list[str]
    settings: dict[str, Any] = {}


class Parent(_Section):
    """The model a fine-tune started from, as the service named it; `sha256` is of `file`."""

    name: str
    version: str
    sha256: str = Field(pattern="^[0-9a-f]{64}$")
    file: str


class FineTune(_Section):
    """What `training finetune` did to the parent: on which images (names, and one hash over
    the sorted names and bytes of images and labels, so a card proves which files it learnt
    from), for how long, and its scores before/after on images it never trained on."""

    parent: Parent
    images: list[str] = Field(description="names of the images trained on")
    images_sha256: str = Field(pattern="^[0-9a-f]{64}$")
    held_out: list[str] = Field(description="names of the images scored before/after, never trained on")
    held_out_sha256: str | None = Field(None, pattern="^[0-9a-f]{64}$")
    minutes: float = Field(ge=0, description="wall minutes of training")
    steps: int = Field(ge=0)
    settings: dict[str, Any] = {}
    # {"before": {"float32": {...}, "int8": {...}}, "after": {...}}: means over `held_out`
    metrics: dict[str, dict[str, dict[str, int | float]]] = {}
    worse_than_parent: bool = False



class ModelCard(_Section):
    """Field order is the order on disk, so `save(load(x))` rewrites the same bytes."""

    name: str
    version: str
    created: str
    file: str
    sha256: str = Field(pattern="^[0-9a-f]{64}$")
    architecture: dict[str, Any]
    input: InputSpec
    output: OutputSpec
    inference: Inference = Inference()
    postprocess: Thresholds = Thresholds()
    training: Training
    export: dict[str, Any] = {}
    metrics: dict[str, Any] = {}
    postprocess_tuning: dict[str, Any] | None = None
    derived: dict[str, Any] | None = None
    scale: Scale | None = None
    # Modalities (nuclei.modality.MODALITIES) this model is the service's choice for: a request
    # without `model=` whose image is of one of them goes to it (docs/models.md).
    modalities: list[str] | None = None
    finetune: FineTune | None = None  # a model made by `training finetune` (docs/finetune.md)

    @field_validator("modalities")
    @classmethod
    def _known_modalities(cls, value: list[str] | None) -> list[str] | None:
        unknown = sorted(set(value or ()) - set(MODALITIES))
        if unknown:
            raise ValueError(f"unknown modality {unknown[0]!r}: one of {', '.join(MODALITIES)}")
        return value

    @property
    def info(self) -> dict[str, str]:
        """What identifies the model in every response."""
        return {"name": self.name, "version": self.version, "sha256": self.sha256}

    @property
    def nucleus_scale(self) -> Scale:
        """The card's `scale`, or DEFAULT_SCALE for a card that predates it."""
        return self.scale or DEFAULT_SCALE

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def card_path(model_path: Path) -> Path:
    return Path(model_path).with_suffix(".json")


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _one_line(path: Path, exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(card)"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"model card {path}: field '{where}': {first['msg']}{more}"


def parse(path: Path) -> ModelCard:
    """The card at `path`, validated; no sha256 check (for a card whose model is being made)."""
    try:
        return ModelCard.model_validate_json(path.read_bytes())
    except FileNotFoundError as exc:
        raise CardError(f"model card not found: {path}") from exc
    except ValidationError as exc:
        if exc.errors()[0]["type"] == "json_invalid":
            raise CardError(f"model card {path} is not valid JSON: {exc.errors()[0]['msg']}") from exc
        raise CardError(_one_line(path, exc)) from exc


def load(model_path: Path) -> ModelCard:
    """The card of `model_path`, checked against the model file's sha256."""
    model_path = Path(model_path)
    if not model_path.is_file():
        raise CardError(f"model file not found: {model_path}")
    card = parse(card_path(model_path))
    digest = sha256_file(model_path)
    if card.sha256 != digest:
        raise CardError(
            f"{model_path} does not match its card {card_path(model_path)}: sha256 {digest[:12]}… "
            f"vs {card.sha256[:12]}… (corrupt or replaced file)")
    return card


def save(card: ModelCard, model_path: Path) -> Path:
    """Write the card beside its model, validated again so a writer cannot store a bad field."""
    card = ModelCard.model_validate(card.to_json())
    path = card_path(model_path)
    path.write_text(json.dumps(card.to_json(), indent=2) + "\n")
    return path
