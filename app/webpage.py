"""The web page at GET /: pick or drop images (or a folder), see each with its nucleus
outlines, count and measurements, download the results one by one or as one zip.

Plain HTML, JS and CSS from app/web/, served as they are: nothing to build, and no request
leaves the server's origin (the Content-Security-Policy below says so to the browser), so
the page works offline. It talks to the API with relative URLs (`segment`, `limits`), so it
also works under a path prefix behind a proxy."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

WEB = Path(__file__).resolve().parent / "web"
ASSETS = {
    "app.js": "text/javascript; charset=utf-8",
    "zip.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
# Everything from this origin only; images shown from the user's own files (blob:).
CSP = (
    "default-src 'self'; img-src 'self' blob: data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'self'; form-action 'none'; frame-ancestors 'self'"
)
HEADERS = {
    "Cache-Control": "no-cache",  # revalidate, so a new release's page is seen at once
    "X-Content-Type-Options": "nosniff",
}

router = APIRouter(include_in_schema=False)


@router.get("/")
async def index() -> FileResponse:
    return FileResponse(
        WEB / "index.html", media_type="text/html; charset=utf-8", headers={**HEADERS, "Content-Security-Policy": CSP}
    )


@router.get("/web/{name}")
async def asset(name: str) -> FileResponse:
    media_type = ASSETS.get(name)  # a fixed list: no path from the URL reaches the disk
    if media_type is None:
        raise HTTPException(404, "not found")
    return FileResponse(WEB / name, media_type=media_type, headers=HEADERS)
