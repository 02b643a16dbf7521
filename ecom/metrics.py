"""Prometheus metrics of a process, with bounded labels only (service, topic, partition,
group, route, method, status, phase): never an order, user or product id.

The APIs serve them at their own `/metrics`; the projection runners on
`--metrics-port` / ECOM_METRICS_PORT (see README for the defaults).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)

REGISTRY = CollectorRegistry()
_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

RECORDS_CONSUMED = Counter(
    "ecom_records_consumed", "Records read from Kafka and handled.",
    ["service", "topic"], registry=REGISTRY,
)  # fmt: skip
DEAD_LETTERS = Counter(
    "ecom_dead_letters", "Records parked in a dead-letter topic, by the topic they came from.",
    ["service", "topic"], registry=REGISTRY,
)  # fmt: skip
FENCED = Counter(
    "ecom_fenced_batches", "Batches the store refused because another runner wrote first.",
    ["service"], registry=REGISTRY,
)  # fmt: skip
BATCH_SECONDS = Histogram(
    "ecom_batch_phase_seconds", "Time per batch in each phase (decode, fold, commit).",
    ["service", "phase"], buckets=_SECONDS, registry=REGISTRY,
)  # fmt: skip
LAG = Gauge(
    "kafka_consumergroup_lag", "Records in the log not yet applied, per partition.",
    ["consumergroup", "topic", "partition"], registry=REGISTRY,
)  # fmt: skip
HTTP_REQUESTS = Counter(
    "ecom_http_requests", "HTTP requests answered.",
    ["service", "route", "method", "status"], registry=REGISTRY,
)  # fmt: skip
HTTP_SECONDS = Histogram(
    "ecom_http_request_duration_seconds", "Time to answer an HTTP request.",
    ["service", "route", "method"], buckets=_SECONDS, registry=REGISTRY,
)  # fmt: skip


def serve(port: int) -> None:
    """Serve /metrics on 127.0.0.1:port from a background thread (0: do not serve)."""
    if port:
        start_http_server(port, addr="127.0.0.1", registry=REGISTRY)


def exposition() -> tuple[bytes, str]:
    """Return the metrics text and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def instrument(app: FastAPI, service: str) -> None:
    """Count and time every request of an app by route template, and serve /metrics."""

    @app.middleware("http")
    async def measure(request: Request, call_next: Callable[[Request], Awaitable[Response]]
                      ) -> Response:  # fmt: skip
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        template = getattr(route, "path", "unmatched")
        HTTP_REQUESTS.labels(service, template, request.method, str(response.status_code)).inc()
        HTTP_SECONDS.labels(service, template, request.method).observe(
            time.perf_counter() - started
        )
        return response

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        body, content_type = exposition()
        return Response(body, media_type=content_type)
