"""confluent-kafka's errors, mapped to ours at the edge, and which of them to ride out."""

from __future__ import annotations

import socket
import time
from collections import Counter
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from ecom.errors import KafkaRefused, KafkaUnavailable

TRANSIENT = {
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_LEADER_EPOCH,
    KafkaError.FENCED_LEADER_EPOCH,
    KafkaError.OFFSET_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError._TIMED_OUT,
    KafkaError._TRANSPORT,
    KafkaError._NOENT,  # "no leaders found": a new topic's leaders not in metadata yet
}


# The last authentication or TLS failure librdkafka reported per cluster: a refused
# password only ever shows up as a transport failure on the request that needed it.
REFUSALS: dict[str, tuple[float, str]] = {}
REFUSAL_KEPT_S = 60.0
_REFUSED_CODES = {KafkaError._AUTHENTICATION, KafkaError._SSL}


# How often librdkafka said, per cluster, that no broker answers or that one refused us:
# either ends a metadata wait at once.
_HOPELESS: Counter[str] = Counter()
METADATA_SLICE_S = 0.5


def note_client_error(bootstrap: str, error: KafkaError) -> None:
    """librdkafka's error_cb: remember why a cluster refused us, or that none answered."""
    refused = _refused(error)
    if refused:
        REFUSALS[bootstrap] = (time.monotonic(), str(error.str()))
    if refused or error.code() == KafkaError._ALL_BROKERS_DOWN:
        _HOPELESS[bootstrap] += 1


def is_fatal(error: KafkaError) -> bool:
    """Tell whether an error leaves its client unusable (close it and make a new one). A
    consumer's fatal error (fenced by another with its group.instance.id, say) comes as a
    message error coded _FATAL, and confluent-kafka does not set fatal() on it."""
    return bool(error.fatal()) or error.code() == KafkaError._FATAL


def fatal_cause(error: BaseException) -> KafkaError | None:
    """Return the fatal KafkaError behind an exception (itself, its cause or context):
    confluent-kafka raises a producer's fatal error from poll() or flush(), and a
    delivery report served in that call fails with a SystemError caused by it."""
    seen: BaseException | None = error
    for _ in range(3):
        if seen is None:
            return None
        if isinstance(seen, KafkaException) and seen.args and isinstance(seen.args[0], KafkaError):
            return seen.args[0] if is_fatal(seen.args[0]) else None
        seen = seen.__cause__ or seen.__context__
    return None


def _refused(error: KafkaError) -> bool:
    """An authentication or TLS failure, unless the connection broke during the handshake
    (a broker dying or starting: "... handshake failed: Local: Broker transport failure"),
    which says nothing about our credentials."""
    text = str(error.str()).lower()
    lost = "transport failure" in text or "disconnected" in text
    return error.code() in _REFUSED_CODES and not lost


def metadata(client: Any, bootstrap: str, timeout: float, fresh: bool = False,
             **options: Any) -> Any:  # fmt: skip
    """Return a producer's or admin client's metadata answer. Asked in short slices, so
    that a cluster where nothing listens, or that refuses us, fails at once instead of
    after the timeout. `fresh`: the client never had an answer yet."""
    client.poll(0)  # reports queued before this call are old news
    before = _HOPELESS[bootstrap]
    deadline = time.monotonic() + timeout
    while True:
        left = max(0.01, min(METADATA_SLICE_S, deadline - time.monotonic()))
        try:
            return client.list_topics(timeout=left, **options)
        except KafkaException as error:
            client.poll(0)  # serves error_cb: a refusal, or every broker down?
            # librdkafka says "all brokers down" once, and a fresh client may have said it
            # among the old news; with only its bootstrap servers to go by, nothing
            # listening there is as good. (One that had answers knows other brokers too.)
            hopeless = _HOPELESS[bootstrap] > before or (fresh and nothing_listens(bootstrap))
            if hopeless or time.monotonic() >= deadline:
                raise unreachable(bootstrap, error) from error


def nothing_listens(bootstrap: str, default_port: int = 9092) -> bool:
    """Tell whether every bootstrap server refuses a TCP connection (an address we cannot
    read counts as listening: the wait goes on, as before). A server without a port is
    at librdkafka's default."""
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition("://")[2].rpartition(":")
        if not host:
            host, port = port, str(default_port)
        try:
            address = (host.strip("[]"), int(port))
        except ValueError:
            return False
        try:
            socket.create_connection(address, timeout=METADATA_SLICE_S).close()
        except OSError:
            continue
        return False
    return True


def unreachable(bootstrap: str, error: BaseException) -> KafkaUnavailable:
    """The error for a cluster that did not answer, saying so when it just refused us."""
    noted, refusal = REFUSALS.get(bootstrap, (0.0, ""))
    if refusal and time.monotonic() - noted < REFUSAL_KEPT_S:
        return KafkaRefused(f"Kafka at {bootstrap} refused this client: {refusal}")
    return kafka_error(f"cannot reach Kafka at {bootstrap}", error)


def kafka_error(what: str, error: BaseException | KafkaError) -> KafkaUnavailable:
    """Map a confluent-kafka error to KafkaUnavailable with a readable message."""
    return KafkaUnavailable(f"{what}: {reason(error)}")


def reason(error: BaseException | KafkaError) -> str:
    """Return the readable reason of a confluent-kafka error."""
    if isinstance(error, KafkaError):
        return str(error.str())
    if isinstance(error, KafkaException) and error.args and isinstance(error.args[0], KafkaError):
        return str(error.args[0].str())
    return str(error)


def error_code(error: BaseException) -> int | None:
    """Return the Kafka error code behind an error (or its cause), if there is one."""
    cause = error.__cause__ if error.__cause__ is not None else error
    if isinstance(cause, KafkaException) and cause.args and isinstance(cause.args[0], KafkaError):
        return int(cause.args[0].code())
    return None


def is_refusal(error: BaseException) -> bool:
    """Tell whether a Kafka error is the cluster saying no (a broker's error code, or a
    failed authentication or TLS handshake), not a lost or slow connection."""
    if is_transient(error) or not isinstance(error, KafkaException) or not error.args:
        return False
    cause = error.args[0]
    return isinstance(cause, KafkaError) and (cause.code() >= 0 or _refused(cause))


def is_transient(error: BaseException) -> bool:
    """Tell whether a Kafka error is worth retrying (leader moves, new topics, timeouts)."""
    if not isinstance(error, KafkaException) or not error.args:
        return False
    cause = error.args[0]
    return isinstance(cause, KafkaError) and (cause.retriable() or cause.code() in TRANSIENT)
