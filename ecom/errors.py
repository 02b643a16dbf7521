"""Every error ecomstream raises on purpose.

    EcomError                     base; carries the process exit code
    +-- BadInput                  the user asked for something invalid (exit 2)
    |   +-- TopologyError         topics.yaml is malformed
    |   +-- PlanRefused           the cluster cannot be made to match topics.yaml
    |   +-- InvalidEvent          event data breaks its contract (missing field ...)
    +-- DecodeError               bytes on a topic are not an event we can read
    |   +-- UnknownSchema         the writer schema's fingerprint is not known here
    +-- SchemaIncompatible        a schema change would break old or new readers
    +-- KafkaUnavailable          brokers unreachable or a request failed (exit 3)
    |   +-- DeliveryFailed        a record was not acknowledged by Kafka (exit 3)
    +-- StaleView                 a view's offsets belong to another cluster or topic (exit 6)
    +-- ClusterError              the local cluster cannot start or stop (exit 4)
        +-- ToolMissing           Java or Maven is not installed
        +-- PortInUse             a port the cluster needs is taken

Foreign errors (confluent-kafka, pydantic, OSError) are mapped to these at the edge,
with `raise ... from`, so the CLI can print one line and exit with the right code.
"""

from __future__ import annotations


class EcomError(Exception):
    """Base of every error ecomstream raises on purpose."""

    exit_code = 1


class BadInput(EcomError):
    """The user asked for something invalid; nothing was changed."""

    exit_code = 2


class TopologyError(BadInput):
    """topics.yaml is malformed."""


class PlanRefused(BadInput):
    """The cluster cannot be made to match topics.yaml; nothing was changed."""


class InvalidEvent(BadInput):
    """Event data breaks its contract; the event was not published."""


class DecodeError(EcomError):
    """A record's bytes are not an event this code can read."""


class UnknownSchema(DecodeError):
    """The record was written with a schema whose fingerprint is not known here."""


class SchemaIncompatible(EcomError):
    """A schema change would break reading old events or new ones."""

    exit_code = 2


class KafkaUnavailable(EcomError):
    """The brokers did not answer, or refused a request."""

    exit_code = 3


class DeliveryFailed(KafkaUnavailable):
    """Kafka did not acknowledge a record."""


class StaleView(EcomError):
    """A view was built from a cluster or topic that is not the one here any more."""

    exit_code = 6


class ClusterError(EcomError):
    """The local cluster cannot start, stop or be found."""

    exit_code = 4


class ToolMissing(ClusterError):
    """Java or Maven is not installed."""


class PortInUse(ClusterError):
    """A port the local cluster needs is already taken."""
