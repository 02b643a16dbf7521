"""Turn user input (JSON, NDJSON files) into validated events, or say exactly what is wrong."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from pydantic import ValidationError

from ecom.errors import BadInput, InvalidEvent
from ecom.textfile import read_text, why_not_utf8
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
        text = read_text(path, "--data")
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
    """Number and decode the lines of a file (or stdin) as UTF-8, whatever the locale."""
    name = "<stdin>" if source == "-" else source
    try:
        with _binary(source) as handle:
            for number, line in enumerate(handle, start=1):
                try:
                    yield number, line.decode("utf-8")
                except UnicodeDecodeError as error:
                    raise BadInput(
                        f"{name}:{number}: {why_not_utf8(error)}; nothing was sent"
                    ) from error
    except OSError as error:
        raise BadInput(f"cannot read {name}: {error.strerror or error}") from error


def _binary(source: str) -> contextlib.AbstractContextManager[BinaryIO]:
    if source == "-":
        return contextlib.nullcontext(sys.stdin.buffer)
    return Path(source).open("rb")


def _parse_line(line: str) -> Event:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as error:
        raise BadInput(f"invalid JSON: {error}") from error
    if not isinstance(data, dict) or not isinstance(data.get(TYPE_FIELD), str):
        raise BadInput(f'each line must be a JSON object with a "{TYPE_FIELD}" field')
    event_type = data.pop(TYPE_FIELD)
    return build_event(event_type, data)
