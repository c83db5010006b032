"""The API's response schemas, the error details the app sends, and the examples that the
OpenAPI document shows for them. The examples are built per app, from its settings (the
limits in the messages) and the model it serves, so they show what that service answers:
each output format's example is rendered by the real pipeline."""

from __future__ import annotations

import json
import logging
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from app.config import Settings
from nuclei.bundle import MEDIA_TYPE as ZIP
from nuclei.bundle import FormatError, parse_formats
from nuclei.encode import MEDIA_TYPES, OutputFormat
from nuclei.imageio import encode_png
from nuclei.pipeline import segment_bytes
from nuclei.registry import UnknownModel
from nuclei.scale import DEFAULT_SCALE, DiameterError, Sized, check

log = logging.getLogger("app")

# What each format is, for the route's documentation; a format missing here is still listed.
FORMATS = {
    "png": "single-channel 0/255 mask, same size as the input",
    "labels": "16-bit PNG, 0 background and 1..N one per nucleus",
    "rle": "JSON: the DSB2018 run-length encoding (1-based pixel numbers, column-major: top to "
           "bottom, then left to right; `start length` pairs) of the mask and of each nucleus",
    "csv": "Kaggle submission, `ImageId,EncodedPixels`, one row per nucleus",
    "geojson": "GeoJSON FeatureCollection, one polygon per nucleus in pixel coordinates (QuPath imports it)",
    "measurements": "CSV, one row per nucleus with its measurements",
    "preview": "8-bit PNG of the plane segmented (each channel stretched between its 0.5th and 99.5th "
               "percentiles), for drawing outlines on: the web page shows TIFF and 16-bit images with it",
}
# Schemas of the media types that are not application/json (that one is SegmentationRLE).
MEDIA_SCHEMAS = {
    "image/png": {"type": "string", "format": "binary"},
    "text/csv": {"type": "string"},
    "application/geo+json": {"type": "object", "description": "GeoJSON FeatureCollection"},
    ZIP: {"type": "string", "format": "binary", "description": "several formats at once: one entry each"},
}


def describe_format(fmt: OutputFormat) -> str:
    return FORMATS.get(fmt.value, f"media type {MEDIA_TYPES[fmt]}")


def format_detail(text: str) -> str:
    """What the app answers to `format=text` when it names no format it writes."""
    try:
        parse_formats(text)
    except FormatError as exc:
        return str(exc)
    raise ValueError(f"format={text} is a valid format list")


class Health(BaseModel):
    status: str = Field(examples=["ok"])


class ModelInfo(BaseModel):
    name: str = Field(description="the model card's name")
    version: str = Field(description="the model card's version")
    sha256: str = Field(description="sha256 of the ONNX file")


class Scores(BaseModel):
    images: int | None = Field(None, description="validation images scored")
    dsb_score: float | None = Field(None, description="DSB2018 score: mean AP over IoU 0.5…0.95")
    ap_50: float | None = Field(None, description="average precision at IoU 0.5")


class Metrics(Scores):
    """The card's headline validation scores (GET /model has them all)."""

    split: str | None = None
    by_modality: dict[str, Scores] | None = Field(None, description="per modality (nuclei.modality)")


class ModelEntry(BaseModel):
    """One ONNX file of the model folder: loaded, or refused and why."""

    name: str = Field(description="what `model=` takes: the card's name (the file's stem when the card is unreadable)")
    file: str = Field(description="the ONNX file in the model folder")
    default: bool = Field(description="the model answering requests that no card's modality claims")
    status: Literal["loaded", "refused"] = Field(description="whether the file now on disk is served")
    reason: str | None = Field(description="why it was refused (card, sha256, ONNX, name taken)")
    serving: bool = Field(description="`model=NAME` is answered: the file's model, or, when the file "
                                      "now on disk is refused, the version loaded before it")
    version: str | None = None
    sha256: str | None = None
    precision: Literal["int8", "float32"] | None = None
    modalities: list[str] = Field([], description="images of these modalities go to this model without `model=`")
    metrics: Metrics | None = None
    bytes: int | None = Field(description="size of the ONNX file on disk")
    memory_bytes: int | None = Field(description=(
        "the server's RSS growth while this model was loaded and warmed up (/proc/self/statm); "
        "null when not measured. A model's first large image grows it further (onnxruntime's arena)"))


class ModelList(BaseModel):
    default: str = Field(description="name of the default model (GET /model is its card)")
    models: list[ModelEntry]


def models_example() -> dict[str, Any]:
    """GET /models of a folder with the default, a stained-tissue specialist and a broken copy."""
    int8 = {"status": "loaded", "reason": None, "serving": True, "precision": "int8", "version": "1.3.0",
            "bytes": 2050202, "memory_bytes": 21_700_000}
    scores = {"split": "validation", "images": 60, "dsb_score": 0.5764, "ap_50": 0.7833,
              "by_modality": {"colour tissue": {"images": 10, "dsb_score": 0.3043, "ap_50": 0.5187}}}
    broken = ("models/stained-tissue.int8.onnx does not match its card models/stained-tissue.int8.json: "
              "sha256 3f1c0b9e27aa… vs 5d0e8e1f4b2c… (corrupt or replaced file)")
    listing = ModelList(default="nuclei-unet.int8", models=[
        ModelEntry(name="nuclei-unet.int8", file="nuclei-unet.int8.onnx", default=True, sha256="8b8c352a" + "0" * 56,
                   metrics=Metrics.model_validate(scores), **int8),
        ModelEntry(name="stained-tissue.int8", file="stained-tissue.int8.onnx", default=False,
                   sha256="5d0e8e1f" + "0" * 56, modalities=["colour tissue"], **int8 | {
                       "status": "refused", "reason": broken + "; stained-tissue.int8 1.0.0 keeps serving",
                       "version": "1.0.0"}),
    ])
    return {"summary": "the default, and a specialist whose new file is refused (its previous version serves)",
            "value": listing.model_dump(mode="json")}


class Instance(BaseModel):
    id: int = Field(description="label of this nucleus in format=labels (1..N)")
    rle: str = Field(description="DSB2018 run-length encoding of this nucleus")
    area: int = Field(description="pixels")
    bbox: list[int] = Field(description="[x, y, width, height]")
    centroid: list[float] = Field(description="[x, y]")


class SegmentationRLE(BaseModel):
    width: int
    height: int
    count: int = Field(description="number of nuclei")
    mask_rle: str = Field(description="RLE of the union of all nuclei (the format=png mask)")
    instances: list[Instance]
    diameter: float | None = Field(description=(
        "median nucleus diameter (px) the image was segmented at: `diameter` or the estimate"))
    quality: float | None = Field(None, description=(
        "with quality=true: the model's agreement with itself, 0 to 1 (nuclei.quality)"))
    flag: str | None = Field(None, description="with quality=true: `ok`, or `check` below the threshold")
    model: ModelInfo


class Limits(BaseModel):
    """What a client needs to stay within the server: the web page sizes its concurrency by it."""

    queue_depth: int = Field(description="requests admitted at once; more get 503")
    max_upload_bytes: int
    max_pixels: int
    api_key_required: bool


class ErrorBody(BaseModel):
    detail: str = Field(description="what went wrong, in one sentence a person can act on")


# Details the app's own handlers send (app.api); the examples below quote them.
BUSY = "server busy: too many images in progress; retry shortly"
NOT_LOADED = "model not loaded yet"  # app.deps and /ready
UNAUTHORIZED = "missing or wrong API key: send 'Authorization: Bearer <key>'"  # app.deps


MODEL = (
    "the model to run, by name (`GET /models` lists them: the model folder, which can change while "
    "the server runs). Default: the model whose card claims the image's modality (`modalities`, "
    "e.g. a stained-tissue model for colour images), else the default model. `X-Model-Name` says "
    "which answered and `X-Model-Route` why (`requested`, `modality: colour tissue`, `default`). "
    "A name not served: 422 listing those that are.")


def unknown_model_message(exc: UnknownModel) -> str:
    return f"{exc} (GET /models)"


def unknown_model_detail(name: str, available: list[str]) -> str:
    """The 422 detail of `model=name` (app.deps), as the app's handler of 422s words it."""
    return f"model: {unknown_model_message(UnknownModel(name, available))}"


DIAMETER = (
    "Median nucleus diameter in pixels, for nuclei far from the model's training size (40×/63× "
    "objectives): the image is resized so that its nuclei have the training diameter (the model "
    "card's `scale.diameter`, GET /model), segmented, and the labels are mapped back to full "
    "resolution. Default: estimated from a first pass; the image is resized only when the "
    "estimate is outside the card's `scale.low`..`scale.high`, so ordinary images cost one pass. "
    "The value used or estimated comes back in the header `X-Nucleus-Diameter` (and as `diameter` "
    "in format=rle). A value the model cannot rescale to its training size (1/4 to 8 times it), "
    "or one that would enlarge the image past MAX_PIXELS: 422.")


def diameter_detail(diameter: float) -> str:
    """The 422 detail of an out-of-range `diameter`, as nuclei.scale words it."""
    try:
        check(diameter, DEFAULT_SCALE, (1, 1), None)
    except DiameterError as exc:
        return str(exc)
    return f"diameter {diameter:g}"


def timeout_detail(limit_s: float) -> str:
    return f"segmentation took longer than the {limit_s:g} s limit"


def upload_detail(max_bytes: int) -> str:  # app.middleware.BodySizeLimit
    return f"upload larger than the limit of {max_bytes} bytes"


class _OneNucleus:
    """Stands in for the Segmenter: 'finds' one 2×2 nucleus, so that the real pipeline renders
    each format's example from a 4×3 image."""

    def __init__(self, info: dict[str, str]) -> None:
        self.info = info

    def segment_sized(self, image: np.ndarray, *_args: object, **_kwargs: object) -> Sized:
        labels = np.zeros(image.shape[:2], np.int32)
        labels[1:3, 1:3] = 1
        return Sized(labels, 2.3, 1.0)  # 2.3: the equivalent diameter of 4 pixels


EXAMPLE_IMAGE = np.array([[10, 10, 10, 10], [10, 200, 220, 10], [10, 210, 230, 10]], np.uint8)


def format_example(fmt: OutputFormat, model: dict[str, str]) -> dict[str, Any]:
    example: dict[str, Any] = {"summary": f"format={fmt.value}", "description": describe_format(fmt)}
    media_type = MEDIA_TYPES[fmt]
    if media_type.startswith("image/"):
        return example  # binary: described, not shown
    try:
        body = segment_bytes(_OneNucleus(model), encode_png(EXAMPLE_IMAGE), output_format=fmt,
                             filename="my_image.png", max_pixels=EXAMPLE_IMAGE.size).body
        example["value"] = json.loads(body) if media_type.endswith("json") else body.decode()
    except Exception:  # a broken example must not take the API's description down with it
        log.exception("cannot render the OpenAPI example of format=%s", fmt.value)
    return example


def format_examples(model: dict[str, str]) -> dict[str, Any]:
    """Media type → examples, one per output format, as a 4×3 upload named my_image.png with
    one 2×2 nucleus comes back."""
    content: dict[str, Any] = {}
    for fmt in OutputFormat:
        examples = content.setdefault(MEDIA_TYPES[fmt], {"examples": {}})["examples"]
        examples[fmt.value] = format_example(fmt, model)
    return content


def _examples(**details: str) -> dict[str, Any]:
    return {"application/json": {"examples": {
        name: {"summary": detail, "value": {"detail": detail}} for name, detail in details.items()}}}


def segment_examples(settings: Settings, model: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Status → content with examples, for POST /segment: one per output format for 200, and
    for each error status the details the app sends, with this app's limits in them."""
    side = int(settings.max_pixels**0.5) + 1
    return {
        "200": format_examples(model),
        "400": _examples(
            empty="the uploaded file is empty",
            corrupt="the PNG data is truncated or corrupt",
            truncated="the JPEG file is truncated (no end marker)"),
        "401": _examples(unauthorized=UNAUTHORIZED),
        "413": _examples(
            upload=upload_detail(settings.max_upload_bytes),
            pixels=f"image is {side}×{side} = {side * side} pixels; the limit is {settings.max_pixels} pixels"),
        "415": _examples(
            unknown="unrecognised file type: upload a PNG, JPEG, TIFF or BMP image",
            gif="GIF is not supported: upload a PNG, JPEG, TIFF or BMP image",
            channels="5-channel images are not supported (grey, RGB or RGBA only)"),
        "422": _examples(
            threshold="threshold: Input should be less than or equal to 1",
            diameter=diameter_detail(1000),
            format=format_detail("jpeg"),
            file="file: Field required",
            model=unknown_model_detail("stained", [model["name"]]),
            labels="70000 nuclei do not fit a 16-bit label image; use format=rle"),
        "503": _examples(busy=BUSY, loading=NOT_LOADED),
        "504": _examples(timeout=timeout_detail(settings.request_timeout_s)),
    }


def other_examples() -> dict[tuple[str, str], dict[str, dict[str, Any]]]:
    """(path, method) → status → content with examples, for the other routes' errors."""
    return {
        ("/ready", "get"): {"503": _examples(loading=NOT_LOADED)},
        ("/model", "get"): {"401": _examples(unauthorized=UNAUTHORIZED),
                            "503": _examples(loading=NOT_LOADED)},
        ("/models", "get"): {"200": {"application/json": {"examples": {"models": models_example()}}},
                             "401": _examples(unauthorized=UNAUTHORIZED),
                             "503": _examples(loading=NOT_LOADED)},
    }
