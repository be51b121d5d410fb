"""Prometheus metrics: request counts and latency per endpoint, inference latency per model."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """One registry per app (so several apps in one process do not clash)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("evbattery_requests_total", "HTTP requests", ["endpoint", "method", "status"],
                                registry=self.registry)
        self.latency = Histogram("evbattery_request_latency_seconds", "HTTP request latency", ["endpoint"],
                                 buckets=BUCKETS, registry=self.registry)
        self.inference = Histogram("evbattery_inference_latency_seconds", "Inference latency per model call",
                                   ["endpoint", "model"], buckets=BUCKETS, registry=self.registry)
        self.batch_size = Histogram("evbattery_batch_size", "Inputs per batched forward pass", ["model"],
                                    buckets=(1, 2, 4, 8, 16, 32, 64), registry=self.registry)
        self.batch_latency = Histogram("evbattery_batch_latency_seconds", "Time of one batched forward pass",
                                       ["model"], buckets=BUCKETS, registry=self.registry)

    def observe_batch(self, model: str, size: int, seconds: float) -> None:
        """Record one forward pass of the batching thread."""
        self.batch_size.labels(model).observe(size)
        self.batch_latency.labels(model).observe(seconds)

    async def middleware(self, request: Request, call_next: Any) -> Response:
        """Count and time every request under its route template (e.g. /predict/{name})."""
        t0 = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = request.scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            self.requests.labels(endpoint, request.method, str(status)).inc()
            self.latency.labels(endpoint).observe(time.perf_counter() - t0)

    def render(self) -> Response:
        """The Prometheus text exposition."""
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)
