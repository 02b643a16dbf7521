"""confluent-kafka client settings shared by every client we create.

librdkafka's own log lines go to the `ecom.librdkafka` logger instead of stderr, so a
command prints one clear error instead of a screenful of connection retries.
"""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from ecom.errors import KafkaUnavailable

LIBRDKAFKA_LOG = logging.getLogger("ecom.librdkafka")


def client_config(bootstrap: str, **overrides: Any) -> dict[str, Any]:
    """Return the settings every client starts from."""
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "client.id": "ecomstream",
        "logger": LIBRDKAFKA_LOG,
        "socket.connection.setup.timeout.ms": 5000,
    }
    config.update(overrides)
    return config


def admin_client(bootstrap: str) -> AdminClient:
    """Return an AdminClient for the cluster."""
    return AdminClient(client_config(bootstrap))


def kafka_error(what: str, error: BaseException) -> KafkaUnavailable:
    """Map a confluent-kafka error to KafkaUnavailable with a readable message."""
    if isinstance(error, KafkaException) and error.args and isinstance(error.args[0], KafkaError):
        reason = error.args[0].str()
    else:
        reason = str(error)
    return KafkaUnavailable(f"{what}: {reason}")
