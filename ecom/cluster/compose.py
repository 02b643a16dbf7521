"""The secure setup of docker-compose.yml, made by its one-shot `secrets` service
(`ecom cluster compose-secrets /secrets`) into a volume every container mounts.

It writes what `ecom cluster up` makes for the local cluster, with container names:
the CA and each node's certificate, each service's credentials, and per node a
server.properties built from the same settings (ecom.cluster.config) plus a start
script that formats the storage with the SCRAM users (passwords in a private argument
file, never on a command line) and starts the node.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from ecom.cluster import config
from ecom.cluster.tls import make_ca, make_node_certificate
from ecom.cluster.tools import java_argfile
from ecom.kafka.security import (
    BROKER_USER,
    MECHANISM,
    SERVICES,
    ClientSecurity,
    credentials_file,
    read_properties,
    write_private,
)

NODES = 3
MOUNT = Path("/secrets")
CLUSTER_ID = "ZWNvbXN0cmVhbS1rcmFmdA"
VOTERS = ",".join(f"{i}@kafka-{i}:9093" for i in range(1, NODES + 1))
START = """#!/bin/sh
# Format this node's storage once (SCRAM users included), then run it.
set -e
node="$1"
dir="{mount}/node-$node"
if [ ! -f /var/lib/kafka/data/meta.properties ]; then
  java -cp '/opt/kafka/libs/*' "@$dir/format.args"
fi
exec /opt/kafka/bin/kafka-server-start.sh "$dir/server.properties"
"""


def node_settings(node_id: int, mount: Path = MOUNT) -> dict[str, str]:
    """Every setting of one compose node, without the broker's password."""
    settings = config.cluster_settings(NODES)
    settings |= {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        "controller.quorum.voters": VOTERS,
        "controller.listener.names": "CONTROLLER",
        "listeners": "SASL_SSL://:19092,HOST://:9092,CONTROLLER://:9093",
        "advertised.listeners": (
            f"SASL_SSL://kafka-{node_id}:19092,HOST://localhost:{9091 + node_id}"
        ),
        "log.dirs": "/var/lib/kafka/data",
    }
    return settings | config.secure_settings(
        str(mount / "tls" / f"node-{node_id}.pem"),
        str(mount / "tls" / "ca.pem"),
        "{broker-password}",
        config.super_users(NODES),
        client_listeners=("SASL_SSL", "HOST"),
    )


def write_compose_secrets(out: Path, ca_key_folder: Path, mount: Path = MOUNT) -> None:
    """Make (once) the CA, certificates and passwords, and (each time) the nodes' files.
    The CA's key goes to ca_key_folder: a volume no broker mounts."""
    tls = out / "tls"
    make_ca(tls, ca_key_folder)
    for node_id in range(1, NODES + 1):
        certificate = tls / f"node-{node_id}.pem"
        if not certificate.is_file():
            hosts = [f"kafka-{node_id}", "localhost", "127.0.0.1"]
            name = config.node_common_name(node_id)
            make_node_certificate(tls, name, hosts, certificate, ca_key_folder)
    for user in (*SERVICES, BROKER_USER):
        path = credentials_file(out, user)
        if not path.is_file():
            settings = {
                "security.protocol": "SASL_SSL",
                "sasl.mechanisms": MECHANISM,
                "sasl.username": user,
                "sasl.password": secrets.token_urlsafe(24),
                "ssl.ca.location": str(mount / "tls" / "ca.pem"),
            }
            write_private(path, "".join(f"{k}={v}\n" for k, v in settings.items()))
    passwords = {u: read_properties(credentials_file(out, u))["sasl.password"] for u in
                 (*SERVICES, BROKER_USER)}  # fmt: skip
    for node_id in range(1, NODES + 1):
        _write_node(out / f"node-{node_id}", node_id, passwords, mount)
    # Kafka's own tools (the brokers' health check) as admin.
    admin = ClientSecurity(read_properties(credentials_file(out, "admin"))).java()
    write_private(out / "client-admin.properties", config.render_properties(admin))
    start = out / "start.sh"
    start.write_text(START.format(mount=mount))
    start.chmod(0o755)


def _write_node(folder: Path, node_id: int, passwords: dict[str, str], mount: Path) -> None:
    settings = {
        key: value.replace("{broker-password}", passwords[BROKER_USER])
        for key, value in node_settings(node_id, mount).items()
    }
    write_private(folder / "server.properties", config.render_properties(settings))
    arguments = [
        "kafka.tools.StorageTool", "format", "--cluster-id", CLUSTER_ID,
        "--config", str(mount / f"node-{node_id}" / "server.properties"), "--ignore-formatted",
    ]  # fmt: skip
    for user, password in passwords.items():
        arguments += ["--add-scram", f"{MECHANISM}=[name={user},password={password}]"]
    write_private(folder / "format.args", java_argfile(arguments))
