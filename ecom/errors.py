"""Every error ecomstream raises on purpose.

    EcomError                     base; carries the process exit code
    +-- BadInput                  the user asked for something invalid (exit 2)
    |   +-- TopologyError         topics.yaml is malformed
    |   +-- PlanRefused           the cluster cannot be made to match topics.yaml
    |   +-- InvalidEvent          event data breaks its contract (missing field ...)
    +-- DecodeError               bytes on a topic are not an event we can read
    |   +-- UnknownSchema         the writer schema's fingerprint is not known here
    +-- NotCompilable             internal: the codec falls back to fastavro's writer
    +-- NotPriceable              an order lacks a price or tax rate (OrderPricingFailed)
    +-- SchemaIncompatible        a schema change would break old or new readers (exit 2)
    +-- KafkaUnavailable          brokers unreachable or a request failed (exit 3)
    |   +-- KafkaRefused          the cluster answered no: asking again will not help
    |   +-- DeliveryFailed        a record was not acknowledged by Kafka (exit 3)
    |   +-- ClientFailed          a client hit a fatal error: replace it (a fenced consumer)
    +-- ClusterError              the local cluster cannot start or stop (exit 4)
    |   +-- ToolMissing           Java or Maven is not installed
    |   +-- PortInUse             a port to listen on is taken (a node's, an API's)
    +-- StoreError                the view database cannot be opened or refused (exit 5)
    |   +-- Fenced                another runner wrote the same partition first
    +-- StaleView                 a view's offsets belong to another cluster or topic (exit 6)
    +-- ProcessFailed             a child process keeps failing, or died mid-job (exit 7)

The root and the contract errors (InvalidEvent, DecodeError, UnknownSchema, NotCompilable,
NotPriceable) are defined
in schemas.errors, because the contracts sit below everything else; they are the same
classes here. Foreign errors (confluent-kafka, pydantic, OSError, sqlite3, psycopg) are
mapped to these at the edge, with `raise ... from`, so the CLI prints one line and exits
with the right code.
"""

from __future__ import annotations

from schemas.errors import (
    BadInput,
    DecodeError,
    EcomError,
    InvalidEvent,
    NotCompilable,
    NotPriceable,
    UnknownSchema,
)

__all__ = [
    "BadInput",
    "ClientFailed",
    "ClusterError",
    "DecodeError",
    "DeliveryFailed",
    "EcomError",
    "Fenced",
    "InvalidEvent",
    "KafkaRefused",
    "KafkaUnavailable",
    "NotCompilable",
    "NotPriceable",
    "PlanRefused",
    "PortInUse",
    "ProcessFailed",
    "SchemaIncompatible",
    "StaleView",
    "StoreError",
    "ToolMissing",
    "TopologyError",
    "UnknownSchema",
]


class TopologyError(BadInput):
    """topics.yaml is malformed."""


class PlanRefused(BadInput):
    """The cluster cannot be made to match topics.yaml; nothing was changed."""


class SchemaIncompatible(EcomError):
    """A schema change would break reading old events or new ones."""

    exit_code = 2


class KafkaUnavailable(EcomError):
    """The brokers did not answer, or refused a request."""

    exit_code = 3


class KafkaRefused(KafkaUnavailable):
    """The cluster refused this client or this request (authentication, authorization, a
    request it will never grant): unlike a timeout, asking again will not help."""


class DeliveryFailed(KafkaUnavailable):
    """Kafka did not acknowledge a record."""


class ClientFailed(KafkaUnavailable):
    """A Kafka client hit a fatal error (a consumer fenced by another with its
    group.instance.id, say): it does nothing any more, and must be closed and replaced."""


class ClusterError(EcomError):
    """The local cluster cannot start, stop or be found."""

    exit_code = 4


class ToolMissing(ClusterError):
    """Java or Maven is not installed."""


class PortInUse(ClusterError):
    """A port to listen on is already taken: a node's, an API's or a metrics port."""


class StoreError(EcomError):
    """The view database cannot be opened or refused a statement."""

    exit_code = 5


class Fenced(StoreError):
    """A batch was refused because another runner moved the partition's stored offset
    since this one read it (the runner re-reads and goes on)."""


class StaleView(EcomError):
    """A view was built from a cluster or topic that is not the one here any more."""

    exit_code = 6


class ProcessFailed(EcomError):
    """A supervised child process kept failing, so its supervisor gave up; or a process
    doing part of a job (a parallel replay's) failed or died."""

    exit_code = 7
