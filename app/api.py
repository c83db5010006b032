"""Routes, and error handlers that answer input errors with the status `nuclei.errors` gives
them (the response schemas and their examples: app.schemas). Handlers validate, delegate to
`nuclei.pipeline`, and return."""

from __future__ import annotations

import logging
import re
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, File, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.admission import InferenceTimeout, Overloaded
from app.deps import AdmissionDep, Authorized, ChooseDep, MetricsDep, RegistryDep, SegmenterDep, SettingsDep
from app.schemas import (
    BUSY,
    DIAMETER,
    MEDIA_SCHEMAS,
    NOT_LOADED,
    ErrorBody,
    Health,
    Limits,
    ModelList,
    SegmentationRLE,
    describe_format,
    timeout_detail,
)
from nuclei.bundle import MEDIA_TYPE as ZIP
from nuclei.bundle import parse_formats
from nuclei.cpu import int8_report
from nuclei.encode import MEDIA_TYPES, OutputFormat, image_id
from nuclei.errors import STATUSES
from nuclei.naming import model_headers
from nuclei.pipeline import segment_bytes
from nuclei.planes import HEADER as PLANE_WARNING
from nuclei.quality import CHECK, FLAG_HEADER, FLAGS, HEADER
from nuclei.quality import THRESHOLD as QUALITY_THRESHOLD

log = logging.getLogger("app")
router = APIRouter()


SEGMENT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": " ".join(f"`{f.value}`: {describe_format(f)}." for f in OutputFormat) + (
            " The header `X-Nuclei-Count` gives the number of nuclei in every format, "
            "`X-Nucleus-Diameter` the median nucleus diameter (px) segmented at: `diameter` or the estimate, "
            "`X-Model-Name`, `X-Model-Version` and `X-Model-Sha256` the model that answered and `X-Model-Route` "
            "why that one (`requested`, `modality: colour tissue`, `default`: see `model`); "
            f"with `quality=true`, `{HEADER}` the trust signal and `{FLAG_HEADER}` `ok` or `check`."),
        "model": SegmentationRLE,  # application/json, by reference to components.schemas
        "content": {media: {"schema": MEDIA_SCHEMAS.get(media, {})}
                    for media in dict.fromkeys([*MEDIA_TYPES.values(), ZIP]) if media != "application/json"},
    },
    400: {"model": ErrorBody, "description": "empty, unreadable or corrupt image"},
    401: {"model": ErrorBody, "description": "API_KEY is set and the bearer token is missing or wrong"},
    413: {"model": ErrorBody, "description": "upload over MAX_UPLOAD_BYTES or image over MAX_PIXELS"},
    415: {"model": ErrorBody, "description": "not PNG, JPEG, TIFF or BMP (GIF included), or over 4 channels"},
    422: {"model": ErrorBody, "description": (
        "bad parameters (format, threshold, diameter out of range, a model not served, missing file), "
        "or more nuclei than format=labels can number")},
    503: {"model": ErrorBody, "description": "queue full or model not ready: retry after Retry-After"},
    504: {"model": ErrorBody, "description": "inference exceeded REQUEST_TIMEOUT_S"},
}
THRESHOLD = """Foreground probability threshold, 0 to 1: a pixel belongs to a nucleus where the \
model's foreground probability exceeds it. Default: the model card's `postprocess.foreground` \
(GET /model); a value given here replaces it for this request.

It moves the seed threshold too (where a nucleus may start, and what splits touching nuclei): \
the seed threshold used is max(card's `postprocess.seed`, threshold).
- Above the card's seed threshold it raises both: nuclei shrink, faint ones disappear, and \
touching nuclei are split only where the model is that sure.
- Below it, only the foreground moves: nuclei grow outward, but no nucleus starts below the \
card's seed threshold (a faint blob that touches no seed still counts as a nucleus of its own \
if it has at least `postprocess.min_area` pixels)."""


def attachment(filename: str | None, extension: str) -> str:
    """Content-Disposition naming the download after the upload. Header values are Latin-1
    on the wire, so a non-ASCII name goes in RFC 6266 `filename*` beside an ASCII fallback."""
    name = f"{image_id(filename)}.{extension}"
    # The quoted fallback holds printable ASCII only: no quote, backslash or line break.
    fallback = re.sub(r'[^\x20-\x7e]|["\\]', "_", name)
    if fallback == name:
        return f'attachment; filename="{name}"'
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name)}"


def provenance(info: dict[str, str], route: str, count: int, diameter: float) -> dict[str, str]:
    """On every /segment response, whatever the format: which model found how many nuclei,
    why that model, and at which nucleus size."""
    return model_headers(info, route) | {"X-Nuclei-Count": str(count), "X-Nucleus-Diameter": f"{diameter:.1f}"}


@router.post("/segment", response_model=None, responses=SEGMENT_RESPONSES,
             dependencies=[Authorized], summary="Find the nuclei in one image")
async def segment(
    request: Request,
    file: Annotated[UploadFile, File(description=(
        "PNG, JPEG, TIFF (8/16-bit, float) or BMP; grey, grey+alpha, RGB or RGBA. A multi-page "
        "TIFF is read from the page `page` chooses; GIF, animated or not, is refused with 415"))],
    choose: ChooseDep,
    admission: AdmissionDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    format: Annotated[str, Query(description=" | ".join(OutputFormat) + (
        ": see the 200 response. Several, comma-separated (`labels,measurements`): one "
        "segmentation, every output in one `application/zip`, entries `<image><suffix>` "
        "(`.labels.png`, `.measurements.csv`, …)"), examples=["png", "labels,measurements"])] = "png",
    threshold: Annotated[float | None, Query(
        ge=0, le=1, allow_inf_nan=False,
        description=THRESHOLD)] = None,
    page: Annotated[int, Query(ge=0, description=(
        "plane of a TIFF (0 = first): by the file's axes (OME, ImageJ) its Z and T planes, channels "
        "left out; in a plain multi-page TIFF its page; out of range: 422"))] = 0,
    channel: Annotated[int | None, Query(ge=0, description=(
        "segment this channel alone (0 = first), stored as a sample or, by the file's axes, as pages; "
        "default: grey and colour as they are, and channel 0 of an image of several non-colour channels "
        f"(with `{PLANE_WARNING}`); out of range: 422"))] = None,
    pixel_size: Annotated[float | None, Query(gt=0, lt=1000, allow_inf_nan=False, description=(
        "µm per pixel, for the _um columns of format=measurements; default: the TIFF's "
        "resolution tags when it has them"))] = None,
    diameter: Annotated[float | None, Query(gt=0, allow_inf_nan=False, description=DIAMETER)] = None,
    quality: Annotated[bool, Query(description=(
        "also say how far to trust the result: the model's agreement with itself on the image "
        f"flipped and transposed, 0 to 1, in `{HEADER}` (and `quality` in rle, GeoJSON and "
        f"measurements); below {QUALITY_THRESHOLD:g} `{FLAG_HEADER}: check`, that is: {FLAGS[CHECK]}. "
        "One more pass of the model"))] = False,
) -> Response:
    formats = parse_formats(format)
    async with admission.slot():
        data = await file.read()
        result = await admission.run(lambda: segment_bytes(
            choose, data, output_format=formats, filename=file.filename,
            max_pixels=settings.max_pixels, threshold=threshold, page=page, channel=channel,
            pixel_size_um=pixel_size, diameter=diameter, quality=quality))
    request.state.image_size = f"{result.width}x{result.height}"
    request.state.nuclei = result.count
    request.state.model = result.model["name"]
    metrics.record_image(result.height, result.width, result.count, result.model["name"])
    headers = provenance(result.model, result.route, result.count, result.diameter) | {
        "X-Image-Plane": result.plane.describe()} | (result.quality.headers() if result.quality else {})
    if result.plane.warning:
        headers[PLANE_WARNING] = result.plane.warning
    if formats == (OutputFormat.csv,) or len(formats) > 1:
        headers["Content-Disposition"] = attachment(file.filename, "csv" if len(formats) == 1 else "zip")
    return Response(result.body, media_type=result.media_type, headers=headers)


@router.get("/health", response_model=Health, summary="Liveness: the process serves")
async def health() -> Health:
    return Health(status="ok")


@router.get("/ready", response_model=Health, responses={503: {"model": ErrorBody}},
            summary="Readiness: model loaded and warmed up")
async def ready(request: Request) -> Health | JSONResponse:
    if not getattr(request.app.state, "ready", False):
        return JSONResponse({"detail": NOT_LOADED}, 503, headers={"Retry-After": "5"})
    return Health(status="ready")


@router.get("/model", dependencies=[Authorized], summary="The model card of the default model",
            responses={401: SEGMENT_RESPONSES[401], 503: {"model": ErrorBody, "description": NOT_LOADED}})
async def model(segmenter: SegmenterDep) -> dict[str, Any]:
    """The card, and what this CPU makes of an INT8 model (`nuclei.cpu`)."""
    derived = segmenter.card.derived  # None: a float32 model
    reduce_range = derived.get("settings", {}).get("reduce_range", False) if derived else None
    return segmenter.card.to_json() | {"runtime": int8_report(reduce_range)}


@router.get("/models", response_model=ModelList, dependencies=[Authorized],
            summary="Every model of the model folder: loaded or refused, and why",
            responses={401: SEGMENT_RESPONSES[401], 503: {"model": ErrorBody, "description": NOT_LOADED}})
async def models(registry: RegistryDep) -> ModelList:
    """What `model=` takes, what each card claims (`modalities`), its scores and size; a file
    refused (with `reason`) while the others serve. Read after a check of the folder, so a
    model file just added or changed is listed as loaded or refused."""
    return ModelList(default=registry.default.card.name, models=registry.entries())


@router.get("/limits", response_model=Limits, summary="The server's limits: queue depth, upload and image size")
async def limits(settings: SettingsDep) -> Limits:
    return Limits(queue_depth=settings.queue_depth, max_upload_bytes=settings.max_upload_bytes,
                  max_pixels=settings.max_pixels, api_key_required=settings.api_key is not None)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def prometheus(metrics: MetricsDep) -> Response:
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _error(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Bad input → a 4xx a person can act on; never a 500."""
    for exc_type, status in STATUSES:
        app.add_exception_handler(exc_type, lambda _r, e, s=status: _error(s, str(e)))

    async def overloaded(request: Request, exc: Exception) -> JSONResponse:
        request.app.state.metrics.rejected.labels("queue_full").inc()
        return _error(503, BUSY, {"Retry-After": "1"})

    async def timed_out(request: Request, exc: Exception) -> JSONResponse:
        request.app.state.metrics.rejected.labels("timeout").inc()
        limit = request.app.state.settings.request_timeout_s
        return _error(504, timeout_detail(limit))

    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query"))
            parts.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
        return _error(422, "; ".join(parts) or "invalid request")

    app.add_exception_handler(Overloaded, overloaded)
    app.add_exception_handler(InferenceTimeout, timed_out)
    app.add_exception_handler(RequestValidationError, invalid)
