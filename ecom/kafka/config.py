"""Client settings, in one place: what every producer, consumer and admin client of the
project starts from.

librdkafka's own log lines go to the `ecom.librdkafka` logger instead of stderr, so a
command prints one clear error instead of a screenful of connection retries.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from ecom.kafka.errors import note_client_error
from ecom.kafka.security import security_for

LIBRDKAFKA_LOG = logging.getLogger("ecom.librdkafka")

# Measured with `ecom bench produce` (see docs/benchmarks.md): with acks=all every produce request
# costs three brokers CPU, so fewer, fuller batches (linger 50 ms) more than double the
# rate of 10 ms. Latency-sensitive callers (the command API, the order flow) add LOW_LATENCY.
PRODUCER_DEFAULTS: dict[str, Any] = {
    "acks": "all",
    "enable.idempotence": True,
    # The Java client's (and aiokafka's, so faust's) key hash: every client must put one
    # entity's events on one partition. librdkafka's own default hashes differently.
    "partitioner": "murmur2_random",
    "linger.ms": 50,
    "batch.size": 1_000_000,
    "compression.type": "lz4",
    "delivery.timeout.ms": 120_000,
    "queue.buffering.max.messages": 1_000_000,
    "queue.buffering.max.kbytes": 1_048_576,
    # A topic that is missing should fail in seconds, not the default 30.
    "topic.metadata.propagation.max.ms": 5_000,
}
LOW_LATENCY: dict[str, Any] = {"linger.ms": 5}

# Consumers that fold batches: no auto commit (the caller commits what it stored), big
# fetches, a read from the start when nothing is stored.
CONSUMER_DEFAULTS: dict[str, Any] = {
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "auto.offset.reset": "earliest",
    "fetch.max.bytes": 52_428_800,
    "queued.max.messages.kbytes": 262_144,
}

# Where a read from a partition's first record starts: offset 0, and auto.offset.reset
# earliest moves it to the log start if that has moved on. OFFSET_BEGINNING means the
# same, but librdkafka looks it up first, and a consumer not yet connected got its first
# record half a second later (measured: 0.51 s against 0.04 s).
FIRST_OFFSET = 0


def client_config(bootstrap: str, **overrides: Any) -> dict[str, Any]:
    """Return the settings every client starts from."""
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "client.id": "ecomstream",
        "logger": LIBRDKAFKA_LOG,
        "socket.connection.setup.timeout.ms": 5000,
        "error_cb": partial(note_client_error, bootstrap),
    }
    config.update(security_for(bootstrap).librdkafka())
    config.update(overrides)
    return config


def producer_config(bootstrap: str, **overrides: Any) -> dict[str, Any]:
    """Return a producer's settings: idempotent, acks=all, murmur2 keys."""
    return client_config(bootstrap, **(PRODUCER_DEFAULTS | overrides))


def consumer_config(bootstrap: str, group: str, **overrides: Any) -> dict[str, Any]:
    """Return a consumer's settings for a group (no auto commit, earliest)."""
    return client_config(bootstrap, **({"group.id": group} | CONSUMER_DEFAULTS | overrides))
