"""`python -m app`: check the model, then serve it with uvicorn on $HOST:$PORT."""

from __future__ import annotations

import logging
import sys

import uvicorn

from app.config import Settings
from app.main import create_app, load_segmenter
from app.segmenter import ModelLoadError


def main() -> int:
    settings = Settings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    try:
        load_segmenter(settings)  # fail fast, in one line, before uvicorn starts
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    uvicorn.run(
        create_app(settings), host=settings.host, port=settings.port,
        log_level=settings.log_level, timeout_graceful_shutdown=settings.shutdown_timeout_s,
        access_log=False,  # app.telemetry writes one structured line per request
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
