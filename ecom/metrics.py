"""Prometheus metrics of a process, with bounded labels only (service, topic, partition,
group, route, method, status, phase): never an order, user or product id.

The APIs serve them at their own `/metrics`; the projection runners on
`--metrics-port` / ECOM_METRICS_PORT (see README for the defaults), with /livez and
/readyz beside them.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

from ecom.asgi import Asgi, Message, Receive, Scope, Send
from ecom.errors import PortInUse

if TYPE_CHECKING:  # FastAPI costs 0.4 s to import: only the APIs pay for it
    from fastapi import FastAPI
    from fastapi.telemetry import TelemetryConfig

# Pass as FastAPI(telemetry=...). Our HTTP metrics are Prometheus (instrument below);
# FastAPI's own OpenTelemetry, on by default, looked up the global providers on every
# request (about 25 us of a point read's CPU) only to find none configured.
WITHOUT_OTEL: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}

REGISTRY = CollectorRegistry()
# prometheus_client's own variable: set before it is imported, every value lives in a
# file of that directory, one per process, and exposition() sums them.
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

RECORDS_CONSUMED = Counter(
    "ecom_records_consumed", "Records read from Kafka and handled.",
    ["service", "topic"], registry=REGISTRY,
)  # fmt: skip
RECORDS_PRODUCED = Counter(
    "ecom_records_produced", "Records Kafka acknowledged, by the service that sent them.",
    ["service", "topic"], registry=REGISTRY,
)  # fmt: skip
DELIVERIES_FAILED = Counter(
    "ecom_deliveries_failed", "Records Kafka did not acknowledge.",
    ["service", "topic"], registry=REGISTRY,
)  # fmt: skip
CHECKPOINT_SECONDS = Histogram(
    "ecom_checkpoint_commit_seconds",
    "Order flow: from a checkpoint sealed to its outputs, state and offsets committed.",
    ["service"], buckets=_SECONDS, registry=REGISTRY,
)  # fmt: skip
REWINDS = Counter(
    "ecom_rewinds", "Order flow: seeks back to a partition's cursor after a gap.",
    ["service"], registry=REGISTRY,
)  # fmt: skip
DEAD_LETTERS = Counter(
    "ecom_dead_letters", "Records parked in a dead-letter topic, by the topic they came from.",
    ["service", "topic"], registry=REGISTRY,
)  # fmt: skip
RESTARTS = Counter(
    "ecom_restarts", "Times the supervisor restarted this process, by why it had exited.",
    ["service", "reason"], registry=REGISTRY,
)  # fmt: skip
FENCED = Counter(
    "ecom_fenced_batches", "Batches the store refused because another runner wrote first.",
    ["service"], registry=REGISTRY,
)  # fmt: skip
CONSUMERS_REPLACED = Counter(
    "ecom_consumers_replaced",
    "Consumers closed and made anew after a fatal error (fenced by another consumer with "
    "the same group.instance.id, say).",
    ["service"], registry=REGISTRY,
)  # fmt: skip
BATCH_SECONDS = Histogram(
    "ecom_batch_phase_seconds",
    "Time per batch in each phase (runners: decode, fold, commit; workers: handle).",
    ["service", "phase"], buckets=_SECONDS, registry=REGISTRY,
)  # fmt: skip
LAG = Gauge(
    "kafka_consumergroup_lag", "Records in the log not yet applied, per partition.",
    ["consumergroup", "topic", "partition"], registry=REGISTRY,
    multiprocess_mode="mostrecent",  # with `serve query --workers`: each watch's latest
)  # fmt: skip
HTTP_REQUESTS = Counter(
    "ecom_http_requests", "HTTP requests answered.",
    ["service", "route", "method", "status"], registry=REGISTRY,
)  # fmt: skip
HTTP_SECONDS = Histogram(
    "ecom_http_request_duration_seconds", "Time to answer an HTTP request.",
    ["service", "route", "method"], buckets=_SECONDS, registry=REGISTRY,
)  # fmt: skip


def serve(port: int, ready: Callable[[], list[str]] | None = None) -> None:
    """Serve /metrics, /livez and /readyz on 127.0.0.1:port from a background thread
    (0: do not serve). `ready` returns why the process is not ready (nothing: it is)."""
    if not port:
        return

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/metrics"):
                body, content_type = exposition()
                self._send(200, body, content_type)
            elif self.path == "/livez":
                self._send(200, b'{"status": "alive"}')
            elif self.path == "/readyz":
                reasons = ready() if ready is not None else []
                answer = (
                    {"status": "not ready", "reasons": reasons} if reasons else {"status": "ready"}
                )
                self._send(503 if reasons else 200, json.dumps(answer).encode())
            else:
                self._send(404, b'{"detail": "not found"}')

        def _send(self, status: int, body: bytes, kind: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            """Scrapes are not news."""

    try:
        server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    except OSError as error:
        raise _taken(port, error) from error
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()


def check_free(port: int) -> None:
    """Raise PortInUse now if serve(port) would: for a supervisor, before it starts the
    children that would each fail on it."""
    if not port:
        return
    if (error := bind_refused(port)) is not None:
        raise _taken(port, error) from error


def bind_refused(port: int) -> OSError | None:
    """Return why a server could not listen on 127.0.0.1:port now (None: it could)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as error:
            return error
    return None


def _taken(port: int, error: OSError) -> PortInUse:
    return PortInUse(
        f"cannot serve metrics on 127.0.0.1:{port} ({error.strerror}); pick another "
        "with --metrics-port / ECOM_METRICS_PORT (0 turns them off)"
    )


def count_restarts(service: str, reasons: dict[str, int]) -> None:
    """Start the restart counter where the supervisor's count stands (a restarted
    process continues the count of the one before)."""
    for reason, times in reasons.items():
        RESTARTS.labels(service, reason).inc(times)


class Measured:
    """ASGI middleware: count and time each request by its route template. Plain ASGI,
    not Starlette's BaseHTTPMiddleware, whose task group and response stream cost about
    a third of a point read's CPU."""

    def __init__(self, app: Asgi, service: str) -> None:
        self.app, self.service = app, service
        # (route, method, status) -> its counter and histogram: labels() costs more than
        # the counting. Bounded: routes are templates, the server knows a fixed set of
        # methods.
        self._series: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            template = getattr(scope.get("route") or _route_of(scope), "path", "unmatched")
            series = self._series.get((template, scope["method"], status))
            if series is None:
                series = self._new_series(template, scope["method"], status)
            series[0].inc()
            series[1].observe(time.perf_counter() - started)

    def _new_series(self, template: str, method: str, status: int) -> tuple[Any, Any]:
        series = (
            HTTP_REQUESTS.labels(self.service, template, method, str(status)),
            HTTP_SECONDS.labels(self.service, template, method),
        )
        self._series[(template, method, status)] = series
        return series


def _route_of(scope: Scope) -> Any:
    """The route a request was for, when a middleware answered before routing (a request
    refused for its API key): the app's first route that matches its path."""
    from starlette.routing import Match

    router = getattr(scope.get("app"), "router", None)
    for route in getattr(router, "routes", ()):
        if route.matches(scope)[0] is not Match.NONE:
            return route
    return None


def exposition() -> tuple[bytes, str]:
    """Return the metrics text and its content type: with MULTIPROCESS_ENV set, the sum
    of every process that shares the directory it names (`serve query --workers`)."""
    if os.environ.get(MULTIPROCESS_ENV):
        merged = CollectorRegistry()
        MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
        return generate_latest(merged), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def instrument(app: FastAPI, service: str) -> None:
    """Count and time every request of an app by route template, and serve /metrics."""
    app.add_middleware(Measured, service=service)

    from fastapi import Response

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        body, content_type = exposition()
        return Response(body, media_type=content_type)
