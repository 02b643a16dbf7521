"""A local Apache Kafka cluster: KRaft nodes run as background JVMs on loopback.

Layout of the cluster folder (default `.kafka/` in the checkout):

    lib/                 Kafka's jars, fetched once by Maven
    cluster.json         node count, cluster id, port base, secure or not
    node-N/              server.properties, data/, logs/server.log, stdout.log, pid
    tls/                 the private CA (ca.pem, ca-key.pem) and each node's key + chain
    credentials/         each service's client settings and SCRAM password (mode 0600)

A secure cluster (the default) authenticates every client with SCRAM-SHA-512 over TLS
and authorizes it by ACL; `--insecure` makes today's plaintext cluster instead.

Processes are found again by the pid file, and only trusted when that pid's command
line names the node's own server.properties, so we never signal a stranger.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ecom.cluster import config
from ecom.cluster.tls import make_ca, make_node_certificate
from ecom.cluster.tools import ensure_jars, find_java, java_argfile
from ecom.errors import BadInput, ClusterError, PortInUse
from ecom.kafka import Admin, registered_brokers
from ecom.kafka.security import (
    BROKER_USER,
    MECHANISM,
    SERVICES,
    ClientSecurity,
    credentials_dir,
    credentials_file,
    read_properties,
    write_private,
)
from ecom.process import tethered
from ecom.settings import KAFKA_HEAP, KAFKA_JVM_OPTS, Settings

Report = Callable[[str], None]
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0
LAST_NODE_GRACE_S = 3.0
LOG_TAIL_LINES = 15


def _quiet(_: str) -> None:
    """Report nothing."""


@dataclass(frozen=True)
class Node:
    """One KRaft node (broker + controller) of the local cluster."""

    address: config.NodeAddress
    folder: Path

    @property
    def node_id(self) -> int:
        return self.address.node_id

    @property
    def properties(self) -> Path:
        return self.folder / "server.properties"

    @property
    def data_dir(self) -> Path:
        return self.folder / "data"

    @property
    def logs_dir(self) -> Path:
        return self.folder / "logs"

    @property
    def stdout_log(self) -> Path:
        return self.folder / "stdout.log"

    @property
    def pid_file(self) -> Path:
        return self.folder / "pid"

    def pid(self) -> int | None:
        """Return the pid of this node's JVM if it is running."""
        try:
            pid = int(self.pid_file.read_text())
        except (OSError, ValueError):
            return None
        return pid if _is_our_process(pid, str(self.properties)) else None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """Return the last lines of the node's logs, for error reports."""
        parts = []
        for path in (self.logs_dir / "server.log", self.stdout_log):
            if path.is_file():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {path} ---\n" + "\n".join(text))
        return "\n".join(parts) or "(no log written)"


@dataclass(frozen=True)
class NodeStatus:
    """What `ecom cluster status` shows for one node."""

    node_id: int
    pid: int | None
    broker_port: int
    controller_port: int
    registered: bool


class LocalCluster:
    """Start, stop and inspect the local KRaft cluster."""

    def __init__(self, root: Path, port_base: int, heap: str = KAFKA_HEAP,
                 jvm_opts: str = KAFKA_JVM_OPTS) -> None:  # fmt: skip
        self.root = root
        self.port_base = port_base
        self.heap = heap
        self.jvm_opts = jvm_opts

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalCluster:
        return cls(settings.cluster_path, settings.cluster_port_base, settings.kafka_heap,
                   settings.kafka_jvm_opts)  # fmt: skip

    # -- state ---------------------------------------------------------------------

    @property
    def lib_dir(self) -> Path:
        return self.root / "lib"

    @property
    def state_file(self) -> Path:
        return self.root / "cluster.json"

    def _state(self) -> dict[str, object] | None:
        try:
            state: dict[str, object] = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return None
        return state

    def is_secure(self) -> bool:
        """Tell whether the cluster was made secure (TLS, SCRAM, ACLs)."""
        state = self._state()
        return bool(state and state.get("secure"))

    @property
    def tls_dir(self) -> Path:
        return self.root / "tls"

    def broker_count(self) -> int | None:
        """Return the node count the cluster was created with, if it exists."""
        state = self._state()
        return int(str(state["brokers"])) if state else None

    def nodes(self) -> list[Node]:
        """Return the nodes of the existing cluster (none if it was never created)."""
        state = self._state()
        if state is None:
            return []
        base = int(str(state["port_base"]))
        count = int(str(state["brokers"]))
        return [
            Node(config.NodeAddress.for_node(i, base), self.root / f"node-{i}")
            for i in range(1, count + 1)
        ]

    def node(self, node_id: int) -> Node:
        """Return one node by its Kafka node.id."""
        for node in self.nodes():
            if node.node_id == node_id:
                return node
        known = ", ".join(str(n.node_id) for n in self.nodes()) or "none: run `ecom cluster up`"
        raise BadInput(f"no node {node_id} in the local cluster (nodes: {known})")

    def is_running(self) -> bool:
        """Tell whether any node of the cluster is alive."""
        return any(node.pid() for node in self.nodes())

    def bootstrap_servers(self) -> str:
        """Return the bootstrap servers of the cluster's brokers."""
        return ",".join(f"127.0.0.1:{n.address.broker_port}" for n in self.nodes())

    # -- commands ------------------------------------------------------------------

    def up(
        self, brokers: int | None = None, report: Report = _quiet, insecure: bool = False
    ) -> None:
        """Create the cluster if needed and start every node that is not running."""
        existing = self.broker_count()
        if existing and brokers and brokers != existing:
            raise BadInput(
                f"the local cluster in {self.root} has {existing} nodes; "
                f"run `ecom cluster down --wipe` before asking for {brokers}"
            )
        if existing and insecure == self.is_secure():
            kind = "secure" if self.is_secure() else "insecure"
            raise BadInput(
                f"the local cluster in {self.root} is {kind}; run `ecom cluster down --wipe` "
                f"before asking for {'an insecure' if insecure else 'a secure'} one"
            )
        if brokers not in (None, 1, 3):
            raise BadInput(f"--brokers must be 1 or 3, not {brokers}")
        if existing is None:
            self._create(brokers or 3, secure=not insecure)
        stopped = [node for node in self.nodes() if node.pid() is None]
        if not stopped:
            report(f"cluster already running: {self.bootstrap_servers()}")
            self._add_missing_users(report)
            self._finalize_release(report)
            return
        java = find_java()
        for node in stopped:
            _check_port_free(node.address.broker_port, f"node {node.node_id}'s broker")
            _check_port_free(node.address.controller_port, f"node {node.node_id}'s controller")
        if not self.lib_dir.is_dir() or not any(self.lib_dir.glob("kafka_*.jar")):
            report(f"fetching Kafka {config.kafka_version()} jars with Maven ...")
        self.fetch_jars()
        started = time.monotonic()
        self._prepare(stopped, java)
        try:
            for node in stopped:
                self._launch(node, java)
            self._wait_registered(self.nodes(), started)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the nodes this start launched go too
            _stop([(node, pid) for node in stopped if (pid := node.pid())], LAST_NODE_GRACE_S,
                  report)  # fmt: skip
            raise
        self._add_missing_users(report)
        self._finalize_release(report)
        took = time.monotonic() - started
        report(f"cluster up in {took:.1f}s: {self.bootstrap_servers()}")

    def fetch_jars(self) -> None:
        """Download Kafka's jars if they are not there yet."""
        self.root.mkdir(parents=True, exist_ok=True)
        ensure_jars(self.lib_dir, self.root / "mvn.log")

    def run_tool(self, main_class: str, *args: str, timeout: float = 900,
                 measuring: bool = False) -> str:  # fmt: skip
        """Run one of Kafka's Java tools (kafka-tools jar) and return its output. A tool
        that measures speed runs with the JVM's defaults; a short command starts with the
        JIT's first tier and the serial GC (2.3 s instead of 3.1 here, half the CPU)."""
        self.fetch_jars()
        quick = [] if measuring else ["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"]
        command = [
            find_java(), "-Xmx1g", *quick, f"-Dlog4j2.configurationFile={self._quiet_log4j()}",
            "-cp", f"{self.lib_dir}/*", main_class, *args,
        ]  # fmt: skip
        result = subprocess.run(
            tethered(command), capture_output=True, text=True, timeout=timeout, check=False
        )
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
            raise ClusterError(
                f"{main_class} failed (exit {result.returncode}): {' | '.join(tail)}"
            )
        return result.stdout

    def _quiet_log4j(self) -> str:
        path = self.root / "tools-log4j2.properties"
        path.write_text(
            "status = error\nappender.err.type = Console\nappender.err.name = err\n"
            "appender.err.target = SYSTEM_ERR\nappender.err.layout.type = PatternLayout\n"
            "appender.err.layout.pattern = %p %m%n\nrootLogger.level = WARN\n"
            "rootLogger.appenderRef.err.ref = err\n"
        )
        return str(path)

    def down(self, wipe: bool = False, report: Report = _quiet) -> None:
        """Stop every node; optionally delete the cluster's data."""
        running = [(node, pid) for node in self.nodes() if (pid := node.pid())]
        # With several voters, the node that stops last can never finish a controlled
        # shutdown: no controller quorum is left to confirm it. So the others stop
        # gracefully first, and the last one gets a short grace, then SIGKILL. Its data
        # is on disk; the next start recovers its logs.
        first, last = running[:-1], running[-1:]
        if len(self.nodes()) == 1:
            first, last = running, []
        _stop(first, STOP_TIMEOUT_S, report)
        _stop(last, LAST_NODE_GRACE_S, _quiet)
        report(f"stopped {len(running)} node(s)")
        if wipe:
            for node in self.nodes():
                shutil.rmtree(node.folder, ignore_errors=True)
            shutil.rmtree(self.tls_dir, ignore_errors=True)
            shutil.rmtree(credentials_dir(self.root), ignore_errors=True)
            self.state_file.unlink(missing_ok=True)
            report(f"deleted the cluster's data in {self.root} (jars kept)")

    def kill(self, node_id: int) -> int:
        """SIGKILL one node, as a crash would; return its pid."""
        node = self.node(node_id)
        pid = node.pid()
        if pid is None:
            raise BadInput(f"node {node_id} is not running")
        os.kill(pid, signal.SIGKILL)
        _wait_exit(node, pid, 10)
        return pid

    def start(self, node_id: int, report: Report = _quiet) -> None:
        """Start one stopped node and wait until it is registered again."""
        node = self.node(node_id)
        if node.pid():
            report(f"node {node_id} is already running")
            return
        java = find_java()
        _check_port_free(node.address.broker_port, f"node {node_id}'s broker")
        _check_port_free(node.address.controller_port, f"node {node_id}'s controller")
        started = time.monotonic()
        self._prepare([node], java)
        self._launch(node, java)
        self._wait_registered([node], started)
        report(f"node {node_id} up in {time.monotonic() - started:.1f}s")

    def status(self) -> list[NodeStatus]:
        """Return each node's pid, ports and whether the cluster sees it."""
        nodes = self.nodes()
        alive = {node.node_id: node.pid() for node in nodes}
        registered = registered_brokers(self.bootstrap_servers()) if any(alive.values()) else {}
        return [
            NodeStatus(
                node.node_id,
                alive[node.node_id],
                node.address.broker_port,
                node.address.controller_port,
                node.node_id in registered,
            )
            for node in nodes
        ]

    # -- steps ---------------------------------------------------------------------

    def credentials(self, service: str) -> ClientSecurity:
        """Return one service's client settings on the secure cluster."""
        if not self.is_secure():
            where = "no local cluster" if self.broker_count() is None else "the local cluster"
            raise BadInput(f"{where} in {self.root} has no credentials: it is not a secure one")
        if service not in SERVICES:
            raise BadInput(f"unknown service {service!r}; one of {', '.join(SERVICES)}")
        return ClientSecurity(read_properties(credentials_file(self.root, service)))

    def _create(self, brokers: int, secure: bool) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(credentials_dir(self.root), ignore_errors=True)
        if secure:
            self._make_secrets(brokers)
        state = {
            "brokers": brokers,
            "cluster_id": _new_cluster_id(),
            "port_base": self.port_base,
            "secure": secure,
            "release": _release(),
        }
        self.state_file.write_text(json.dumps(state, indent=2) + "\n")

    def _make_secrets(self, brokers: int) -> None:
        """The CA, each node's certificate, and a random password per principal."""
        make_ca(self.tls_dir)
        for node_id in range(1, brokers + 1):
            hosts = ["localhost", "127.0.0.1", f"kafka-{node_id}"]
            name = config.node_common_name(node_id)
            make_node_certificate(self.tls_dir, name, hosts, self.tls_dir / f"node-{node_id}.pem")
        for user in (*SERVICES, BROKER_USER):
            self._write_credentials(user, secrets.token_urlsafe(24))

    def _write_credentials(self, user: str, password: str) -> None:
        settings = {
            "security.protocol": "SASL_SSL",
            "sasl.mechanisms": MECHANISM,
            "sasl.username": user,
            "sasl.password": password,
            "ssl.ca.location": str((self.tls_dir / "ca.pem").resolve()),
        }
        header = f"# client settings of {user} on the local cluster (librdkafka names)\n"
        write_private(credentials_file(self.root, user), header + _render(settings))

    def _add_missing_users(self, report: Report) -> None:
        """Give a secure cluster made by an older version the services it lacks."""
        missing = [s for s in SERVICES if not credentials_file(self.root, s).exists()]
        if not self.is_secure() or not missing:
            return
        admin = Admin(self.bootstrap_servers(), overrides=self.credentials("admin").librdkafka())
        for user in missing:
            password = secrets.token_urlsafe(24)
            admin.add_scram_user(user, password)  # the file only once the cluster knows it
            self._write_credentials(user, password)
            report(f"added the principal {user} (credentials/{user}.properties)")

    def _finalize_release(self, report: Report) -> None:
        """Raise the features of a cluster formatted by an older Kafka to this one's
        release, so share groups (share.version) work on it too."""
        release = _release()
        state = self._state() or {}
        if state.get("release") == release:
            return
        options: list[str] = []
        config_file = self.root / "credentials" / "admin-java.properties"
        if self.is_secure():
            self.credentials("admin").write_java(config_file)
            options = ["--command-config", str(config_file)]
        try:
            self.run_tool(
                "org.apache.kafka.tools.FeatureCommand",
                "--bootstrap-server", self.bootstrap_servers(), *options,
                "upgrade", "--release-version", release,
            )  # fmt: skip
        finally:
            config_file.unlink(missing_ok=True)
        report(f"upgraded the cluster's features to Kafka {release}")
        self.state_file.write_text(json.dumps({**state, "release": release}, indent=2) + "\n")

    def _password(self, user: str) -> str:
        return read_properties(credentials_file(self.root, user))["sasl.password"]

    def _secure_settings(self, node: Node) -> dict[str, str]:
        settings = config.secure_settings(
            str((self.tls_dir / f"node-{node.node_id}.pem").resolve()),
            str((self.tls_dir / "ca.pem").resolve()),
            self._password(BROKER_USER),
            config.super_users(len(self.nodes())),
        )
        return settings | config.secure_listeners(node.address)

    def _cluster_id(self) -> str:
        state = self._state()
        assert state is not None, "cluster created before use"
        return str(state["cluster_id"])

    def _prepare(self, nodes: list[Node], java: str) -> None:
        """Write each node's configuration and format new storage, all nodes at once."""
        everyone = self.nodes()
        voters = config.quorum_voters([n.address for n in everyone])
        formats = []
        for node in nodes:
            settings = config.cluster_settings(len(everyone))
            settings |= config.node_settings(node.address, voters, node.data_dir)
            if self.is_secure():
                settings |= self._secure_settings(node)
            node.logs_dir.mkdir(parents=True, exist_ok=True)
            write_private(node.properties, config.render_properties(settings))
            if not (node.data_dir / "meta.properties").is_file():
                formats.append((node, self._format(node, java)))
        for node, process in formats:
            output, _ = process.communicate()
            (node.folder / "format.args").unlink(missing_ok=True)
            if process.returncode != 0:
                last = (output.strip().splitlines() or ["no output"])[-1]
                raise ClusterError(f"formatting node {node.node_id}'s storage failed: {last}")

    def _format(self, node: Node, java: str) -> subprocess.Popen[str]:
        arguments = [
            *self._tool_options(node), "kafka.tools.StorageTool", "format",
            "--cluster-id", self._cluster_id(), "--config", str(node.properties),
            "--ignore-formatted",
        ]  # fmt: skip
        if self.is_secure():
            for user in (*SERVICES, BROKER_USER):
                scram = f"{MECHANISM}=[name={user},password={self._password(user)}]"
                arguments += ["--add-scram", scram]
        # The passwords go in a private argument file (java @file), never on a command line.
        argfile = node.folder / "format.args"
        write_private(argfile, java_argfile(arguments))
        return subprocess.Popen(
            [java, f"@{argfile}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

    def _tool_options(self, node: Node) -> list[str]:
        return [
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={config.LOG4J_PATH}",
            f"-Dkafka.logs.dir={node.logs_dir}",
            "-cp",
            f"{self.lib_dir}/*",
        ]

    def _java_options(self, node: Node) -> list[str]:
        gc = ["-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:+ExitOnOutOfMemoryError"]
        options = [*shlex.split(self.heap), *gc, *shlex.split(self.jvm_opts)]
        return [*options, *self._tool_options(node)]

    def _launch(self, node: Node, java: str) -> None:
        """Start the node's JVM in its own session, detached from this process."""
        argv = [java, *self._java_options(node), "kafka.Kafka", str(node.properties)]
        write = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        file_actions = [
            (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, str(node.stdout_log), write, 0o644),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ]
        pid = os.posix_spawn(java, argv, dict(os.environ), file_actions=file_actions, setsid=True)
        node.pid_file.write_text(f"{pid}\n")

    def _wait_registered(self, nodes: list[Node], started: float) -> None:
        """Wait until every node answers on its own listener and lists itself as a broker;
        fail fast if one dies. (The cluster's list alone still names a node killed a
        moment ago, until its session times out. A broker enables request processing only
        once it is registered and unfenced: a restarted one first waits out that session.)"""
        waiting = list(nodes)
        while True:
            for node in nodes:  # one that answered may die while another starts
                if node.pid() is None:
                    raise ClusterError(
                        f"node {node.node_id} exited during start-up; its log ends with:\n"
                        + node.log_tail()
                    )
            waiting = [node for node in waiting if not _serves(node)]
            if not waiting:
                return
            if time.monotonic() - started > START_TIMEOUT_S:
                missing = [node.node_id for node in waiting]
                tails = "\n".join(node.log_tail() for node in waiting)
                raise ClusterError(
                    f"nodes {missing} did not register and answer within "
                    f"{START_TIMEOUT_S:.0f}s; their logs end with:\n{tails}"
                )
            time.sleep(0.25)


def _serves(node: Node) -> bool:
    """Tell whether the node itself answers (asked alone, it is the one that answers)."""
    return node.node_id in registered_brokers(f"127.0.0.1:{node.address.broker_port}")


def _release() -> str:
    """The Kafka release of the pinned jars, as FeatureCommand names it (4.4)."""
    return ".".join(config.kafka_version().split(".")[:2])


def _render(settings: dict[str, str]) -> str:
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def _new_cluster_id() -> str:
    """Return a random Kafka cluster id (base64url of a UUID, as StorageTool makes)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _is_our_process(pid: int, marker: str) -> bool:
    """Tell whether pid is a live process whose command line names marker."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    stat = Path(f"/proc/{pid}/stat")
    try:
        if stat.read_text().rpartition(")")[2].split()[0] in ("Z", "X"):
            return False
    except (OSError, IndexError):
        pass
    command = _command_line(pid)
    # An empty command line is a process caught mid-exec: trust the pid file then.
    return not command or marker in command


def _command_line(pid: int) -> str:
    """Return a process's command line ('' if it cannot be read)."""
    proc = Path(f"/proc/{pid}/cmdline")
    if Path("/proc/self").exists():
        try:
            return proc.read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            return ""
    result = subprocess.run(
        ["ps", "-p", str(pid), "-o", "command="], capture_output=True, text=True, check=False
    )
    return result.stdout.strip()


def _stop(nodes: list[tuple[Node, int]], grace: float, report: Report) -> None:
    """SIGTERM the nodes together, then SIGKILL any still running after grace seconds."""
    for _, pid in nodes:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for node, pid in nodes:
        if not _wait_exit(node, pid, max(0.0, deadline - time.monotonic())):
            report(f"node {node.node_id} did not stop within {grace:.0f}s; killed it")
            os.kill(pid, signal.SIGKILL)
            _wait_exit(node, pid, 10)
        node.pid_file.unlink(missing_ok=True)


def _wait_exit(node: Node, pid: int, timeout: float) -> bool:
    """Wait for a node's process to exit; return whether it did."""
    deadline = time.monotonic() + timeout
    while True:
        _reap(pid)
        if node.pid() is None:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def _reap(pid: int) -> None:
    """Collect the exit status if pid is our own child, so it is no zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _check_port_free(port: int, what: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as error:
            raise PortInUse(
                f"port {port} ({what} listener) is already in use; free it or "
                f"start the cluster on other ports with ECOM_CLUSTER_PORT_BASE"
            ) from error


def find_bootstrap(settings: Settings, flag: str | None = None) -> str:
    """Find the cluster: --bootstrap, KAFKA_BOOTSTRAP_SERVERS, local cluster, localhost."""
    if flag:
        return flag
    if settings.bootstrap_servers:
        return settings.bootstrap_servers
    local = LocalCluster.from_settings(settings)
    if local.is_running():
        return local.bootstrap_servers()
    # Docker Compose's cluster at the default base; at another base, the stopped local
    # cluster's own port, never some other cluster on 9092.
    return f"localhost:{settings.cluster_port_base}"
