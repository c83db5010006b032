"""What handlers receive, as `Annotated` aliases so signatures read like declarations.

The dependencies are `async def` although they never await: FastAPI runs a plain `def`
dependency on its thread pool, a thread hand-off per dependency per request."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.admission import Admission
from app.config import Settings
from app.schemas import MODEL, NOT_LOADED, unknown_model_message
from app.telemetry import Metrics
from nuclei.pipeline import Choose
from nuclei.registry import REQUESTED, Choice, Registry, UnknownModel
from nuclei.segmenter import Segmenter


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_registry(request: Request) -> Registry:
    """The models, brought up to date with the folder: a stat per file on the event loop, and
    a load, when a file changed, on a worker thread (the request waits for it, then sees it)."""
    registry = getattr(request.app.state, "registry", None)
    if registry is None:
        raise HTTPException(503, NOT_LOADED, headers={"Retry-After": "5"})
    if registry.stale():
        await run_in_threadpool(registry.refresh)
    return registry


async def get_segmenter(registry: Annotated[Registry, Depends(get_registry)]) -> Segmenter:
    """The default model (GET /model)."""
    return registry.default


async def choose_model(
    registry: Annotated[Registry, Depends(get_registry)],
    model: Annotated[str | None, Query(description=MODEL, examples=["nuclei-unet.int8"])] = None,
) -> Choose:
    """How this request's model is picked: the one named, held from now on, or by the image."""
    if model is None:
        return registry.route
    try:
        chosen = Choice(registry.get(model), REQUESTED)
    except UnknownModel as exc:  # worded and placed as FastAPI's own 422s: loc query.model
        raise RequestValidationError([{"type": "value_error", "loc": ("query", "model"),
                                       "msg": unknown_model_message(exc), "input": model}]) from exc
    return lambda _image: chosen


async def get_admission(request: Request) -> Admission:
    return request.app.state.admission


async def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


_bearer = HTTPBearer(auto_error=False, description="needed only when API_KEY is set")


async def require_api_key(
    settings: Annotated[Settings, Depends(get_settings)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    if settings.api_key is None:
        return
    expected = settings.api_key.get_secret_value().encode()
    given = credentials.credentials.encode() if credentials else b""
    if not hmac.compare_digest(given, expected):
        raise HTTPException(401, "missing or wrong API key: send 'Authorization: Bearer <key>'",
                            headers={"WWW-Authenticate": "Bearer"})


SettingsDep = Annotated[Settings, Depends(get_settings)]
SegmenterDep = Annotated[Segmenter, Depends(get_segmenter)]
RegistryDep = Annotated[Registry, Depends(get_registry)]
ChooseDep = Annotated[Choose, Depends(choose_model)]
AdmissionDep = Annotated[Admission, Depends(get_admission)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
Authorized = Depends(require_api_key)
