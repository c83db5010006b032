"""What handlers receive, as `Annotated` aliases so signatures read like declarations.

The dependencies are `async def` although they never await: FastAPI runs a plain `def`
dependency on its thread pool, a thread hand-off per dependency per request."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.admission import Admission
from app.config import Settings
from app.telemetry import Metrics
from nuclei.segmenter import Segmenter


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_segmenter(request: Request) -> Segmenter:
    segmenter = getattr(request.app.state, "segmenter", None)
    if segmenter is None:
        raise HTTPException(503, "model not loaded yet", headers={"Retry-After": "5"})
    return segmenter


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
AdmissionDep = Annotated[Admission, Depends(get_admission)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
Authorized = Depends(require_api_key)
