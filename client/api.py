"""One image through the service: `Client(url).segment(path, format="labels")`, or several
outputs of one segmentation: `Client(url).outputs(path, ["labels", "measurements"])`.

A 503 is retried after its Retry-After; a dropped connection or a server that is restarting
is retried with exponential backoff, for up to `patience_s`, so a pipeline rides out a
restart instead of losing images. A 4xx is the image's fault and is not retried.
"""

from __future__ import annotations

import os
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from nuclei.bundle import unbundle
from nuclei.encode import OutputFormat

RETRY_STATUSES = {502, 503, 504}


class ClientError(Exception):
    """The service refused the image (4xx), or gave up after retrying (`status` 0)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}" if status else detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class Segmented:
    content: bytes
    media_type: str
    count: int
    model_version: str
    headers: dict[str, str]


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
        return Segmented(response.content, h.get("content-type", ""), int(h.get("x-nuclei-count", 0)),
                         h.get("x-model-version", ""), dict(h))

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

    def _post(self, data: bytes, name: str, query: dict[str, Any]) -> httpx.Response:
        deadline = time.monotonic() + self.patience_s
        backoff = 0.5
        while True:
            try:
                response = self.http.post("/segment", params=query, files={"file": (name, data)})
            except httpx.TransportError as exc:
                wait, why = backoff, f"{type(exc).__name__}: {exc}"
                backoff = min(backoff * 2, 10.0)
            else:
                if response.status_code == 200:
                    return response
                if response.status_code not in RETRY_STATUSES:
                    raise ClientError(response.status_code, _detail(response))
                wait = float(response.headers.get("retry-after", backoff))
                why = f"{response.status_code}: {_detail(response)}"
            if time.monotonic() + wait > deadline:
                raise ClientError(0, f"gave up after {self.patience_s:g} s of retries; last: {why}")
            time.sleep(wait)
