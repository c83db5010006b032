"""schemathesis, from the app's own OpenAPI schema: generated requests find no server error,
and every response matches what the schema declares."""

from __future__ import annotations

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
