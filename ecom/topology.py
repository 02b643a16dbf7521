"""topics.yaml as typed specs: every topic, its layout, its key and its event types.

Code asks a `Topology` for topics (`topology.topic("orders").name`,
`topology.for_event("OrderCreated")`, `topology.dead_letters("projections")`), never
spells a topic name itself. Every name derived from the topology is made here too:
consumer groups of projections and replays, the order flow's app ids and their changelog
topics. A topology can carry a name prefix, so tests and parallel environments get
topics and groups of their own.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ecom.errors import TopologyError
from ecom.settings import Settings
from ecom.textfile import read_text
from schemas import EVENT_TYPES

TopicKind = Literal["domain", "internal", "changelog", "dlq"]


def _config_value(value: object) -> str:
    """Render a YAML scalar the way Kafka spells config values."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class TopicSpec(BaseModel):
    """One topic as topics.yaml declares it (name without the prefix)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9._-]{1,200}$")
    kind: TopicKind = "domain"
    description: str = ""
    partitions: int = Field(ge=1, le=10_000)
    replication_factor: int = Field(ge=1, le=15)
    configs: dict[str, str] = Field(default_factory=dict)
    key: str | None = None
    events: dict[str, str] = Field(default_factory=dict)
    owner: str | None = None  # dlq and changelog topics: the side or app writing them

    @field_validator("configs", mode="before")
    @classmethod
    def _stringify(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): _config_value(v) for k, v in value.items()}
        return value

    @property
    def min_insync_replicas(self) -> int:
        return int(self.configs.get("min.insync.replicas", "1"))


class ServiceSpec(BaseModel):
    """A service, and the events it sends and receives (topics.yaml `services`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9-]{1,100}$")
    description: str = ""
    sends: tuple[str, ...] = ()
    receives: tuple[str, ...] = ()
    # Who runs as this service on a secure cluster, and what it needs besides its events.
    principals: tuple[str, ...] = ()
    # Consumer groups (a trailing * is a prefix): for every principal, or per principal.
    groups: tuple[str, ...] | dict[str, tuple[str, ...]] = ()
    owns: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    # Share groups (queues): members read its topics and may set the group's configs.
    share_groups: tuple[str, ...] = ()
    # A watcher reads every topic and describes every group the services use (read-only).
    watches: bool = False

    def groups_of(self, principal: str) -> tuple[str, ...]:
        """Return the consumer groups one of this service's principals uses."""
        if isinstance(self.groups, dict):
            return self.groups.get(principal, ())
        return self.groups


class Topic(BaseModel):
    """A topic as it exists on a cluster: its spec and its full (prefixed) name."""

    model_config = ConfigDict(frozen=True)

    spec: TopicSpec
    name: str

    def key_field(self, event_type: str) -> str:
        """Return the event field whose value is the record key."""
        return self.spec.events[event_type]


class Topology:
    """Every topic of the system, with an optional name prefix."""

    def __init__(
        self, specs: list[TopicSpec], prefix: str = "", services: list[ServiceSpec] | None = None
    ) -> None:
        self.specs = specs
        self.prefix = prefix
        self.services = services or []

    @classmethod
    def from_settings(cls, settings: Settings) -> Topology:
        """Read the topics file the settings name, under their topic prefix."""
        return cls.load(settings.topics_path, settings.topic_prefix)

    @classmethod
    def load(cls, path: Path, prefix: str = "") -> Topology:
        """Read topics.yaml; a malformed file raises TopologyError naming the spot."""
        text = read_text(path, refusal=TopologyError)
        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise TopologyError(f"{path} is not valid YAML: {error}") from error
        specs = parse_specs(document, str(path))
        return cls(specs, prefix, parse_services(document, specs, str(path)))

    def with_prefix(self, prefix: str) -> Topology:
        """Return the same topology with another name prefix."""
        return Topology(self.specs, prefix, self.services)

    @cached_property
    def _by_name(self) -> dict[str, Topic]:
        return {s.name: Topic(spec=s, name=self.prefix + s.name) for s in self.specs}

    @cached_property
    def _by_event(self) -> dict[str, Topic]:
        return {event: t for t in self._by_name.values() for event in t.spec.events}

    def topics(self) -> list[Topic]:
        """Return every topic, in file order."""
        return list(self._by_name.values())

    def topic(self, name: str) -> Topic:
        """Return a topic by its name in topics.yaml."""
        try:
            return self._by_name[name]
        except KeyError:
            raise TopologyError(f"no topic {name!r} in topics.yaml") from None

    def for_event(self, event_type: str) -> Topic:
        """Return the topic that carries an event type."""
        try:
            return self._by_event[event_type]
        except KeyError:
            raise TopologyError(f"no topic in topics.yaml carries {event_type!r}") from None

    def event_types(self) -> list[str]:
        """Return every event type some topic carries."""
        return list(self._by_event)

    def dead_letters(self, owner: str) -> Topic:
        """Return the dead-letter topic of a side (projections, order-flow)."""
        for topic in self._by_name.values():
            if topic.spec.kind == "dlq" and topic.spec.owner == owner:
                return topic
        raise TopologyError(f"topics.yaml has no dlq topic with owner {owner!r}")

    # -- derived names -------------------------------------------------------------

    def projection_group(self, projection: str) -> str:
        """Return the consumer group of a projection's runners."""
        return f"{self.prefix}{PROJECTION_GROUP}{projection}"

    def replay_group(self, projection: str) -> str:
        """Return the group id a replay of a projection reads under (it never joins)."""
        return f"{self.prefix}ecom-replay-{projection}"

    def watch_group(self) -> str:
        """Return the group id the live page's watch names (it never joins it)."""
        return f"{self.prefix}ecom-watch"

    def notifications_group(self) -> str:
        """Return the share group of the notifications workers (topics.yaml names it,
        and grants it)."""
        for service in self.services:
            if service.name == "notifications" and service.share_groups:
                return self.prefix + service.share_groups[0]
        raise TopologyError("topics.yaml has no notifications service with a share group")

    def topics_of(self, service: str) -> list[str]:
        """Return the names of the topics a service (topics.yaml `services`) reads or
        writes: those of its events, and those it owns or writes besides."""
        for spec in self.services:
            if spec.name == service:
                names = {self.for_event(e).name for e in (*spec.receives, *spec.sends)}
                names |= {self.prefix + t for t in (*spec.owns, *spec.writes)}
                return sorted(names)
        raise TopologyError(f"topics.yaml has no service {service}")

    def watched_topics(self) -> list[Topic]:
        """The topics the live page's watch tails: events and dead letters, not state."""
        return [t for t in self.topics() if t.spec.kind in ("domain", "internal", "dlq")]

    def watched_groups(self) -> list[str]:
        """The groups whose lag the watch shows (a trailing * is a prefix)."""
        return [self.flow_app("*"), self.projection_group("*")]

    def flow_app(self, service: str) -> str:
        """Return the app id (and consumer group) of an order-flow service."""
        return f"{self.prefix}{FLOW_APP}{service}"

    def changelog(self, service: str, table: str) -> Topic:
        """Return the changelog topic of an order-flow service's table."""
        return self.topic(f"{FLOW_APP}{service}-{table}-changelog")

    def projection_of(self, group: str) -> str | None:
        """Return the projection a group belongs to, if it is a projection's group."""
        marker = self.prefix + PROJECTION_GROUP
        return group.removeprefix(marker) if group.startswith(marker) else None

    def state_holder(self, group: str, topics: set[str]) -> str | None:
        """Describe the state a group's offsets are tied to, or None for a plain group."""
        if (name := self.projection_of(group)) is not None:
            return f"projection {name} (its view stores the offsets it reflects)"
        if changelogs := changelogs_of(group, topics):
            return f"stream app {group} (tables in {', '.join(changelogs)})"
        return None


PROJECTION_GROUP = "ecom-projection-"
FLOW_APP = "order-flow-"
FLOW_SERVICES = ("inventory", "pricing", "payment", "order")  # the order flow's workers


def changelogs_of(group: str, topics: set[str]) -> list[str]:
    """Return the changelog topics of a stream app (faust, Kafka Streams) named group."""
    return sorted(t for t in topics if t.startswith(group + "-") and t.endswith("-changelog"))


def parse_specs(document: Any, source: str) -> list[TopicSpec]:
    """Turn the parsed YAML document into topic specs, applying the defaults."""
    if not isinstance(document, dict) or not isinstance(document.get("topics"), dict):
        raise TopologyError(f"{source}: expected a mapping with a 'topics' section")
    defaults = document.get("defaults") or {}
    specs = []
    for name, body in document["topics"].items():
        specs.append(_parse_topic(str(name), body or {}, defaults, source))
    _check_events_unique(specs, source)
    _check_events_known(specs, source)
    return specs


def parse_services(document: Any, specs: list[TopicSpec], source: str) -> list[ServiceSpec]:
    """Read the `services` section; every event it names must be on some topic."""
    known = {event for spec in specs for event in spec.events}
    section = document.get("services") or {}
    if not isinstance(section, dict):
        raise TopologyError(f"{source}: services: expected a mapping")
    services = []
    for name, body in section.items():
        try:
            service = ServiceSpec(name=str(name), **(body or {}))
        except (ValidationError, TypeError) as error:
            raise TopologyError(f"{source}: services.{name}: {error}".splitlines()[0]) from None
        unknown = sorted(set(service.sends + service.receives) - known)
        if unknown:
            raise TopologyError(f"{source}: services.{name}: no topic carries {unknown[0]}")
        topics = {spec.name for spec in specs}
        missing = sorted(set(service.owns + service.writes) - topics)
        if missing:
            raise TopologyError(f"{source}: services.{name}: no topic {missing[0]!r}")
        services.append(service)
    return services


def _parse_topic(name: str, body: Any, defaults: Any, source: str) -> TopicSpec:
    if not isinstance(body, dict):
        raise TopologyError(f"{source}: topics.{name}: expected a mapping")
    fields = {k: v for k, v in defaults.items() if k != "configs"}
    fields |= {k: v for k, v in body.items() if k not in ("configs", "events")}
    fields["configs"] = {**(defaults.get("configs") or {}), **(body.get("configs") or {})}
    fields["events"] = _parse_events(name, body.get("events") or [], body.get("key"), source)
    try:
        return TopicSpec(name=name, **fields)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise TopologyError(f"{source}: topics.{name}.{where}: {first['msg']}") from None


def _parse_events(topic: str, items: Any, key: str | None, source: str) -> dict[str, str]:
    """Map each event type to its key field: `- Name` uses the topic key, `- Name: field`."""
    if not isinstance(items, list):
        raise TopologyError(f"{source}: topics.{topic}.events: expected a list")
    events: dict[str, str] = {}
    for item in items:
        if isinstance(item, str) and key:
            events[item] = key
        elif isinstance(item, dict) and len(item) == 1:
            ((event, field),) = item.items()
            events[str(event)] = str(field)
        else:
            raise TopologyError(
                f"{source}: topics.{topic}.events: {item!r} needs a key field "
                "(set the topic's `key` or write `- EventName: key_field`)"
            )
    return events


def _check_events_unique(specs: list[TopicSpec], source: str) -> None:
    seen: dict[str, str] = {}
    for spec in specs:
        for event in spec.events:
            if event in seen:
                raise TopologyError(
                    f"{source}: {event} is on both {seen[event]} and {spec.name}; "
                    "each event type belongs to one topic"
                )
            seen[event] = spec.name


def _check_events_known(specs: list[TopicSpec], source: str) -> None:
    """Every event type is one the schemas define, keyed by one of its own fields (found
    here, not as a KeyError in `ecom asyncapi` or an AttributeError in `ecom produce`)."""
    for spec in specs:
        for event, key in spec.events.items():
            model = EVENT_TYPES.get(event)
            if model is None:
                raise TopologyError(f"{source}: topics.{spec.name}.events: {event} is no event "
                                    "type the schemas define (`ecom schemas list`)")  # fmt: skip
            if key not in model.model_fields:
                raise TopologyError(
                    f"{source}: topics.{spec.name}: {event} has no field {key!r} "
                    f"to key by; its fields: {', '.join(model.model_fields)}"
                )
