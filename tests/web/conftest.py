"""A real server (the app from create_app(), the committed INT8 model, uvicorn on a free
loopback port in a thread) and Debian's Chromium driven headless by Playwright.

Playwright's own browser download is not reachable here, so the tests use the system's
Chromium; without it they fail (never skip) and say how to install it."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI

from app import webpage
from app.config import DEFAULT_MODEL, Settings
from app.main import create_app
from nuclei.segmenter import Segmenter

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
INSTALL = "apt-get install -y chromium  (as root; `make test` does it when it can)"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
API_KEY = "web-test-key"


def web_app(segmenter: Segmenter, **settings: object) -> FastAPI:
    """The service's app, with the page's routes unless create_app() mounts them already."""
    app = create_app(Settings(model_path=DEFAULT_MODEL, **settings), segmenter=segmenter)
    if not any(getattr(r, "path", None) == "/" and "GET" in getattr(r, "methods", ()) for r in app.routes):
        app.include_router(webpage.router)
    return app


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """`app` under uvicorn on 127.0.0.1 (a port the OS picks) until the block ends; its URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


@pytest.fixture(scope="session")
def web_segmenter() -> Segmenter:
    return Segmenter(DEFAULT_MODEL)


@pytest.fixture(scope="session")
def server(web_segmenter: Segmenter) -> Iterator[str]:
    """Queue depth 2: the page may have two requests in flight, and the server refuses a third."""
    with serve(web_app(web_segmenter, queue_depth=2, api_key=None)) as url:
        yield url


@pytest.fixture(scope="session")
def keyed_server(web_segmenter: Segmenter) -> Iterator[str]:
    with serve(web_app(web_segmenter, queue_depth=2, api_key=API_KEY)) as url:
        yield url


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need Debian's Chromium. Install it: {INSTALL}", pytrace=False
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright is missing: pip install -e '.[dev]'", pytrace=False)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server):
    """A fresh page; every request that would leave the test server is aborted and recorded
    (`page.outside`), so a test can show the page needs no network but its own server."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    outside: list[str] = []

    def only_local(route):
        url = route.request.url
        if url.startswith("http://127.0.0.1:") or url.startswith(("blob:", "data:")):
            route.fallback()
        else:
            outside.append(url)
            route.abort()

    context.route("**/*", only_local)
    page = context.new_page()
    page.outside = outside
    page.set_default_timeout(60_000)
    yield page
    context.close()
