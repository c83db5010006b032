"""The API description as a new user meets it: /openapi.json is a valid OpenAPI document
(client generators accept it), /docs and /redoc work without internet, and the examples
show what this service answers: its package version, its model, its real error details."""

from __future__ import annotations

import importlib.metadata
import re
import threading
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest

from app.schemas import ErrorBody, SegmentationRLE
from nuclei.encode import MEDIA_TYPES, OutputFormat
from tests.conftest import blocking_segment, make_client, png_bytes, read_sample

ERROR_STATUSES = {"400", "401", "413", "415", "422", "503", "504"}


def validate_openapi(spec: dict[str, Any]) -> None:
    try:
        from openapi_spec_validator import validate
    except ImportError:
        pytest.fail("openapi-spec-validator is missing: pip install 'openapi-spec-validator==0.9.0' "
                    "(or pip install -e '.[dev]')")
    validate(spec)


def refs(node: Any) -> list[str]:
    """Every $ref in a document."""
    found = []
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            found.append(node["$ref"])
        node = list(node.values())
    if isinstance(node, list):
        for value in node:
            found += refs(value)
    return found


def segment_responses(spec: dict[str, Any]) -> dict[str, Any]:
    return spec["paths"]["/segment"]["post"]["responses"]


def error_details(response: dict[str, Any]) -> list[str]:
    examples = response["content"]["application/json"]["examples"]
    return [ErrorBody.model_validate(e["value"]).detail for e in examples.values()]


# ---------------------------------------------------------------- the document is valid


def test_openapi_document_is_valid(client):
    spec = client.get("/openapi.json").json()
    validate_openapi(spec)
    schemas = spec["components"]["schemas"]
    for ref in refs(spec):  # what the issue saw: references to schemas that were never defined
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas, ref
    assert "$defs" not in str(spec["paths"])  # no schema carries its own definitions inline
    rle = segment_responses(spec)["200"]["content"]["application/json"]["schema"]
    assert rle == {"$ref": "#/components/schemas/SegmentationRLE"}
    assert {"SegmentationRLE", "Instance", "ModelInfo", "ErrorBody"} <= set(schemas)


def test_openapi_document_is_valid_before_the_model_loads():
    """Served before the lifespan has run (and with other limits): still valid."""
    client = make_client(max_upload_bytes=4096, api_key="key")
    validate_openapi(client.get("/openapi.json").json())


# ---------------------------------------------------------------- /docs and /redoc, offline


class Links(HTMLParser):
    """(tag, rel, url) of every src and href in a page."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        for name in ("src", "href"):
            if found.get(name) is not None:
                self.links.append((tag, found.get("rel") or "", found[name]))


def links(html: str) -> list[tuple[str, str, str]]:
    parser = Links()
    parser.feed(html)
    return parser.links


# What each kind of asset must be to make the page work: content type and a plausible size.
ASSETS = {"script": ("javascript", 100_000), "stylesheet": ("text/css", 10_000), "icon": ("image/", 100)}


@pytest.mark.parametrize(("page", "needs"), [("/docs", {"script", "stylesheet", "icon"}),
                                              ("/redoc", {"script", "icon"})])
def test_docs_page_is_served_entirely_by_the_app(client, page, needs):
    response = client.get(page)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    html = response.text
    assert "http://" not in html and "https://" not in html
    found = links(html)
    kinds = set()
    for tag, rel, url in found:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc and url.startswith("/") and not url.startswith("//"), url
        kind = "script" if tag == "script" else "stylesheet" if "stylesheet" in rel else "icon"
        kinds.add(kind)
        asset = client.get(url)
        content_type, min_size = ASSETS[kind]
        assert asset.status_code == 200, url
        assert content_type in asset.headers["content-type"] and len(asset.content) >= min_size, url
    assert kinds == needs, found
    spec_url = re.search(r"""url: '([^']+)'|spec-url="([^"]+)\"""", html)
    assert spec_url is not None
    assert client.get(spec_url.group(1) or spec_url.group(2)).status_code == 200


def test_swagger_ui_calls_no_outside_service(client):
    html = client.get("/docs").text
    assert '"validatorUrl": null' in html  # else Swagger UI shows swagger.io's validator badge
    assert "oauth2RedirectUrl" not in html
    assert client.get("/docs/oauth2-redirect").status_code == 404


# ---------------------------------------------------------------- versions and examples


def test_versions_come_from_the_package_and_the_loaded_model(client):
    spec = client.get("/openapi.json").json()
    assert spec["info"]["version"] == importlib.metadata.version("nuclei-segmentation")
    card = client.get("/model").json()
    info = {k: card[k] for k in ("name", "version", "sha256")}
    assert spec["info"]["x-model"] == info
    assert f"{card['name']} {card['version']}" in spec["info"]["description"]
    example = segment_responses(spec)["200"]["content"]["application/json"]["examples"]["rle"]["value"]
    assert example["model"] == info
    answered = client.post("/segment", params={"format": "rle"},
                           files={"file": ("a.png", read_sample("fluorescence_256x256")[0])}).json()
    assert answered["model"] == example["model"]


def test_api_version_is_read_from_the_package_metadata(monkeypatch):
    """Not a constant that happens to equal it: another installed version shows."""
    import app.main

    monkeypatch.setattr(app.main, "version", lambda name: {"nuclei-segmentation": "9.8.7"}[name])
    assert make_client().get("/openapi.json").json()["info"]["version"] == "9.8.7"


def test_each_format_and_each_error_status_has_an_example(client):
    responses = segment_responses(client.get("/openapi.json").json())
    content = responses["200"]["content"]
    named = {name for media in content.values() for name in media.get("examples", {})}
    assert named == {f.value for f in OutputFormat}
    for fmt in OutputFormat:  # rendered by the pipeline: all but the binary ones show a value
        example = content[MEDIA_TYPES[fmt]]["examples"][fmt.value]
        assert example["summary"] == f"format={fmt.value}" and example["description"]
        assert MEDIA_TYPES[fmt].startswith("image/") or example["value"], fmt
    SegmentationRLE.model_validate(content["application/json"]["examples"]["rle"]["value"])
    csv = content["text/csv"]["examples"]["csv"]["value"]
    assert csv.startswith("ImageId,EncodedPixels\n")
    errors = {s for s in responses if s.startswith(("4", "5"))}
    assert errors >= ERROR_STATUSES
    for status in errors:
        assert error_details(responses[status]), status


def shape(detail: str) -> str:
    return re.sub(r"\d+(\.\d+)?(e-?\d+)?", "#", detail)


def assert_documented(spec: dict[str, Any], response, status: int, exact: bool = False) -> None:
    """The detail the app answered is one its document shows for that status: word for word
    where the example carries this app's own limit, else up to the numbers in it."""
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    documented = error_details(segment_responses(spec)[str(status)])
    if exact:
        assert detail in documented, (detail, documented)
    else:
        assert shape(detail) in {shape(d) for d in documented}, (detail, documented)


def test_error_examples_are_what_the_app_answers(monkeypatch):
    auth = {"Authorization": "Bearer key"}
    small = png_bytes(np.zeros((40, 40), np.uint8))
    with make_client(api_key="key", max_upload_bytes=4096, max_pixels=32 * 32) as client:
        spec = client.get("/openapi.json").json()

        def post(data: bytes, headers=auth, **params):
            return client.post("/segment", params=params, headers=headers, files={"file": ("x.png", data)})

        assert_documented(spec, post(small, headers={}), 401, exact=True)
        assert_documented(spec, post(b""), 400)
        assert_documented(spec, post(b"not an image at all"), 415)
        assert_documented(spec, post(b"GIF89a" + bytes(16)), 415)
        assert_documented(spec, post(bytes(5000)), 413, exact=True)
        assert_documented(spec, post(small), 413)
        assert_documented(spec, post(small, threshold=1.5), 422)
        assert_documented(spec, post(small, format="jpeg"), 422)
        assert_documented(spec, client.post("/segment", headers=auth), 422)
    release = threading.Event()
    with make_client(request_timeout_s=0.05) as client:
        blocking_segment(monkeypatch, client, release, threading.Event())
        spec = client.get("/openapi.json").json()
        assert_documented(spec, client.post("/segment", files={"file": ("x.png", small)}), 504, exact=True)
        release.set()
    client = make_client()  # not entered: no model yet
    spec = client.get("/openapi.json").json()
    assert_documented(spec, client.post("/segment", files={"file": ("x.png", small)}), 503, exact=True)
    ready = spec["paths"]["/ready"]["get"]["responses"]["503"]
    assert client.get("/ready").json()["detail"] in error_details(ready)


def test_threshold_documents_its_effect_on_the_seed_threshold(client):
    spec = client.get("/openapi.json").json()
    params = {p["name"]: p for p in spec["paths"]["/segment"]["post"]["parameters"]}
    text = params["threshold"]["description"]
    assert "seed threshold" in text and "max(card's `postprocess.seed`, threshold)" in text


def test_the_bearer_token_is_optional_when_the_server_runs_open_and_required_with_a_key():
    """Generated clients send a header only where `security` requires one."""
    for api_key, expected in ((None, [{}, {"HTTPBearer": []}]), ("secret", [{"HTTPBearer": []}])):
        with make_client(api_key=api_key) as c:
            spec = c.get("/openapi.json").json()
        validate_openapi(spec)
        assert spec["paths"]["/segment"]["post"]["security"] == expected
        assert spec["paths"]["/model"]["get"]["security"] == expected
