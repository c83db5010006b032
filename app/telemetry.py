"""Prometheus metrics and one structured log line per request, as a plain ASGI middleware
(so streaming responses and errors raised anywhere below are still counted)."""

from __future__ import annotations

import json
import logging
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("app.access")


class Metrics:
    """One registry per app, so tests can build many apps without name clashes."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("http_requests_total", "Requests by route, method and status",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram(
            "http_request_duration_seconds", "Request latency by route", ["route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=self.registry)
        self.in_flight = Gauge("http_requests_in_flight", "Requests being served",
                               registry=self.registry)
        # by the model that answered (GET /models): which one the routing sends the images to
        self.images = Counter("images_processed_total", "Images segmented", ["model"], registry=self.registry)
        self.pixels = Counter("pixels_processed_total", "Pixels segmented", ["model"], registry=self.registry)
        self.nuclei = Counter("nuclei_detected_total", "Nuclei found", ["model"], registry=self.registry)
        self.rejected = Counter("segment_rejected_total", "Requests refused by admission control",
                                ["reason"], registry=self.registry)

    def record_image(self, height: int, width: int, count: int, model: str) -> None:
        self.images.labels(model).inc()
        self.pixels.labels(model).inc(height * width)
        self.nuclei.labels(model).inc(count)


class TelemetryMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.in_flight.dec()
            duration = time.perf_counter() - start
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(route, scope["method"], str(status)).inc()
            self.metrics.latency.labels(route).observe(duration)
            state = scope.get("state", {})
            log.info(json.dumps({
                "route": route, "method": scope["method"], "status": status,
                "duration_ms": round(duration * 1000, 1),
                "image": state.get("image_size"), "nuclei": state.get("nuclei"), "model": state.get("model"),
            }))
