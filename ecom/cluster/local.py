"""A local Apache Kafka cluster: KRaft nodes run as background JVMs on loopback.

Layout of the cluster folder (default `.kafka/` in the checkout):

    lib/                 Kafka's jars, fetched once by Maven
    cluster.json         node count, cluster id, port base
    node-N/              server.properties, data/, logs/server.log, stdout.log, pid

Processes are found again by the pid file, and only trusted when that pid's command
line names the node's own server.properties, so we never signal a stranger.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
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
from ecom.cluster.tools import ensure_jars, find_java
from ecom.errors import BadInput, ClusterError, PortInUse
from ecom.kafka import registered_brokers
from ecom.settings import Settings

Report = Callable[[str], None]
LAST_RESORT_BOOTSTRAP = "localhost:9092"
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

    def __init__(self, root: Path, port_base: int, heap: str = "-Xms256m -Xmx1g") -> None:
        self.root = root
        self.port_base = port_base
        self.heap = heap

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalCluster:
        return cls(settings.cluster_path, settings.cluster_port_base, settings.kafka_heap)

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

    def up(self, brokers: int | None = None, report: Report = _quiet) -> None:
        """Create the cluster if needed and start every node that is not running."""
        existing = self.broker_count()
        if existing and brokers and brokers != existing:
            raise BadInput(
                f"the local cluster in {self.root} has {existing} nodes; "
                f"run `ecom cluster down --wipe` before asking for {brokers}"
            )
        if brokers not in (None, 1, 3):
            raise BadInput(f"--brokers must be 1 or 3, not {brokers}")
        if existing is None:
            self._create(brokers or 3)
        stopped = [node for node in self.nodes() if node.pid() is None]
        if not stopped:
            report(f"cluster already running: {self.bootstrap_servers()}")
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
        for node in stopped:
            self._launch(node, java)
        self._wait_registered(self.nodes(), started)
        took = time.monotonic() - started
        report(f"cluster up in {took:.1f}s: {self.bootstrap_servers()}")

    def fetch_jars(self) -> None:
        """Download Kafka's jars if they are not there yet."""
        self.root.mkdir(parents=True, exist_ok=True)
        ensure_jars(self.lib_dir, self.root / "mvn.log")

    def run_tool(self, main_class: str, *args: str, timeout: float = 900) -> str:
        """Run one of Kafka's Java tools (kafka-tools jar) and return its output."""
        self.fetch_jars()
        command = [
            find_java(), "-Xmx1g", f"-Dlog4j2.configurationFile={self._quiet_log4j()}",
            "-cp", f"{self.lib_dir}/*", main_class, *args,
        ]  # fmt: skip
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=False
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

    def _create(self, brokers: int) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        state = {"brokers": brokers, "cluster_id": _new_cluster_id(), "port_base": self.port_base}
        self.state_file.write_text(json.dumps(state, indent=2) + "\n")

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
            node.logs_dir.mkdir(parents=True, exist_ok=True)
            node.properties.write_text(config.render_properties(settings))
            if not (node.data_dir / "meta.properties").is_file():
                formats.append((node, self._format(node, java)))
        for node, process in formats:
            output, _ = process.communicate()
            if process.returncode != 0:
                last = (output.strip().splitlines() or ["no output"])[-1]
                raise ClusterError(f"formatting node {node.node_id}'s storage failed: {last}")

    def _format(self, node: Node, java: str) -> subprocess.Popen[str]:
        command = [
            java, *self._tool_options(node), "kafka.tools.StorageTool", "format",
            "--cluster-id", self._cluster_id(), "--config", str(node.properties),
            "--ignore-formatted",
        ]  # fmt: skip
        return subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
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
        return [*self.heap.split(), *gc, *self._tool_options(node)]

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
        """Wait until the cluster lists every node as a broker; fail fast if one dies."""
        wanted = {node.node_id for node in nodes}
        bootstrap = self.bootstrap_servers()
        while True:
            for node in nodes:
                if node.pid() is None:
                    raise ClusterError(
                        f"node {node.node_id} exited during start-up; its log ends with:\n"
                        + node.log_tail()
                    )
            if wanted <= registered_brokers(bootstrap):
                return
            if time.monotonic() - started > START_TIMEOUT_S:
                missing = sorted(wanted - registered_brokers(bootstrap))
                tails = "\n".join(self.node(i).log_tail() for i in missing)
                raise ClusterError(
                    f"nodes {missing} did not register within {START_TIMEOUT_S:.0f}s; "
                    f"their logs end with:\n{tails}"
                )
            time.sleep(0.25)


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
    return LAST_RESORT_BOOTSTRAP
