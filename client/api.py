"""One image through the service: `Client(url).segment(path, format="labels")`, or several
outputs of one segmentation: `Client(url).outputs(path, ["labels", "measurements"])`.

A 503 is retried after its Retry-After; a dropped connection or a server that is restarting
is retried with exponential backoff, so a pipeline rides out a restart instead of losing
images. `patience_s` bounds the whole outage, not each request: the clock starts at the first
failure of any request and stops at the next success, so 16 images waiting on a dead server
give up together (`Unreachable`). A 4xx is the image's fault and is not retried.
`check()` asks the server before a run whether it is there, is this service, and takes the key.
"""

from __future__ import annotations

import os
import threading
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from nuclei.bundle import unbundle
from nuclei.encode import OutputFormat
from nuclei.planes import HEADER as PLANE_WARNING
from nuclei.quality import FLAG_HEADER, HEADER

RETRY_STATUSES = {502, 503, 504}


class ClientError(Exception):
    """The service refused the image (4xx), or gave up after retrying (`status` 0)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}" if status else detail)
        self.status = status
        self.detail = detail


class Unreachable(ClientError):
    """The server was down or busy for longer than `patience_s`: no image can get through."""

    def __init__(self, detail: str) -> None:
        super().__init__(0, detail)


@dataclass(frozen=True)
class Segmented:
    content: bytes
    media_type: str
    count: int
    model_version: str
    headers: dict[str, str]
    quality: float | None = None  # asked for with quality=True (nuclei.quality)
    flag: str = ""  # "ok" or "check" with it
    warning: str = ""  # X-Image-Warning: e.g. several channels and none chosen (nuclei.planes)
    diameter: float | None = None  # X-Nucleus-Diameter: the median nucleus size segmented at


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", response.text))
    except ValueError:
        return response.text[:500]


class Client:
    def __init__(self, url: str, api_key: str | None = None, timeout_s: float = 300.0,
                 patience_s: float = 600.0, transport: httpx.BaseTransport | None = None) -> None:
        """`transport`: httpx's, e.g. a MockTransport that plays a server in tests."""
        key = api_key if api_key is not None else os.environ.get("NUCLEI_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout_s, trust_env=False,
                                 transport=transport)
        self.patience_s = patience_s
        self._lock = threading.Lock()
        self._down_since: float | None = None  # the outage clock, shared by every request

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def segment(self, image: str | Path | bytes, format: str = "labels", filename: str | None = None,
                **params: Any) -> Segmented:
        """One image (a path or its bytes) → the body of `format` (several, comma-separated:
        a zip) and the provenance headers."""
        data = image if isinstance(image, bytes) else Path(image).read_bytes()
        name = filename or (Path(image).name if not isinstance(image, bytes) else "image")
        query = {"format": format, **{k: v for k, v in params.items() if v is not None}}
        response = self._post(data, name, query)
        h = response.headers
        quality = h.get(HEADER)
        return Segmented(response.content, h.get("content-type", ""), int(h.get("x-nuclei-count", 0)),
                         h.get("x-model-version", ""), dict(h), None if quality is None else float(quality),
                         h.get(FLAG_HEADER, ""), warning=h.get(PLANE_WARNING, ""),
                         diameter=float(h["x-nucleus-diameter"]) if "x-nucleus-diameter" in h else None)

    def outputs(self, image: str | Path | bytes, formats: Sequence[str], filename: str | None = None,
                **params: Any) -> tuple[dict[str, bytes], Segmented]:
        """Every format's body from one request, so the model runs once per image."""
        formats = [OutputFormat(f) for f in dict.fromkeys(formats)]
        result = self.segment(image, ",".join(formats), filename, **params)
        if len(formats) == 1:
            return {formats[0].value: result.content}, result
        try:
            bodies = unbundle(result.content, formats)
        except (ValueError, zipfile.BadZipFile) as exc:
            raise ClientError(0, f"the server's answer is not the zip asked for: {exc}") from exc
        return {f.value: body for f, body in bodies.items()}, result

    def check(self, timeout_s: float = 5.0, model: str | None = None) -> None:
        """Before a run: the server answers, is a nuclei service, takes our key (or needs
        none), and serves `model`. A ClientError with one line that says what to fix, otherwise nothing."""
        url = str(self.http.base_url)
        try:
            ready = self.http.get("/ready", timeout=timeout_s)
            limits = self.http.get("/limits", timeout=timeout_s)
        except httpx.TransportError as exc:
            raise ClientError(0, f"cannot reach {url} ({type(exc).__name__}: {exc or 'no answer'}); "
                                 "is the server running, and is --url right?") from exc
        try:
            needs_key = bool(limits.json()["api_key_required"]) if limits.status_code == 200 else None
        except (ValueError, KeyError, TypeError):
            needs_key = None
        if needs_key is None or ready.status_code not in (200, 503):
            raise ClientError(0, f"{url} is not a nuclei segmentation service (GET /limits answered "
                                 f"{limits.status_code}, GET /ready {ready.status_code}); check --url")
        if needs_key:
            if "authorization" not in self.http.headers:
                raise ClientError(401, f"{url} needs an API key: set NUCLEI_API_KEY")
            if self.http.get("/model", timeout=timeout_s).status_code == 401:
                raise ClientError(401, f"{url} refused the API key in NUCLEI_API_KEY")
        if model is not None:
            self._check_model(model, timeout_s)

    def _check_model(self, model: str, timeout_s: float) -> None:
        """`model` is one the server serves now (GET /models), else the server's list."""
        url = str(self.http.base_url)
        listing = self.http.get("/models", timeout=timeout_s)
        if listing.status_code == 404:
            raise ClientError(0, f"{url} serves one model only (no GET /models): leave out --model")
        if listing.status_code != 200:
            raise ClientError(listing.status_code, f"GET /models: {_detail(listing)}")
        models = listing.json()["models"]
        if not any(m["name"] == model and m["serving"] for m in models):
            refused = next((m["reason"] for m in models if m["name"] == model), None)
            served = ", ".join(m["name"] for m in models if m["serving"])
            why = f"refuses model {model!r} ({refused})" if refused else f"serves no model {model!r}"
            raise ClientError(0, f"{url} {why}; it serves: {served}")

    def _outage(self, now: float) -> float:
        """When the current outage began (this failure, if none was going on)."""
        with self._lock:
            if self._down_since is None:
                self._down_since = now
            return self._down_since

    def _post(self, data: bytes, name: str, query: dict[str, Any]) -> httpx.Response:
        backoff = 0.5
        while True:
            try:
                response = self.http.post("/segment", params=query, files={"file": (name, data)})
            except httpx.TransportError as exc:
                wait, why = backoff, f"{type(exc).__name__}: {exc}"
                backoff = min(backoff * 2, 10.0)
            else:
                if response.status_code == 200:
                    with self._lock:
                        self._down_since = None
                    return response
                if response.status_code not in RETRY_STATUSES:
                    raise ClientError(response.status_code, _detail(response))
                wait = float(response.headers.get("retry-after", backoff))
                why = f"{response.status_code}: {_detail(response)}"
            now = time.monotonic()
            deadline = self._outage(now) + self.patience_s
            if now >= deadline:
                raise Unreachable(f"gave up: the server was unreachable or busy for {self.patience_s:g} s; "
                                  f"last: {why}")
            time.sleep(min(wait, deadline - now))
