"""Who a client is to the cluster, in one place: every producer, consumer and admin
client (librdkafka), every faust worker (aiokafka) and Kafka's own tools take their
security settings from here.

Where they come from, first match wins:

1. `ECOM_KAFKA_SECURITY_PROTOCOL` and friends (`..._SASL_MECHANISM`, `..._SASL_USERNAME`,
   `..._SASL_PASSWORD`, `..._SSL_CA_LOCATION`): a cluster of your own.
2. `ECOM_KAFKA_CREDENTIALS`: a librdkafka properties file (`ecom cluster credentials`
   writes them).
3. The local cluster's `credentials/<service>.properties`, when the bootstrap servers
   are that cluster's; the service is what the command runs as (`use_service`), `admin`
   for tools and tests.
4. Nothing: PLAINTEXT.

Passwords live in files of mode 0600 and in the environment, never on a command line.
"""

from __future__ import annotations

import json
import os
import ssl
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ecom.errors import BadInput
from ecom.private import private_folder
from ecom.settings import get_settings
from ecom.textfile import not_utf8

# The principals of the secure local cluster: one per service, plus the brokers' own.
SERVICES = (
    "inventory", "pricing", "payment", "order", "projections", "replay", "commands",
    "producer", "monitor", "notifications", "admin",
)  # fmt: skip
BROKER_USER = "broker"
MECHANISM = "SCRAM-SHA-512"
_ENV_KEYS = {
    "security.protocol": "ECOM_KAFKA_SECURITY_PROTOCOL",
    "sasl.mechanisms": "ECOM_KAFKA_SASL_MECHANISM",
    "sasl.username": "ECOM_KAFKA_SASL_USERNAME",
    "sasl.password": "ECOM_KAFKA_SASL_PASSWORD",
    "ssl.ca.location": "ECOM_KAFKA_SSL_CA_LOCATION",
}
PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "GSSAPI", "OAUTHBEARER")
_current = {"service": os.environ.get("ECOM_KAFKA_SERVICE", "admin")}


def use_service(service: str) -> None:
    """Say which service this process runs as (its principal on a secure cluster)."""
    if service not in SERVICES:
        raise BadInput(f"unknown service {service!r}; one of {', '.join(SERVICES)}")
    _current["service"] = service


def current_service() -> str:
    return _current["service"]


def credentials_dir(cluster_root: Path) -> Path:
    """Where the local cluster keeps the services' client settings and its CA."""
    return cluster_root / "credentials"


def credentials_file(cluster_root: Path, service: str) -> Path:
    return credentials_dir(cluster_root) / f"{service}.properties"


def read_properties(path: Path) -> dict[str, str]:
    """Read `key=value` lines (comments and blank lines skipped)."""
    settings: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")  # an OSError is the caller's to name
    except UnicodeDecodeError as error:
        raise BadInput(not_utf8(str(path), error)) from error
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings[key.strip()] = value.strip()
    return settings


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, never visible half-written (folders it
    makes are only its owner's too: 0700)."""
    private_folder(path.parent)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
        Path(temporary).chmod(0o600)
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class ClientSecurity:
    """A client's security settings, in librdkafka's names."""

    settings: dict[str, str]

    @property
    def protocol(self) -> str:
        return self.settings.get("security.protocol", "PLAINTEXT").upper()

    def librdkafka(self) -> dict[str, str]:
        return dict(self.settings)

    def java(self) -> dict[str, str]:
        """The same settings for Kafka's Java clients and tools (--command-config)."""
        java = {"security.protocol": self.protocol}
        if "SASL" in self.protocol:
            user, password = self.settings["sasl.username"], self.settings["sasl.password"]
            java["sasl.mechanism"] = self.settings.get("sasl.mechanisms", MECHANISM)
            java["sasl.jaas.config"] = (
                "org.apache.kafka.common.security.scram.ScramLoginModule required "
                f'username="{user}" password="{password}";'
            )
        if "ssl.ca.location" in self.settings:
            java["ssl.truststore.type"] = "PEM"
            java["ssl.truststore.location"] = self.settings["ssl.ca.location"]
        return java

    def write_java(self, path: Path) -> None:
        """Write the Java settings as a properties file only we may read (a password)."""
        write_private(path, "".join(f"{key}={value}\n" for key, value in self.java().items()))

    def ssl_context(self) -> ssl.SSLContext | None:
        """A TLS context for aiokafka (None without TLS)."""
        if "SSL" not in self.protocol:
            return None
        return ssl.create_default_context(cafile=self.settings.get("ssl.ca.location"))


def _from_environment() -> dict[str, str]:
    settings = {key: os.environ[env] for key, env in _ENV_KEYS.items() if os.environ.get(env)}
    if settings:
        _check(settings, _ENV_KEYS.get, complete=True)
    return settings


def _check(settings: dict[str, str], named: Callable[[str], str | None], complete: bool) -> None:
    """Refuse settings librdkafka would refuse with a traceback, or that would quietly
    mean something else (SASL variables without a SASL protocol, a protocol without its
    credentials). `named` says what the user calls a setting (its variable)."""

    def name(key: str) -> str:
        return named(key) or key

    protocol = settings.get("security.protocol", "PLAINTEXT").upper()
    if complete:
        missing = [key for key in _needed(protocol, settings) if key not in settings]
        if missing:
            given = ", ".join(name(key) for key in settings)
            raise BadInput(
                f"{given} set, but not {', '.join(name(key) for key in missing)}: set them "
                "all, or none (then ECOM_KAFKA_CREDENTIALS or the local cluster's are used)"
            )
        unused = [key for key in settings if key.startswith("sasl.") and "SASL" not in protocol]
        if unused:
            raise BadInput(
                f"{', '.join(name(key) for key in unused)} set, but "
                f"{name('security.protocol')}={protocol} does not use SASL "
                "(SASL_SSL or SASL_PLAINTEXT does)"
            )
    if protocol not in PROTOCOLS:
        raise BadInput(
            f"{name('security.protocol')} is {settings['security.protocol']!r}; "
            f"one of {', '.join(PROTOCOLS)}"
        )
    mechanism = settings.get("sasl.mechanisms")
    if mechanism is not None and mechanism not in MECHANISMS:  # librdkafka minds the case
        known = ", ".join(MECHANISMS)
        raise BadInput(f"{name('sasl.mechanisms')} is {mechanism!r}; one of {known}")
    ca = settings.get("ssl.ca.location")
    if ca is not None and "SSL" in protocol and (problem := _ca_problem(ca)):
        raise BadInput(f"{name('ssl.ca.location')} {ca}: {problem}")


def _needed(protocol: str, given: dict[str, str]) -> list[str]:
    """The settings a protocol (or SASL settings given) cannot do without; a CA is
    optional (the system's)."""
    needed = ["security.protocol"]
    if "SASL" in protocol or any(key.startswith("sasl.") for key in given):
        needed += ["sasl.mechanisms", "sasl.username", "sasl.password"]
    return needed


@lru_cache(maxsize=8)
def _ca_problem(path: str) -> str | None:
    """Return why a CA file (or folder of them) cannot be used (librdkafka would fail to
    build the client); "probe" asks librdkafka to find the system's."""
    if path == "probe":
        return None
    try:
        if Path(path).is_dir():
            ssl.create_default_context(capath=path)
        else:
            ssl.create_default_context(cafile=path)
    except FileNotFoundError:
        return "no such file"
    except OSError as error:  # ssl.SSLError is one: not PEM certificates
        return f"cannot be read as PEM CA certificates ({error.strerror or error})"
    return None


def _local_cluster_brokers(root: Path) -> set[str]:
    try:
        state = json.loads((root / "cluster.json").read_text())
    except (OSError, ValueError):
        return set()
    base, count = int(state["port_base"]), int(state["brokers"])
    return {f"127.0.0.1:{base + i}" for i in range(count)} | {
        f"localhost:{base + i}" for i in range(count)
    }


def principal(bootstrap: str) -> str:
    """Say who a client of `bootstrap` is to the cluster, for messages."""
    user = security_for(bootstrap).settings.get("sasl.username")
    return f"principal User:{user}" if user else "this client's principal"


def security_for(bootstrap: str, service: str | None = None) -> ClientSecurity:
    """Return the security settings a client of `bootstrap` uses (see the module doc)."""
    if settings := _from_environment():
        return ClientSecurity(settings)
    if path := os.environ.get("ECOM_KAFKA_CREDENTIALS"):
        try:
            settings = read_properties(Path(path))
        except OSError as error:
            why = error.strerror
            raise BadInput(f"cannot read ECOM_KAFKA_CREDENTIALS {path}: {why}") from error
        _check(settings, lambda key: f"{key} in ECOM_KAFKA_CREDENTIALS {path}", complete=False)
        return ClientSecurity(settings)
    root = get_settings().cluster_path
    servers = {s.strip() for s in bootstrap.split(",") if s.strip()}
    local = credentials_file(root, service or current_service())
    if servers and servers <= _local_cluster_brokers(root) and local.is_file():
        return ClientSecurity(read_properties(local))
    return ClientSecurity({})
