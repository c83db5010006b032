"""`python -m app`: check the settings and the default model, then serve it and the others of
MODELS_DIR with uvicorn on $HOST:$PORT."""

from __future__ import annotations

import logging
import sys

from pydantic import ValidationError

from app.config import Settings


def fail(reason: str) -> int:
    """One line on stderr and a non-zero exit, so an orchestrator's log shows why at a glance."""
    print("error: " + " ".join(reason.split()), file=sys.stderr)
    return 1


def main() -> int:
    try:
        settings = Settings()
    except ValidationError as exc:
        return fail("; ".join(
            f"{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()))
    if not settings.model_path.is_file():  # before the heavy imports: a typo'd path fails in ~0.2 s
        return fail(f"model file not found: {settings.model_path}")
    if not settings.models_folder.is_dir():
        return fail(f"models folder not found: {settings.models_folder} (MODELS_DIR)")

    import uvicorn

    from app.main import create_app, load_registry
    from nuclei.card import CardError

    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    registry = load_registry(settings)
    try:
        registry.load_default()  # fail fast, in one line, before uvicorn starts; the others may be refused
    except CardError as exc:
        return fail(str(exc))
    except Exception as exc:  # a card that parses but lacks fields: KeyError, TypeError…
        return fail(f"cannot load model {settings.model_path}: {type(exc).__name__}: {exc}")
    uvicorn.run(
        create_app(settings, registry=registry), host=settings.host, port=settings.port,
        log_level=settings.log_level, timeout_graceful_shutdown=settings.shutdown_timeout_s,
        access_log=False,  # app.telemetry writes one structured line per request
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
