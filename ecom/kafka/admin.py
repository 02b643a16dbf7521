"""Admin requests about the cluster and its logs, retried through leader moves:
the cluster id, topic ids, brokers, partitions, log start and end offsets, and the
first offset at or after a time. GroupAdmin and TopicAdmin build on it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from confluent_kafka import KafkaError, KafkaException, TopicCollection, TopicPartition
from confluent_kafka.admin import (
    AclOperation,
    AdminClient,
    OffsetSpec,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from ecom.errors import BadInput, KafkaRefused
from ecom.kafka.config import client_config
from ecom.kafka.errors import is_refusal, is_transient, kafka_error, metadata, reason

T = TypeVar("T")
Partition = tuple[str, int]
METADATA_TIMEOUT_S = 10.0
# Why a client may not write a topic (Admin.unwritable).
MISSING = "missing"  # Kafka says it does not exist
DENIED = "denied"  # not authorized to see it: Kafka does not say whether it exists
READ_ONLY = "read-only"  # it may see the topic, not WRITE it
_WRITES = {AclOperation.WRITE, AclOperation.ALL}


class Admin:
    """One cluster's admin client; every request retried while its error is transient."""

    def __init__(
        self, bootstrap: str, timeout: float = 15.0, overrides: dict[str, Any] | None = None
    ) -> None:
        self.bootstrap = bootstrap
        self.timeout = timeout
        self.admin = AdminClient(client_config(bootstrap, **(overrides or {})))
        self._answered = False  # whether a metadata request was ever answered

    def call(self, what: str, request: Callable[[], T]) -> T:
        """Run a request; retry transient errors until the timeout, map the rest."""
        if not self._answered:
            self.metadata()  # a cluster that cannot answer says so now, not in 15 s
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                return request()
            except KafkaException as error:
                if is_refusal(error):
                    raise KafkaRefused(f"cannot {what}: {reason(error)}") from error
                if not is_transient(error) or time.monotonic() > deadline:
                    raise kafka_error(f"cannot {what}", error) from error
                time.sleep(0.2)

    # -- the cluster -------------------------------------------------------------------

    def add_scram_user(self, user: str, password: str) -> None:
        """Create (or reset) a SCRAM-SHA-512 user."""
        info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192)
        upsert = UserScramCredentialUpsertion(user, info, password.encode())

        def request() -> None:
            for future in self.admin.alter_user_scram_credentials([upsert]).values():
                future.result()

        self.call(f"add the SCRAM user {user}", request)

    def metadata(self) -> Any:
        """Return the cluster's metadata (brokers, topics, partitions)."""
        answer = metadata(self.admin, self.bootstrap, METADATA_TIMEOUT_S, not self._answered)
        self._answered = True
        return answer

    def answers(self, timeout: float = 2.0) -> bool:
        """Tell whether the cluster answers a metadata request now (for readiness)."""
        try:
            self.admin.list_topics(timeout=timeout)
        except KafkaException:
            return False
        finally:
            self.admin.poll(0)  # serve the client's logs and error callbacks
        return True

    def cluster_id(self) -> str:
        """Return the cluster's id (a new one after a wipe)."""
        answer = self.call(
            "describe the cluster",
            lambda: self.admin.describe_cluster(request_timeout=self.timeout).result(),
        )
        return str(answer.cluster_id)

    def broker_count(self) -> int:
        """Return how many brokers the cluster has registered."""
        return len(self.metadata().brokers)

    def topic_names(self) -> set[str]:
        return set(self.metadata().topics)

    def topic_ids(self, names: Iterable[str]) -> dict[str, str]:
        """Return each topic's id (a recreated topic gets a new one)."""
        wanted = list(names)

        def request() -> dict[str, str]:
            found = self.admin.describe_topics(
                TopicCollection(wanted), request_timeout=self.timeout
            )
            return {name: str(future.result().topic_id) for name, future in found.items()}

        return self.call("describe topics", request)

    def unwritable(self, names: Iterable[str]) -> dict[str, str]:
        """Return why this client may not write each topic among names it may not write
        (MISSING, DENIED or READ_ONLY): asked of Kafka, with the operations the topic
        grants this principal. A cluster without an authorizer grants them all."""
        wanted = list(names)

        def request() -> dict[str, str]:
            found = self.admin.describe_topics(
                TopicCollection(wanted),
                include_authorized_operations=True,
                request_timeout=self.timeout,
            )
            problems: dict[str, str] = {}
            for name, future in found.items():
                try:
                    granted = future.result().authorized_operations
                except KafkaException as error:
                    problem = _DESCRIBE_PROBLEMS.get(error.args[0].code() if error.args else 0)
                    if problem is None:
                        raise
                    problems[name] = problem
                    continue
                if granted and not _WRITES & set(granted):
                    problems[name] = READ_ONLY
            return problems

        return self.call("describe topics", request)

    def require_topics(self, names: Iterable[str]) -> None:
        """Raise KafkaRefused, naming it, for a topic this client cannot see: missing, or
        not granted (a secure cluster shows a client only the topics it may describe).
        Said at start, where a worker would otherwise wait on it for good."""
        metadata = self.metadata()
        for name in names:
            found = metadata.topics.get(name)
            if found is None or found.error is not None:
                raise KafkaRefused(f"topic {name} is missing, or not granted to this client "
                                   "(`ecom topics apply` creates it and its ACLs)")  # fmt: skip

    def partitions(self, topics: dict[str, list[int] | None]) -> list[Partition]:
        """Expand a scope (topic -> partitions, None for all) and check it exists."""
        metadata = self.metadata()
        chosen: list[Partition] = []
        for topic, wanted in topics.items():
            found = metadata.topics.get(topic)
            if found is None or found.error is not None:
                raise BadInput(f"topic {topic} does not exist")
            live = sorted(found.partitions)
            missing = [p for p in wanted or [] if p not in live]
            if missing:
                raise BadInput(f"topic {topic} has no partition {missing[0]} (it has {len(live)})")
            chosen += [(topic, p) for p in (wanted if wanted is not None else live)]
        return chosen

    # -- the logs ----------------------------------------------------------------------

    def log_ends(self, topics: Iterable[str]) -> dict[Partition, int]:
        """Return the end offset of every partition of the topics that exist."""
        metadata = self.metadata()
        partitions = [
            (topic, partition)
            for topic in topics
            if (found := metadata.topics.get(topic)) is not None and found.error is None
            for partition in found.partitions
        ]
        return self.ends(partitions)

    def ends(self, partitions: list[Partition]) -> dict[Partition, int]:
        """Return the log end offset of each partition."""
        return self._list_offsets(partitions, OffsetSpec.latest())  # type: ignore[no-untyped-call]

    def starts(self, partitions: list[Partition]) -> dict[Partition, int]:
        """Return the log start offset of each partition."""
        return self._list_offsets(partitions, OffsetSpec.earliest())  # type: ignore[no-untyped-call]

    def at_time(self, partitions: list[Partition], at_ms: int) -> dict[Partition, int]:
        """Return each partition's first offset at or after a time (-1: none that late)."""
        return self._list_offsets(partitions, OffsetSpec.for_timestamp(at_ms))

    def _list_offsets(self, partitions: list[Partition], spec: Any) -> dict[Partition, int]:
        if not partitions:
            return {}

        topics = sorted({t for t, _ in partitions})
        attempts = 0

        def request() -> dict[Partition, int]:
            nonlocal attempts
            attempts += 1
            if attempts > 1:  # "no leaders found": refresh what the client knows of them
                for topic in topics:
                    self.admin.list_topics(topic=topic, timeout=self.timeout)
            asked = {TopicPartition(t, p): spec for t, p in partitions}
            futures = self.admin.list_offsets(asked, request_timeout=self.timeout)
            return {(tp.topic, tp.partition): f.result().offset for tp, f in futures.items()}

        return self.call("list offsets", request)

    def delete_records(self, before: dict[Partition, int]) -> None:
        """Delete every record below the given offsets (emptying a changelog)."""

        def request() -> None:
            asked = [TopicPartition(t, p, o) for (t, p), o in sorted(before.items())]
            for future in self.admin.delete_records(asked, request_timeout=self.timeout).values():
                future.result()

        self.call("delete records", request)


_DESCRIBE_PROBLEMS = {
    KafkaError.UNKNOWN_TOPIC_OR_PART: MISSING,
    KafkaError.TOPIC_AUTHORIZATION_FAILED: DENIED,
}


def log_ends(bootstrap: str, topics: Iterable[str], timeout: float = 15.0) -> dict[Partition, int]:
    """Return the end offset of every partition of the topics (those that exist)."""
    return Admin(bootstrap, timeout).log_ends(topics)


def registered_brokers(bootstrap: str) -> set[int]:
    """Return the node ids the cluster lists as brokers now (none if it does not answer)."""
    quick = {"log_level": 0, "socket.connection.setup.timeout.ms": 1000}
    admin = AdminClient(client_config(bootstrap, **quick))
    try:
        return set(admin.list_topics(timeout=1.5).brokers)
    except KafkaException:
        return set()
