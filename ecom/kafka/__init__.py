"""Kafka for the rest of the project: the only package that imports confluent_kafka.

    config       client settings: producer (idempotent, acks=all, murmur2), consumer, admin
    errors       confluent-kafka's errors mapped to ours; which ones are transient
    admin        cluster id, topic ids, partitions, log ends, offsets at a time
    groups       consumer groups: describe, committed offsets, move them
    topics       live topics and carrying out a topic plan; scratch topics
    producer     the one delivery-tracked producer of bytes
    deadletters  dead letters with Spring's kafka_dlt-* headers
    reader       read whole topics from the start in a background thread
    security     who a client is: TLS, SCRAM, per-service credentials

The wings use confluent-kafka's consumer, message and partition types through the names
re-exported here.
"""

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from ecom.kafka.admin import Admin, Partition, log_ends, registered_brokers
from ecom.kafka.config import (
    FIRST_OFFSET,
    LOW_LATENCY,
    PRODUCER_DEFAULTS,
    client_config,
    consumer_config,
    producer_config,
)
from ecom.kafka.deadletters import DeadLetters, Failed, dead_letter_headers
from ecom.kafka.errors import is_fatal, is_transient, kafka_error, reason
from ecom.kafka.groups import GroupAdmin, GroupInfo, Member
from ecom.kafka.producer import BytesProducer, Delivery, Headers, Outcome, OutcomeCallback
from ecom.kafka.reader import TopicReader, live_keys, read_to_end, take
from ecom.kafka.security import ClientSecurity, security_for, use_service
from ecom.kafka.topics import TopicAdmin, scratch_topology

__all__ = [
    "FIRST_OFFSET",
    "LOW_LATENCY",
    "PRODUCER_DEFAULTS",
    "Admin",
    "BytesProducer",
    "ClientSecurity",
    "Consumer",
    "DeadLetters",
    "Delivery",
    "Failed",
    "GroupAdmin",
    "GroupInfo",
    "Headers",
    "KafkaError",
    "KafkaException",
    "Member",
    "Message",
    "Outcome",
    "OutcomeCallback",
    "Partition",
    "TopicAdmin",
    "TopicPartition",
    "TopicReader",
    "client_config",
    "consumer_config",
    "dead_letter_headers",
    "is_fatal",
    "is_transient",
    "kafka_error",
    "live_keys",
    "log_ends",
    "producer_config",
    "read_to_end",
    "reason",
    "registered_brokers",
    "scratch_topology",
    "security_for",
    "take",
    "use_service",
]
