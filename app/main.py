"""create_app(): builds the app and mounts the routes; the lifespan loads the model."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from app.admission import Admission
from app.api import install_error_handlers, router
from app.config import Settings
from app.middleware import BodySizeLimit
from app.telemetry import Metrics, TelemetryMiddleware
from nuclei.segmenter import Segmenter

log = logging.getLogger("app")

DESCRIPTION = """
Upload a microscope image, get its nuclei back: as a mask (`format=png`), a 16-bit label
image (`labels`), run-length encoding with one record per nucleus (`rle`), or a Kaggle
DSB2018 submission (`csv`). Images keep their resolution: inference tiles with overlap.
"""


def load_segmenter(settings: Settings) -> Segmenter:
    return Segmenter(
        settings.model_path, intra_op_threads=settings.intra_op_threads,
        inter_op_threads=settings.inter_op_threads, tile_size=settings.tile_size,
        spinning=settings.intra_op_spinning)


def create_app(settings: Settings | None = None, segmenter: Segmenter | None = None) -> FastAPI:
    """`segmenter`: one already loaded (and so checked) by the caller, to avoid loading twice."""
    settings = settings or Settings()
    preloaded = segmenter

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        segmenter = preloaded or load_segmenter(settings)
        segmenter.warm_up()
        app.state.segmenter = segmenter
        app.state.ready = True
        log.info("model %s %s ready", segmenter.card.name, segmenter.card.version)
        yield
        app.state.ready = False

    app = FastAPI(title="Nuclei segmentation", version="1.0.0", description=DESCRIPTION,
                  lifespan=lifespan)
    app.state.settings = settings
    app.state.ready = False
    app.state.metrics = Metrics()
    app.state.admission = Admission(
        settings.queue_depth, settings.inference_workers, settings.request_timeout_s)
    app.include_router(router)
    install_error_handlers(app)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                           allow_methods=["GET", "POST"], allow_headers=["Authorization"])
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes)
    app.add_middleware(TelemetryMiddleware, metrics=app.state.metrics)
    return app
