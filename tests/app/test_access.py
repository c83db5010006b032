"""Who may call what: the optional API key guards /segment and /model only, compared in
constant time; CORS is off unless origins are configured."""

from __future__ import annotations

import hmac

from tests.conftest import GOOD, make_client, upload


def test_api_key_guards_segment_and_model_only(monkeypatch):
    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr("app.deps.hmac.compare_digest", lambda a, b: calls.append(1) or real(a, b))
    with make_client(api_key="s3cret-key") as client:
        for auth in (None, "Bearer wrong", "Bearer s3cret-ke", "Basic czNjcmV0LWtleQ==", "s3cret-key",
                     "Bearer s3cret-key-and-more"):
            headers = {"authorization": auth} if auth else {}
            for r in (client.post("/segment", headers=headers, **upload(GOOD)),
                      client.get("/model", headers=headers)):
                assert r.status_code == 401, (auth, r.text)
                assert r.headers["www-authenticate"] == "Bearer"
                assert "API key" in r.json()["detail"]
        good = {"authorization": "Bearer s3cret-key"}
        assert client.post("/segment", headers=good, **upload(GOOD)).status_code == 200
        assert client.get("/model", headers=good).status_code == 200
        for path in ("/health", "/ready", "/metrics"):
            assert client.get(path).status_code == 200, path
    assert calls  # the key is compared in constant time


def test_no_api_key_configured_means_open(client):
    assert client.get("/model").status_code == 200


def test_cors_is_off_unless_configured():
    preflight = {"origin": "https://evil.example", "access-control-request-method": "POST"}
    client = make_client()  # lifespan not needed for these routes
    assert "access-control-allow-origin" not in client.get("/health", headers={"origin": "https://evil.example"}).headers
    assert client.options("/segment", headers=preflight).status_code == 405
    allowed = make_client(cors_origins=["https://lab.example"])
    r = allowed.options("/segment", headers={**preflight, "origin": "https://lab.example"})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://lab.example"
    assert "access-control-allow-origin" not in allowed.get("/health", headers=preflight).headers
