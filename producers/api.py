"""The command API (`ecom serve commands`): the HTTP entry point of the old synchronous
design, now answering 202 as soon as Kafka has acknowledged the event.

Request bodies are derived from the event contracts (minus event id and timestamp), so
the API validates exactly what the events do. Kafka trouble answers 503.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Header, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, create_model

from ecom.apikeys import CLIENT, MAX_BODY_BYTES, ApiKeys, protect
from ecom.errors import BadInput, DeliveryFailed, KafkaUnavailable
from ecom.kafka import LOW_LATENCY
from ecom.metrics import WITHOUT_OTEL, instrument
from ecom.topology import Topology
from producers.idempotency import IdempotencyKeys, fingerprint
from producers.input import build_event
from producers.producer import Delivery, EventProducer, Outcome, OutcomeCallback
from schemas import (
    Event,
    OrderCancellationRequested,
    OrderCreated,
    PriceChanged,
    ProductCreated,
    ProductUpdated,
    StockAdjusted,
    TaxRateChanged,
    UserCreated,
    UserUpdated,
)
from schemas.base import Id

ENVELOPE = {"event_id", "occurred_at"}
KEY_HELP = "Retry with the same key and get the first answer; nothing is published again."
# How long librdkafka tries to deliver a command's event. The client waits for that
# outcome, so a 503 means librdkafka gave up (a record it never sent is never sent later).
DELIVERY_TIMEOUT_MS = 30_000
BROKER = re.compile(r"(broker )?\b[a-z_]+://[^\s/]+(/\w+)?")  # "broker sasl_ssl://h:9093/2"


class Accepted(BaseModel):
    """What a command answers: the event Kafka stored, and where to read the result."""

    event_type: str
    event_id: str
    entity_id: str
    topic: str
    partition: int
    offset: int
    read_at: str | None = None


def request_model(event: type[Event], path_fields: set[str], generated: str | None = None) -> Any:
    """Derive a request body model from an event: envelope and path fields left out,
    the generated id (if any) optional."""
    fields: dict[str, Any] = {}
    for name, info in event.model_fields.items():
        if name in ENVELOPE | path_fields:
            continue
        fields[name] = (Id | None, None) if name == generated else (info.annotation, info)
    config = ConfigDict(extra="forbid", frozen=True)
    return create_model(f"{event.__name__}Command", __config__=config, **fields)


# command, its data, its Idempotency-Key (if any), the client (the guard's digest of its key)
Accept = Callable[["Command", dict[str, Any], str | None, str], Awaitable[Accepted]]


class Publisher:
    """An EventProducer served by a background thread, awaited from asyncio. Once the
    producer hit a fatal error (it cannot send any more), every command still waiting
    fails at once with it, and every later one before it is sent."""

    def __init__(self, producer: EventProducer) -> None:
        self.producer = producer
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._waiting: dict[int, OutcomeCallback] = {}  # commands sent, not yet answered
        self._thread = threading.Thread(target=self._serve, name="delivery-reports", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            self.producer.poll(0.05)
            if self.producer.fatal:
                self._fail_waiting(self.producer.fatal)

    def _fail_waiting(self, fatal: str) -> None:
        with self._lock:
            waiting, self._waiting = self._waiting, {}
        for resolve in waiting.values():
            resolve(DeliveryFailed(f"the producer hit a fatal error: {fatal}"))

    async def publish(self, event: Event) -> Delivery:
        """Return once Kafka acknowledged the event; raise once librdkafka gave up on it.
        Nothing shorter than its delivery timeout: a 503 given while the record still
        waited in the queue was published later all the same, and a retry published it
        twice. (A fatal error is sooner: that producer never sends it.)"""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()

        def settle(outcome: Outcome) -> None:
            if not future.done():  # the client may have gone: nobody waits any more
                future.set_result(outcome)

        def resolve(outcome: Outcome) -> None:
            loop.call_soon_threadsafe(settle, outcome)

        with self._lock:  # before sending: a fatal error seen from now on fails it
            self._waiting[id(future)] = resolve
        try:
            self.producer.publish(event, resolve)
            outcome = await asyncio.wait_for(future, timeout=DELIVERY_TIMEOUT_MS / 1000 + 30)
        finally:
            with self._lock:
                self._waiting.pop(id(future), None)
        if isinstance(outcome, DeliveryFailed):
            raise outcome
        return outcome

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        if not self.producer.fatal:  # else nothing can be sent, and every command was told
            self.producer.close()


def create_app(
    topology: Topology,
    bootstrap: str,
    api_keys: ApiKeys,
    query_url: str | None = None,
    idempotency: Path | None = None,
    max_body: int = MAX_BODY_BYTES,
) -> FastAPI:
    """Build the command API publishing to the given cluster, open to `commands` keys
    (idempotency keys kept in the file `idempotency`, or in memory for the life of the
    app)."""
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        settings = LOW_LATENCY | {"delivery.timeout.ms": DELIVERY_TIMEOUT_MS}
        producer = EventProducer(topology, bootstrap, "/ecomstream/api", **settings)
        state["publisher"] = Publisher(producer)
        state["keys"] = IdempotencyKeys(idempotency or Path(":memory:"))
        app.state.services = state  # what /readyz reads (and tests look at)
        yield
        state.pop("publisher").close()
        state.pop("keys").close()

    app = FastAPI(
        telemetry=WITHOUT_OTEL,
        title="ecomstream commands",
        description="Commands of the shop. Each is validated, published as an event, and "
        "answered with 202 once Kafka has acknowledged it.",
        lifespan=lifespan,
    )
    protect(app, api_keys, "commands", max_body)
    instrument(app, "command-api")

    async def accept(
        command: Command, data: dict[str, Any], key: str | None, client: str
    ) -> Accepted:
        if not key:
            return await publish(command, data)
        request = fingerprint(command.method, command.path, data)

        async def first() -> dict[str, Any]:
            return (await publish(command, data)).model_dump()

        try:
            return Accepted(**await state["keys"].once(client, key, request, first))
        except BadInput as error:
            raise HTTPException(status_code=422, detail=str(error)) from error

    async def publish(command: Command, data: dict[str, Any]) -> Accepted:
        if command.generated and not data[command.generated]:
            data = data | {command.generated: f"{command.generated[0]}-{uuid.uuid4().hex[:12]}"}
        event_type, entity = command.event.event_type, command.read_at.format(**data)
        try:
            event = build_event(event_type, data)
            delivery = await state["publisher"].publish(event)
        except BadInput as error:
            raise HTTPException(status_code=422, detail=str(error)) from error
        except KafkaUnavailable as error:
            raise HTTPException(
                status_code=503, detail=f"Kafka did not accept the event: {error}"
            ) from error
        except TimeoutError as error:  # no delivery report at all: should never happen
            raise HTTPException(status_code=503, detail="no answer from Kafka") from error
        read_at = f"{query_url}/{entity}" if query_url else None
        return Accepted(
            event_type=event_type,
            event_id=event.event_id,
            entity_id=delivery.key,
            topic=delivery.topic,
            partition=delivery.partition,
            offset=delivery.offset,
            read_at=read_at,
        )

    @app.exception_handler(HTTPException)
    async def one_line(_: Request, error: HTTPException) -> JSONResponse:
        return JSONResponse({"detail": error.detail}, status_code=error.status_code)

    _routes(app, accept)

    @app.get("/health")
    async def health() -> dict[str, str]:
        """Tell that the API runs (nothing about the cluster: this route is open)."""
        return {"status": "ok"}

    @app.get("/livez")
    async def livez() -> dict[str, str]:
        """The process answers (nothing about Kafka: see /readyz)."""
        return {"status": "alive"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        """200 when a command would be accepted; 503 when the producer hit a fatal error
        or the cluster does not answer."""
        publisher: Publisher = state["publisher"]
        producer = publisher.producer.producer
        reasons = []
        if producer.fatal:
            reasons.append(f"the producer hit a fatal error: {_hostless(producer.fatal)}")
        elif not await asyncio.to_thread(producer.answers):
            reasons.append("Kafka does not answer")
        if reasons:
            return JSONResponse({"status": "not ready", "reasons": reasons}, status_code=503)
        return JSONResponse({"status": "ready"})

    return app


def _hostless(reason: str) -> str:
    """A librdkafka message without the broker it names (an open route names no host)."""
    return BROKER.sub("a broker", reason)


@dataclass(frozen=True)
class Command:
    """One endpoint: an HTTP method and path that publish one event type."""

    method: str
    path: str
    event: type[Event]
    summary: str
    tag: str
    read_at: str
    generated: str | None = None

    @property
    def path_fields(self) -> list[str]:
        return re.findall(r"{(\w+)}", self.path)


COMMANDS = [
    Command("POST", "/users", UserCreated, "Sign up a user.", "users", "users/{user_id}/orders",
            "user_id"),
    Command("PATCH", "/users/{user_id}", UserUpdated,
            "Change a user's details; fields left out stay as they are.", "users",
            "users/{user_id}/orders"),
    Command("POST", "/products", ProductCreated, "Add a product to the catalogue.", "catalogue",
            "products/{product_id}", "product_id"),
    Command("PATCH", "/products/{product_id}", ProductUpdated, "Change a product's details.",
            "catalogue", "products/{product_id}"),
    Command("PUT", "/products/{product_id}/price", PriceChanged, "Set the price in force.",
            "pricing", "products/{product_id}"),
    Command("PUT", "/tax-rates/{country}/{category}", TaxRateChanged,
            "Set the tax rate of a country and product category.", "pricing", "products"),
    Command("POST", "/products/{product_id}/stock", StockAdjusted,
            "Add (positive quantity) or remove (negative) stock.", "inventory",
            "inventory/{product_id}"),
    Command("POST", "/orders", OrderCreated,
            "Place an order. It completes asynchronously: follow read_at.", "orders",
            "orders/{order_id}", "order_id"),
    Command("POST", "/orders/{order_id}/cancel", OrderCancellationRequested,
            "Ask to cancel an order; honoured unless it is already final.", "orders",
            "orders/{order_id}"),
]  # fmt: skip


def _routes(app: FastAPI, accept: Accept) -> None:
    for command in COMMANDS:
        app.add_api_route(
            command.path,
            _handler(command, accept),
            methods=[command.method],
            status_code=202,
            response_model=Accepted,
            tags=[command.tag],
            summary=f"{command.summary} ({command.event.event_type})",
            name=command.event.event_type,
        )


def _handler(command: Command, accept: Accept) -> Callable[..., Awaitable[Accepted]]:
    """Build an endpoint whose signature FastAPI reads: path fields, then the body."""
    body_model = request_model(command.event, set(command.path_fields), command.generated)

    async def handle(**arguments: Any) -> Accepted:
        body, key = arguments.pop("body"), arguments.pop("idempotency_key")
        client = arguments.pop("request").scope["state"][CLIENT]  # set by the key guard
        return await accept(command, body.model_dump(mode="json") | arguments, key, client)

    keyword = inspect.Parameter.KEYWORD_ONLY
    parameters = [inspect.Parameter(name, keyword, annotation=str) for name in command.path_fields]
    parameters.append(inspect.Parameter("body", keyword, annotation=body_model))
    parameters.append(inspect.Parameter("request", keyword, annotation=Request))
    key_header = Header(None, alias="Idempotency-Key", description=KEY_HELP)
    parameters.append(
        inspect.Parameter("idempotency_key", keyword, annotation=str | None, default=key_header)
    )
    handle.__signature__ = inspect.Signature(parameters, return_annotation=Accepted)  # type: ignore[attr-defined]
    handle.__doc__ = command.summary
    return handle
