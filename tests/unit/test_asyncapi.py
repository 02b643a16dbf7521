"""The AsyncAPI document: valid against the official 3.0.0 schema, up to date, complete,
and its senders and receivers agree with the code."""

from __future__ import annotations

import copy
import json
from importlib.metadata import version
from typing import Any

import jsonschema
import pytest
import referencing
import referencing.jsonschema
import yaml

from consumers.projections import PROJECTIONS
from ecom.asyncapi import document, render
from ecom.topology import Topology
from producers.api import COMMANDS
from schemas import EVENT_TYPES
from streams import inventory, order, payment, pricing
from tests.support import REPO

VENDORED = REPO / "tests" / "vendor" / "asyncapi" / "asyncapi-3.0.0.json"
COMMITTED = REPO / "docs" / "asyncapi.yaml"


@pytest.fixture(scope="module")
def topology() -> Topology:
    return Topology.load(REPO / "topics.yaml")


@pytest.fixture(scope="module")
def validator() -> Any:
    """A validator of the bundled schema, every definition registered under its $id."""
    schema = json.loads(VENDORED.read_text())
    resources = [
        (uri, referencing.Resource.from_contents(body, referencing.jsonschema.DRAFT7))
        for uri, body in schema["definitions"].items()
    ]
    registry: Any = referencing.Registry().with_resources(resources)
    return jsonschema.Draft7Validator(schema, registry=registry)


def _errors(validator: Any, doc: dict[str, Any]) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]


def test_the_committed_document_is_the_generated_one(topology: Topology) -> None:
    assert COMMITTED.read_text() == render(topology, version("ecomstream")), (
        "stale: run `ecom asyncapi -o docs/asyncapi.yaml`"
    )


def test_the_document_is_valid_asyncapi_3(validator: Any) -> None:
    doc = yaml.safe_load(COMMITTED.read_text())
    assert _errors(validator, doc) == []


def test_the_validator_refuses_a_broken_document(validator: Any, topology: Topology) -> None:
    broken = copy.deepcopy(document(topology, "0"))
    broken["channels"]["users"]["bindings"]["kafka"]["partitions"] = 0
    del broken["operations"][next(iter(broken["operations"]))]["action"]
    errors = _errors(validator, broken)
    assert errors, "a zero partition count and an operation without action are invalid"


def test_every_topic_and_event_type_is_in_it(topology: Topology) -> None:
    doc = yaml.safe_load(COMMITTED.read_text())
    assert set(doc["channels"]) == {t.spec.name for t in topology.topics()}
    assert set(doc["components"]["messages"]) == set(EVENT_TYPES)
    for name, message in doc["components"]["messages"].items():
        assert message["payload"]["schema"]["name"] == name
        assert message["headers"]["properties"]["ce_type"]["const"].endswith(f".{name}")


def test_senders_and_receivers_agree_with_the_code(topology: Topology) -> None:
    services = {s.name: s for s in topology.services}
    assert set(services["command-api"].sends) == {c.event.event_type for c in COMMANDS}
    for name, module in (("inventory", inventory), ("pricing", pricing),
                         ("payment", payment), ("order", order)):  # fmt: skip
        receives = set(services[f"order-flow-{name}"].receives)
        assert receives >= module.WANTED, f"order-flow-{name} handles more than it declares"
    read = {
        event
        for projection in PROJECTIONS.values()
        for topic in projection.topics
        for event in topology.topic(topic).spec.events
    }
    assert set(services["projections"].receives) == read
    sent = {e for s in topology.services for e in s.sends}
    assert sent == set(EVENT_TYPES), "every event type has a sender"
