"""The Avro contracts on disk: current schemas and every released version.

    schemas/avro/<domain>/<Event>.avsc            the schema code writes today
    schemas/released/<domain>/<Event>.vN.avsc     frozen copies of released versions

Each schema is parsed once. A schema's identity on the wire is the CRC-64-AVRO
fingerprint of its Parsing Canonical Form, as Avro single-object encoding requires.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from fastavro import parse_schema
from fastavro.schema import fingerprint, to_parsing_canonical_form

from schemas.errors import BadInput

CURRENT_DIR = Path(__file__).with_name("avro")
RELEASED_DIR = Path(__file__).with_name("released")
_RELEASED_NAME = re.compile(r"^(?P<event>\w+)\.v(?P<version>\d+)\.avsc$")


@dataclass(frozen=True)
class SchemaVersion:
    """One version of one event's schema."""

    event_type: str
    domain: str
    version: int | None  # None: the current schema
    path: Path
    raw: dict[str, Any]
    parsed: Any
    fingerprint: bytes  # 8 bytes, little-endian, as written after the C3 01 marker

    @property
    def label(self) -> str:
        return f"{self.event_type} {'current' if self.version is None else f'v{self.version}'}"


def load_schema(path: Path, event_type: str, domain: str, version: int | None) -> SchemaVersion:
    """Parse one .avsc file (one that is not an Avro schema is bad input, said in a line)."""
    try:
        raw = json.loads(path.read_text())
        canonical = to_parsing_canonical_form(raw)
        parsed = parse_schema(raw)
    except OSError as error:
        raise BadInput(f"cannot read {path}: {error.strerror or error}") from error
    except Exception as error:
        raise BadInput(f"{path} is not an Avro schema: {error}") from error
    return SchemaVersion(
        event_type=event_type,
        domain=domain,
        version=version,
        path=path,
        raw=raw,
        parsed=parsed,
        fingerprint=bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO")),
    )


class SchemaRegistry:
    """Every schema version this code knows, by event type and by fingerprint."""

    def __init__(self, current: list[SchemaVersion], released: list[SchemaVersion]) -> None:
        self.current = {s.event_type: s for s in current}
        self.released: dict[str, list[SchemaVersion]] = {}
        for version in sorted(released, key=lambda s: s.version or 0):
            self.released.setdefault(version.event_type, []).append(version)
        self.by_fingerprint = {s.fingerprint: s for s in released}
        self.by_fingerprint.update({s.fingerprint: s for s in current})

    @classmethod
    def load(
        cls, current_dir: Path = CURRENT_DIR, released_dir: Path = RELEASED_DIR
    ) -> SchemaRegistry:
        """Read every schema file below the two folders."""
        current = [
            load_schema(path, path.stem, path.parent.name, None)
            for path in sorted(current_dir.glob("*/*.avsc"))
        ]
        released = []
        for path in sorted(released_dir.glob("*/*.avsc")):
            match = _RELEASED_NAME.match(path.name)
            if match is None:
                raise ValueError(f"{path}: released schemas are named <Event>.v<N>.avsc")
            event, version = match["event"], int(match["version"])
            released.append(load_schema(path, event, path.parent.name, version))
        return cls(current, released)


@cache
def default_registry() -> SchemaRegistry:
    """Return the registry of the schemas shipped with this package."""
    return SchemaRegistry.load()
