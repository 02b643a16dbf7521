"""The AsyncAPI 3.0 document of the shop, made from topics.yaml and the .avsc files.

Every topic is a channel with its Kafka bindings (partitions, replicas, key, configs);
every event type a message with its Avro schema and its CloudEvents headers; every
service in topics.yaml's `services` an operation per channel it sends to or receives
from. The committed copy (docs/asyncapi.yaml) is checked against this by `make lint`.
"""

from __future__ import annotations

from typing import Any

import yaml

from ecom.topology import ServiceSpec, Topic, Topology
from schemas import EVENT_TYPES
from schemas.codec import CONTENT_TYPE
from schemas.registry import default_registry

AVRO = "application/vnd.apache.avro;version=1.9.0"
KAFKA_BINDING = "0.5.0"
INTEGER_CONFIGS = frozenset({"retention.ms", "retention.bytes", "delete.retention.ms",
                             "max.message.bytes", "min.insync.replicas"})  # fmt: skip


def document(topology: Topology, version: str) -> dict[str, Any]:
    """Return the AsyncAPI document as plain data."""
    topics = topology.topics()
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "ecomstream",
            "version": version,
            "description": (
                "Events of an e-commerce back end on Kafka. Each record's key is the id of "
                "the entity it is about; its value is Avro single-object encoding (0xC3 0x01, "
                "the schema's CRC-64-AVRO fingerprint, the binary body); its headers are "
                "CloudEvents 1.0 in binary mode."
            ),
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": {
            "local": {
                "host": "127.0.0.1:9092",
                "protocol": "kafka-secure",
                "description": (
                    "The local cluster of `ecom cluster up` (brokers 9092-9094): SASL_SSL, "
                    "TLS with the cluster's own CA, a SCRAM user per service "
                    "(`ecom cluster credentials`), ACLs from topics.yaml."
                ),
                "security": [{"$ref": "#/components/securitySchemes/scram"}],
            }
        },
        "channels": {t.spec.name: _channel(t) for t in topics},
        "operations": _operations(topology, topics),
        "components": {
            "messages": {e: _message(topology, e) for t in topics for e in t.spec.events},
            "securitySchemes": {
                "scram": {
                    "type": "scramSha512",
                    "description": "SCRAM-SHA-512 over TLS; each service its own user.",
                }
            },
        },
    }


def render(topology: Topology, version: str) -> str:
    """Return the document as YAML."""
    return yaml.safe_dump(document(topology, version), sort_keys=False, width=100)


def _channel(topic: Topic) -> dict[str, Any]:
    spec = topic.spec
    description = spec.description
    if spec.owner:
        description += f" ({spec.kind} topic of {spec.owner}; its records are not events)"
    return {
        "address": spec.name,
        "description": description,
        "messages": {e: {"$ref": f"#/components/messages/{e}"} for e in spec.events},
        "bindings": {
            "kafka": {
                "topic": spec.name,
                "partitions": spec.partitions,
                "replicas": spec.replication_factor,
                "topicConfiguration": _configs(spec.configs),
                "bindingVersion": KAFKA_BINDING,
            }
        },
    }


def _configs(configs: dict[str, str]) -> dict[str, Any]:
    typed: dict[str, Any] = {}
    for name, value in sorted(configs.items()):
        if name == "cleanup.policy":
            typed[name] = value.split(",")
        elif name in INTEGER_CONFIGS:
            typed[name] = int(value)
        elif value in ("true", "false"):
            typed[name] = value == "true"
        else:
            typed[name] = value
    return typed


def _operations(topology: Topology, topics: list[Topic]) -> dict[str, Any]:
    operations: dict[str, Any] = {}
    for topic in topics:
        if topic.spec.owner:
            operations[f"{topic.spec.owner}.send.{topic.spec.name}"] = {
                "action": "send",
                "channel": {"$ref": f"#/channels/{topic.spec.name}"},
                "summary": f"{topic.spec.owner} writes its {topic.spec.kind} records",
            }
    for service in topology.services:
        for action, events in (("send", service.sends), ("receive", service.receives)):
            for topic in topics:
                wanted = [e for e in topic.spec.events if e in events]
                if wanted:
                    operations[f"{service.name}.{action}.{topic.spec.name}"] = _operation(
                        service, action, topic, wanted
                    )
    return operations


def _operation(service: ServiceSpec, action: str, topic: Topic, events: list[str]) -> Any:
    channel = topic.spec.name
    return {
        "action": action,
        "channel": {"$ref": f"#/channels/{channel}"},
        "summary": f"{service.name} {action}s {', '.join(events)}",
        "description": service.description,
        "messages": [{"$ref": f"#/channels/{channel}/messages/{e}"} for e in events],
    }


def _message(topology: Topology, event_type: str) -> dict[str, Any]:
    schema = default_registry().current[event_type]
    key_field = topology.for_event(event_type).key_field(event_type)
    model = EVENT_TYPES[event_type]
    return {
        "name": event_type,
        "title": event_type,
        "summary": (model.__doc__ or "").strip().splitlines()[0] if model.__doc__ else "",
        "contentType": CONTENT_TYPE,
        "headers": _headers(model.avro_name()),
        "payload": {"schemaFormat": AVRO, "schema": schema.raw},
        "bindings": {
            "kafka": {
                "key": {"type": "string", "description": f"the event's {key_field}"},
                "bindingVersion": KAFKA_BINDING,
            }
        },
    }


def _headers(ce_type: str) -> dict[str, Any]:
    text = {"type": "string"}
    return {
        "type": "object",
        "required": ["ce_specversion", "ce_id", "ce_type", "ce_source", "ce_time", "content-type"],
        "properties": {
            "ce_specversion": {"type": "string", "const": "1.0"},
            "ce_id": {**text, "description": "the event id (a UUID), unique per event"},
            "ce_type": {"type": "string", "const": ce_type},
            "ce_source": {**text, "description": "who published it, such as /ecomstream/api"},
            "ce_time": {**text, "format": "date-time", "description": "when it happened"},
            "content-type": {"type": "string", "const": CONTENT_TYPE},
        },
    }
