"""schemathesis, from the app's own OpenAPI schema: generated requests find no server error,
and every response matches what the schema declares; in-process (ASGI) and against the live
server (`python -m app` over HTTP, as `make test` runs it)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.config import Settings
from app.main import create_app
from bench.server import serve
from tests.conftest import MODEL

FUZZ_APP = create_app(Settings(model_path=MODEL, max_pixels=256 * 256, max_upload_bytes=256 * 1024))
SCHEMA = schemathesis.openapi.from_asgi("/openapi.json", FUZZ_APP)


@SCHEMA.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_openapi_fuzz_finds_no_server_error(case):
    """No 5xx, and responses match what the schema declares."""
    response = case.call()
    case.validate_response(response, checks=[
        not_a_server_error, status_code_conformance, content_type_conformance,
        response_headers_conformance, response_schema_conformance])


@pytest.fixture(scope="module")
def live() -> Iterator[str]:
    """The service as deployed: `python -m app` on a port of its own, open (no API_KEY)."""
    with serve({"max_pixels": 256 * 256, "max_upload_bytes": 256 * 1024}) as server:
        yield server.url


LIVE_SPEC = FUZZ_APP.openapi()  # what `python -m app` with the same settings serves
LIVE = schemathesis.openapi.from_dict(LIVE_SPEC)


def test_the_live_server_serves_the_schema_fuzzed(live: str) -> None:
    assert httpx.get(f"{live}/openapi.json").json()["paths"] == LIVE_SPEC["paths"]


@LIVE.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_the_live_server_answers_no_5xx_and_nothing_off_its_schema(case, live: str):
    """Over HTTP, through uvicorn and the middleware: what a generated client meets."""
    response = case.call(base_url=live)
    case.validate_response(response, checks=[
        not_a_server_error, status_code_conformance, content_type_conformance,
        response_headers_conformance, response_schema_conformance])
