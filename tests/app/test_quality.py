"""POST /segment?quality=true: the trust signal in the headers of every format, in the JSON
documents, and nothing of it (and no extra pass) without the parameter."""

from __future__ import annotations

import json

import pytest

from nuclei.encode import OutputFormat
from nuclei.quality import FLAG_HEADER, HEADER, THRESHOLD
from tests.conftest import make_client, post, read_sample

SAMPLE = read_sample("fluorescence_256x256")[0]


@pytest.mark.parametrize("fmt", [*OutputFormat, "labels,measurements"])
def test_every_format_carries_the_signal_when_asked(client, fmt):
    r = post(client, SAMPLE, "a.png", format=fmt, quality="true")
    assert r.status_code == 200, r.text
    score = float(r.headers[HEADER])
    assert 0 <= score <= 1
    assert r.headers[FLAG_HEADER] == ("check" if score < THRESHOLD else "ok")
    if fmt == "rle":
        body = r.json()
        assert (body["quality"], body["flag"]) == (score, r.headers[FLAG_HEADER])
    if fmt == "geojson":
        assert json.loads(r.content)["properties"] == {"quality": score, "flag": r.headers[FLAG_HEADER]}


def test_without_quality_nothing_changes(client):
    plain, rated = (post(client, SAMPLE, "a.png", format="rle", **q) for q in ({}, {"quality": "false"}))
    assert HEADER not in plain.headers and FLAG_HEADER not in plain.headers
    assert plain.content == rated.content
    assert "quality" not in plain.json()
    asked = post(client, SAMPLE, "a.png", format="rle", quality="true").json()
    assert {k: v for k, v in asked.items() if k not in ("quality", "flag")} == plain.json()


def test_a_page_on_another_origin_may_read_the_headers():
    with make_client(cors_origins=["http://example.org"]) as other:
        r = other.post("/segment", params={"quality": "true"}, headers={"Origin": "http://example.org"},
                       files={"file": ("a.png", SAMPLE)})
    assert r.headers["access-control-allow-origin"] == "http://example.org"
    exposed = {h.strip().lower() for h in r.headers["access-control-expose-headers"].split(",")}
    assert {HEADER.lower(), FLAG_HEADER.lower()} <= exposed


def test_quality_must_be_a_boolean(client):
    r = post(client, SAMPLE, "a.png", quality="maybe")
    assert r.status_code == 422
    assert "quality" in r.json()["detail"]
