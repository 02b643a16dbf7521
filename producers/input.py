"""Turn user input (JSON, NDJSON files) into validated events, or say exactly what is wrong."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ecom.errors import BadInput, InvalidEvent
from schemas import EVENT_TYPES, Event
from schemas.codec import describe

TYPE_FIELD = "type"


def event_class(event_type: str) -> type[Event]:
    """Return the model of an event type, or fail naming the known ones."""
    try:
        return EVENT_TYPES[event_type]
    except KeyError:
        known = ", ".join(sorted(EVENT_TYPES))
        raise BadInput(f"unknown event type {event_type!r}; known types: {known}") from None


def build_event(event_type: str, data: Any) -> Event:
    """Validate data against an event's contract and return the event."""
    model = event_class(event_type)
    if not isinstance(data, dict):
        raise InvalidEvent(f"{event_type}: expected a JSON object, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise InvalidEvent(f"{event_type}: {describe(error)}") from error


def parse_data_option(text: str) -> Any:
    """Parse --data: inline JSON, or @path to read it from a file."""
    source = "--data"
    if text.startswith("@"):
        path = Path(text[1:])
        source = str(path)
        try:
            text = path.read_text()
        except OSError as error:
            raise BadInput(f"cannot read {path}: {error.strerror}") from error
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise BadInput(f"invalid JSON in {source}: {error}") from error


def read_ndjson(source: str) -> list[Event]:
    """Read and validate a whole NDJSON file (or `-` for stdin) before anything is sent."""
    return [event for _, event in read_ndjson_lines(source)]


def read_ndjson_lines(source: str) -> list[tuple[int, Event]]:
    """Like read_ndjson, with each event's line number (to name it in a report)."""
    events: list[tuple[int, Event]] = []
    errors: list[str] = []
    name = "<stdin>" if source == "-" else source
    for number, line in _lines(source):
        if not line.strip():
            continue
        try:
            events.append((number, _parse_line(line)))
        except BadInput as error:
            errors.append(f"{name}:{number}: {error}")
    if errors:
        more = f" (and {len(errors) - 1} more bad line(s))" if len(errors) > 1 else ""
        raise BadInput(f"{errors[0]}{more}; nothing was sent")
    if not events:
        raise BadInput(f"{name} holds no events; nothing was sent")
    return events


def _lines(source: str) -> Iterator[tuple[int, str]]:
    if source == "-":
        yield from enumerate(sys.stdin, start=1)
        return
    try:
        with Path(source).open(encoding="utf-8") as handle:
            yield from enumerate(handle, start=1)
    except OSError as error:
        raise BadInput(f"cannot read {source}: {error.strerror}") from error
    except UnicodeDecodeError as error:
        raise BadInput(f"{source} is not UTF-8 text: {error.reason}") from error


def _parse_line(line: str) -> Event:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as error:
        raise BadInput(f"invalid JSON: {error}") from error
    if not isinstance(data, dict) or not isinstance(data.get(TYPE_FIELD), str):
        raise BadInput(f'each line must be a JSON object with a "{TYPE_FIELD}" field')
    event_type = data.pop(TYPE_FIELD)
    return build_event(event_type, data)
