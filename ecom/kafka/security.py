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
from dataclasses import dataclass
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
    return {key: os.environ[env] for key, env in _ENV_KEYS.items() if os.environ.get(env)}


def _local_cluster_brokers(root: Path) -> set[str]:
    try:
        state = json.loads((root / "cluster.json").read_text())
    except (OSError, ValueError):
        return set()
    base, count = int(state["port_base"]), int(state["brokers"])
    return {f"127.0.0.1:{base + i}" for i in range(count)} | {
        f"localhost:{base + i}" for i in range(count)
    }


def security_for(bootstrap: str, service: str | None = None) -> ClientSecurity:
    """Return the security settings a client of `bootstrap` uses (see the module doc)."""
    if settings := _from_environment():
        return ClientSecurity(settings)
    if path := os.environ.get("ECOM_KAFKA_CREDENTIALS"):
        try:
            return ClientSecurity(read_properties(Path(path)))
        except OSError as error:
            why = error.strerror
            raise BadInput(f"cannot read ECOM_KAFKA_CREDENTIALS {path}: {why}") from error
    root = get_settings().cluster_path
    servers = {s.strip() for s in bootstrap.split(",") if s.strip()}
    local = credentials_file(root, service or current_service())
    if servers and servers <= _local_cluster_brokers(root) and local.is_file():
        return ClientSecurity(read_properties(local))
    return ClientSecurity({})
