"""Routes, response schemas and the mapping of errors to HTTP statuses. Handlers validate,
delegate to `nuclei.pipeline`, and return."""

from __future__ import annotations

import logging
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, File, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from app.admission import InferenceTimeout, Overloaded
from app.deps import AdmissionDep, Authorized, MetricsDep, SegmenterDep, SettingsDep
from nuclei.encode import OutputFormat, TooManyNucleiError, image_id
from nuclei.imageio import ImageError, ImageTooLargeError, UnsupportedImageError
from nuclei.normalize import ChannelError
from nuclei.pipeline import segment_bytes

log = logging.getLogger("app")
router = APIRouter()


class Health(BaseModel):
    status: str = Field(examples=["ok"])


class ModelInfo(BaseModel):
    name: str
    version: str
    sha256: str


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
    model: ModelInfo


class ErrorBody(BaseModel):
    detail: str


RLE_EXAMPLE = {
    "width": 4, "height": 3, "count": 1, "mask_rle": "5 2 8 2",
    "instances": [{"id": 1, "rle": "5 2 8 2", "area": 4, "bbox": [1, 1, 2, 2],
                   "centroid": [1.5, 1.5]}],
    "model": {"name": "nuclei-unet", "version": "1.0.0", "sha256": "…"},
}
SEGMENT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": (
            "`png`: single-channel 0/255 mask, same size as the input. "
            "`labels`: 16-bit PNG, 0 background and 1..N one per nucleus. "
            "`rle`: JSON below; RLE is the DSB2018 encoding (1-based pixel numbers, column-major: "
            "top to bottom, then left to right; `start length` pairs). "
            "`csv`: Kaggle submission, `ImageId,EncodedPixels`, one row per nucleus."
        ),
        "content": {
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "application/json": {"schema": SegmentationRLE.model_json_schema(
                ref_template="#/components/schemas/{model}"), "example": RLE_EXAMPLE},
            "text/csv": {"example": "ImageId,EncodedPixels\nmy_image,5 2 8 2\n"},
        },
    },
    400: {"model": ErrorBody, "description": "empty, unreadable or corrupt image"},
    401: {"model": ErrorBody, "description": "API_KEY is set and the bearer token is missing or wrong"},
    413: {"model": ErrorBody, "description": "upload over MAX_UPLOAD_BYTES or image over MAX_PIXELS"},
    415: {"model": ErrorBody, "description": "not PNG, JPEG, TIFF or BMP (GIF included), or over 4 channels"},
    422: {"model": ErrorBody, "description": "bad parameters (format, threshold, missing file)"},
    503: {"model": ErrorBody, "description": "queue full or model not ready: retry after Retry-After"},
    504: {"model": ErrorBody, "description": "inference exceeded REQUEST_TIMEOUT_S"},
}


def attachment(filename: str | None, extension: str) -> str:
    """Content-Disposition naming the download after the upload. Header values are Latin-1
    on the wire, so a non-ASCII name goes in RFC 6266 `filename*` beside an ASCII fallback."""
    name = f"{image_id(filename)}.{extension}"
    fallback = name.encode("ascii", "replace").decode().replace("?", "_")
    if fallback == name:
        return f'attachment; filename="{name}"'
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name)}"


@router.post("/segment", response_model=None, responses=SEGMENT_RESPONSES,
             dependencies=[Authorized], summary="Find the nuclei in one image")
async def segment(
    request: Request,
    file: Annotated[UploadFile, File(description=(
        "PNG, JPEG, TIFF (8/16-bit, float) or BMP; grey, grey+alpha, RGB or RGBA. A multi-page "
        "TIFF is read from its first page; GIF, animated or not, is refused with 415"))],
    segmenter: SegmenterDep,
    admission: AdmissionDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    format: Annotated[OutputFormat, Query(description="png | labels | rle | csv")] = OutputFormat.png,
    threshold: Annotated[float | None, Query(
        ge=0, le=1, allow_inf_nan=False,
        description="foreground probability threshold; default: the model card's")] = None,
) -> Response:
    async with admission.slot():
        data = await file.read()
        result = await admission.run(lambda: segment_bytes(
            segmenter, data, output_format=format, filename=file.filename,
            max_pixels=settings.max_pixels, threshold=threshold))
    request.state.image_size = f"{result.width}x{result.height}"
    request.state.nuclei = result.count
    metrics.record_image(result.height, result.width, result.count)
    headers = {"X-Nuclei-Count": str(result.count)}
    if format is OutputFormat.csv:
        headers["Content-Disposition"] = attachment(file.filename, "csv")
    return Response(result.body, media_type=result.media_type, headers=headers)


@router.get("/health", response_model=Health, summary="Liveness: the process serves")
async def health() -> Health:
    return Health(status="ok")


@router.get("/ready", response_model=Health, responses={503: {"model": ErrorBody}},
            summary="Readiness: model loaded and warmed up")
async def ready(request: Request) -> Health | JSONResponse:
    if not getattr(request.app.state, "ready", False):
        return JSONResponse({"detail": "model not loaded yet"}, 503, headers={"Retry-After": "5"})
    return Health(status="ready")


@router.get("/model", dependencies=[Authorized], summary="The model card of the loaded model")
async def model(segmenter: SegmenterDep) -> dict[str, Any]:
    return segmenter.card.to_json()


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def prometheus(metrics: MetricsDep) -> Response:
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _error(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Bad input → a 4xx a person can act on; never a 500."""
    statuses: list[tuple[type[Exception], int]] = [
        (ImageTooLargeError, 413), (UnsupportedImageError, 415), (ChannelError, 415),
        (ImageError, 400), (TooManyNucleiError, 422),
    ]
    for exc_type, status in statuses:
        app.add_exception_handler(exc_type, lambda _r, e, s=status: _error(s, str(e)))

    async def overloaded(request: Request, exc: Exception) -> JSONResponse:
        request.app.state.metrics.rejected.labels("queue_full").inc()
        return _error(503, "server busy: too many images in progress; retry shortly",
                      {"Retry-After": "1"})

    async def timed_out(request: Request, exc: Exception) -> JSONResponse:
        request.app.state.metrics.rejected.labels("timeout").inc()
        limit = request.app.state.settings.request_timeout_s
        return _error(504, f"segmentation took longer than the {limit:g} s limit")

    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query"))
            parts.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
        return _error(422, "; ".join(parts) or "invalid request")

    app.add_exception_handler(Overloaded, overloaded)
    app.add_exception_handler(InferenceTimeout, timed_out)
    app.add_exception_handler(RequestValidationError, invalid)
