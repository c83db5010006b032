"""create_app(): builds the app and mounts the routes; the lifespan loads the models (the
registry of MODELS_DIR, nuclei.registry). Also the OpenAPI document (version and examples
from the package and the default model) and
the /docs and /redoc pages, whose scripts and styles the app serves itself: they work
without internet."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from app import webpage
from app.admission import Admission
from app.api import install_error_handlers, router
from app.config import Settings
from app.middleware import BodySizeLimit
from app.schemas import other_examples, segment_examples
from app.telemetry import Metrics, TelemetryMiddleware
from nuclei import card as cards
from nuclei.card import CardError, ModelCard
from nuclei.naming import MODEL_FIELDS, model_header
from nuclei.registry import Registry
from nuclei.segmenter import Segmenter

log = logging.getLogger("app")
# Response headers a browser script on another origin may read (provenance, count, size, plane).
EXPOSED_HEADERS = ("X-Nuclei-Count", "X-Nucleus-Diameter", *map(model_header, MODEL_FIELDS), "X-Image-Plane",
                   "X-Image-Warning", "X-Segmentation-Quality", "X-Segmentation-Flag", "Retry-After",
                   "Content-Disposition")

DESCRIPTION = """
Upload a microscope image, get its nuclei back: as a mask (`format=png`), a 16-bit label
image (`labels`), run-length encoding with one record per nucleus (`rle`), or a Kaggle
DSB2018 submission (`csv`). Images keep their resolution: inference tiles with overlap.
"""
MODELS = """
Every model of the server's model folder is served (`GET /models`): `model=NAME` picks one;
without it, an image goes to a model whose card claims its modality, else to the default
(`X-Model-Route` says why, `X-Model-Name` which).
"""
PACKAGE = "nuclei-segmentation"
# Swagger UI (Apache-2.0) and ReDoc (MIT) as the fastapi-offline package ships them.
DOCS_ASSETS = Path(fastapi_offline.__file__).resolve().parent / "static"
DOCS_STATIC = "/static/docs"


def package_version() -> str:
    try:
        return version(PACKAGE)
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


def describe(card: ModelCard | None) -> str:
    if card is None:
        return DESCRIPTION + MODELS + "\nThe default model: `GET /model`.\n"
    return DESCRIPTION + MODELS + (
        f"\nDefault model: **{card.name} {card.version}** (sha256 `{card.sha256[:12]}…`); "
        "its card: `GET /model`.\n")


def card_of(settings: Settings) -> ModelCard | None:
    """The card of the model the lifespan will load, for the OpenAPI document before then;
    None when it cannot be read (the lifespan then fails with the reason)."""
    try:
        return cards.parse(cards.card_path(settings.model_path))
    except (CardError, OSError):
        return None


def install_openapi(app: FastAPI, settings: Settings, card: ModelCard | None) -> None:
    """`app.openapi()` describes the model being served: the loaded one once the lifespan
    has run, else the card at `settings.model_path`. Errors and formats get examples."""
    built: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        registry = getattr(app.state, "registry", None)
        default = registry.serving.default if registry is not None else None
        current = default.card if default is not None else card
        if app.openapi_schema is None or built.get("card") is not current:
            spec = get_openapi(title=app.title, version=app.version, description=describe(current),
                               routes=app.routes)
            if current is not None:
                spec["info"]["x-model"] = current.info
            model = current.info if current is not None else {
                "name": "nuclei-unet", "version": "see GET /model", "sha256": "see GET /model"}
            add_examples(spec, "/segment", "post", segment_examples(settings, model))
            for (path, method), examples in other_examples().items():
                add_examples(spec, path, method, examples)
            if settings.api_key is None:
                optional_security(spec)
            app.openapi_schema, built["card"] = spec, current
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def optional_security(spec: dict[str, Any]) -> None:
    """A server without API_KEY takes requests with or without a bearer token: `security`
    lists the empty requirement first, so generated clients send no header unless given one."""
    for operations in spec.get("paths", {}).values():
        for operation in operations.values():
            if isinstance(operation, dict) and operation.get("security"):
                operation["security"] = [{}, *(s for s in operation["security"] if s)]


def add_examples(spec: dict[str, Any], path: str, method: str,
                 examples: dict[str, dict[str, Any]]) -> None:
    responses = spec["paths"][path][method]["responses"]
    for status, content in examples.items():
        for media_type, entry in content.items():
            responses[status].setdefault("content", {}).setdefault(media_type, {}).update(entry)


def install_docs(app: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc with every script, style and icon served from
    DOCS_STATIC: FastAPI's default pages load them from a CDN, blank without internet."""
    app.mount(DOCS_STATIC, StaticFiles(directory=DOCS_ASSETS), name="docs-static")

    def urls(request: Request) -> tuple[str, str]:
        """(the OpenAPI document's URL, the assets' URL prefix), behind any root path."""
        root = request.scope.get("root_path", "").rstrip("/")
        return root + "/openapi.json", root + DOCS_STATIC

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        openapi_url, assets = urls(request)
        return get_swagger_ui_html(
            openapi_url=openapi_url, title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{assets}/swagger-ui-bundle.js", swagger_css_url=f"{assets}/swagger-ui.css",
            swagger_favicon_url=f"{assets}/favicon.png",
            oauth2_redirect_url=None,  # bearer tokens only: no OAuth2 flow to return from
            # no badge that sends the document to swagger.io's online validator
            swagger_ui_parameters={"validatorUrl": None})

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        openapi_url, assets = urls(request)
        return get_redoc_html(
            openapi_url=openapi_url, title=f"{app.title} - ReDoc", redoc_js_url=f"{assets}/redoc.standalone.js",
            redoc_favicon_url=f"{assets}/favicon.png", with_google_fonts=False)


def loader(settings: Settings) -> Callable[[Path], Segmenter]:
    """How the service loads a model file: with its thread and tile settings."""
    return partial(Segmenter, intra_op_threads=settings.intra_op_threads, inter_op_threads=settings.inter_op_threads,
                   tile_size=settings.tile_size, spinning=settings.intra_op_spinning)


def load_segmenter(settings: Settings) -> Segmenter:
    return loader(settings)(settings.model_path)


def load_registry(settings: Settings, segmenter: Segmenter | None = None) -> Registry:
    """The models of MODELS_DIR and the default, not loaded yet (`refresh()` loads them)."""
    return Registry(settings.models_folder, settings.model_path, loader(settings), preloaded=segmenter)


def create_app(settings: Settings | None = None, segmenter: Segmenter | None = None,
               registry: Registry | None = None) -> FastAPI:
    """`segmenter` (the default model) or `registry`: already loaded (and so checked) by the
    caller, to avoid loading twice."""
    settings = settings or Settings()
    preloaded = registry or load_registry(settings, segmenter)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        preloaded.refresh()
        default = preloaded.default  # CardError: start-up fails with the default's reason
        app.state.registry = preloaded
        app.state.ready = True
        log.info("default model %s %s ready; %d model(s) served", default.card.name, default.card.version,
                 len(preloaded.serving.models))
        yield
        app.state.ready = False

    app = FastAPI(title="Nuclei segmentation", version=package_version(), description=DESCRIPTION,
                  lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.ready = False
    app.state.metrics = Metrics()
    app.state.admission = Admission(
        settings.queue_depth, settings.inference_workers, settings.request_timeout_s)
    app.include_router(router)
    app.include_router(webpage.router)
    install_error_handlers(app)
    install_openapi(app, settings, segmenter.card if segmenter is not None else card_of(settings))
    install_docs(app)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                           allow_methods=["GET", "POST"], allow_headers=["Authorization"],
                           expose_headers=list(EXPOSED_HEADERS))
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes)
    app.add_middleware(TelemetryMiddleware, metrics=app.state.metrics)
    return app
