"""`ecom bench query`: how fast the read side applies events and answers reads.

1. Apply rate: each big projection (inventory, orders) rebuilds from a heavy stream;
   events/s from its first batch until it has caught up, beside Kafka's
   ConsumerPerformance reading the same topic and message count.
   The clock starts when the first batch arrives, so that batch's work is timed too.
2. Point reads (order, product, stock), p50/p99: in-process and over HTTP on loopback,
   first idle, then while a projection worker (another process) applies a second heavy
   stream.
3. Load: N client processes, each a closed loop of keep-alive GETs over a mix of the
   three reads, against the query API for a fixed time: requests/s, p50/p99, and the
   CPU seconds of the API and of the clients (they share this machine's cores).
"""

from __future__ import annotations

import multiprocessing
import random
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx

from bench.base import CpuMeter, child_pids, consumer_performance, percentile
from consumers.projections import PROJECTIONS
from consumers.queries import QueryView
from consumers.runner import ProjectionRunner
from consumers.store import open_store
from ecom.apikeys import ApiKeys
from ecom.kafka import log_ends, scratch_topology
from ecom.process import Children, Spec
from ecom.progress import progress
from ecom.topology import Topology
from producers.producer import EventProducer
from producers.simulate import Shop, ShopPlan, with_stock_flow
from schemas import Event, OrderCreated

Report = Callable[[str], None]


@dataclass(frozen=True)
class Latency:
    """Percentiles of one kind of read, in milliseconds."""

    p50: float
    p99: float
    count: int


LOAD_GOAL_PER_S = 5_000
LOAD_GOAL_P99_MS = 5.0


@dataclass(frozen=True)
class Load:
    """How hard the load phase pushes: client processes, and for how long."""

    clients: int = 8
    seconds: float = 5.0
    api_workers: int = 1  # processes of the query API (serve query --workers)


def run(topology: Topology, bootstrap: str, orders: int, reads: int, report: Report,
        load: Load | None = None) -> None:  # fmt: skip
    """Run the whole query benchmark on scratch topics and a scratch SQLite view."""
    with (
        scratch_topology(topology, bootstrap, "qbench") as scratch,
        tempfile.TemporaryDirectory() as tmp,
    ):
        store_url = f"sqlite:///{Path(tmp) / 'view.db'}"
        events = _traffic(orders, seed=11)
        report(f"publishing {len(events):,} events ...")
        _publish(scratch, bootstrap, events)
        _apply_rates(scratch, bootstrap, store_url, report)
        order_ids = [e.order_id for e in events if isinstance(e, OrderCreated)]
        product_ids = sorted({e.product_id for e in events if e.event_type == "ProductCreated"})  # type: ignore[attr-defined]
        load = load or Load()
        with _query_server(store_url, load.api_workers) as (server, pids):
            _reads("idle", store_url, server, order_ids, product_ids, reads, report)
            _load(server, pids, order_ids, product_ids, load, report)
            more = _traffic(orders, seed=12)
            _publish(scratch, bootstrap, more)
            with _worker(scratch, bootstrap, store_url) as applied:
                _reads("while applying", store_url, server, order_ids, product_ids, reads, report)
                report(f"  (the worker applied {applied():,} events during these reads)")


def _traffic(orders: int, seed: int) -> list[Event]:
    plan = ShopPlan(users=5000, products=2000, orders=orders, seed=seed)
    return list(with_stock_flow(Shop(plan).events()))


def _publish(topology: Topology, bootstrap: str, events: list[Event]) -> None:
    with (
        EventProducer(topology, bootstrap, "/ecomstream/bench") as producer,
        progress("publishing", len(events)) as advance,
    ):
        for event in events:
            producer.publish(event)
            advance(1)


def _apply_rates(topology: Topology, bootstrap: str, store_url: str, report: Report) -> None:
    for name in ("inventory", "orders", "catalogue", "pricing"):
        projection = PROJECTIONS[name]
        applied, seconds = _apply_until_caught_up(projection.name, topology, bootstrap, store_url)
        if name not in ("inventory", "orders"):
            continue
        ours = applied / seconds if seconds else 0.0
        topic = topology.topic(projection.topics[0]).name
        count = sum(v for (t, _), v in log_ends(bootstrap, [topic]).items())
        kafka = consumer_performance(bootstrap, topic, count, f"{topic}-perf-{time.time_ns()}")
        report(f"{name}: applied {applied:,} events in {seconds:.1f}s = {ours:,.0f} events/s; "
               f"ConsumerPerformance on {projection.topics[0]}: {kafka.per_second:,.0f} records/s; "
               f"ratio {ours / kafka.per_second:.3f}")  # fmt: skip


def _apply_until_caught_up(
    name: str, topology: Topology, bootstrap: str, store_url: str
) -> tuple[int, float]:
    projection = PROJECTIONS[name]
    runner = ProjectionRunner(projection, open_store(store_url), topology, bootstrap)
    ends = {
        k: v
        for k, v in log_ends(bootstrap, [topology.topic(t).name for t in projection.topics]).items()
        if v
    }
    first: list[float] = []

    def on_batch(r: ProjectionRunner) -> None:
        if not first:
            # The clock starts when the first batch arrived: its decode, fold and store
            # time (the runner's phase clocks) is counted, the group join before is not.
            p = r.progress
            first.append(time.perf_counter() - (p.decode_s + p.fold_s + p.store_s))
        if r.has_read(ends):
            r.stop()

    started = time.perf_counter()
    runner.run(on_batch)
    took = time.perf_counter() - (first[0] if first else started)
    return runner.progress.applied, took


def _reads(
    label: str,
    store_url: str,
    server: QueryServer,
    orders: list[str],
    products: list[str],
    count: int,
    report: Report,
) -> None:
    rng = random.Random(3)
    view = QueryView(open_store(store_url))
    kinds: dict[str, tuple[Callable[[str], object], list[str], str]] = {
        "order": (view.order, orders, "/orders/{}"),
        "product": (view.product, products, "/products/{}"),
        "stock": (view.inventory, products, "/inventory/{}"),
    }
    report(f"point reads, {label} (p50 / p99 in ms over {count:,} reads each):")
    client = RawClient(server)  # keep-alive, little overhead
    try:
        for kind, (call, ids, path) in kinds.items():
            local = _measure(partial(_random_read, call, ids, rng), count)
            over_http = partial(_get, client, server, path)
            remote = _measure(partial(_random_read, over_http, ids, rng), count)
            report(
                f"  {kind:<8} in-process {local.p50:6.3f} / {local.p99:6.3f}   "
                f"HTTP {remote.p50:6.3f} / {remote.p99:6.3f}"
            )
    finally:
        client.close()
        view.store.close()


def _load(server: QueryServer, pids: dict[str, int], orders: list[str], products: list[str],
          load: Load, report: Report) -> None:  # fmt: skip
    """Hammer the query API from `load.clients` processes; report rate, latency and CPU,
    all over one window the clients share."""
    paths = [f"/orders/{o}" for o in orders] + [f"/products/{p}" for p in products]
    paths += [f"/inventory/{p}" for p in products]
    # Spawning takes about a second per client on 2 cores: the window opens after that,
    # and the API's CPU is metered over exactly the window.
    begin = time.time() + 2.0 + 1.0 * load.clients
    jobs = [(server, paths, begin, load.seconds, seed) for seed in range(load.clients)]
    meter = CpuMeter()
    with multiprocessing.get_context("spawn").Pool(load.clients) as pool:
        pending = pool.starmap_async(_hammer, jobs)
        time.sleep(max(0.0, begin - time.time()))
        meter.start(pids)
        time.sleep(max(0.0, begin + load.seconds - time.time()))
        meter.stop()
        results = pending.get(timeout=load.seconds + 60)
    latencies = sorted(ms for client in results for ms in client.samples)
    meter.spent["clients"] = sum(client.cpu_s for client in results)
    late = max(client.late_s for client in results)
    rate = len(latencies) / load.seconds
    p99 = percentile(latencies, 0.99)
    reached = rate >= LOAD_GOAL_PER_S and p99 <= LOAD_GOAL_P99_MS
    report(
        f"load over HTTP, {load.clients} clients, {load.api_workers} API processes, "
        f"{load.seconds:g}s: {len(latencies):,} requests = {rate:,.0f} requests/s, "
        f"p50 {percentile(latencies, 0.5):.2f} ms, "
        f"p99 {p99:.2f} ms (goal {LOAD_GOAL_PER_S:,}/s with p99 <= {LOAD_GOAL_P99_MS:g} ms: "
        f"{'reached' if reached else 'NOT reached'})"
    )
    if late > 0.05:
        report(f"  (a client started {late:.2f}s into the window: the rate counts it short)")
    report(f"  {meter.line(load.seconds)}")


@dataclass(frozen=True)
class Client:
    """What one load client measured."""

    samples: list[float]  # ms per request
    cpu_s: float  # over its part of the window
    late_s: float  # how far into the window it started


def _hammer(server: QueryServer, paths: list[str], begin: float, seconds: float,
            seed: int) -> Client:  # fmt: skip
    """One client: GET random paths over one keep-alive connection from `begin` (wall
    clock) until the window closes."""
    rng = random.Random(seed)
    requests = [server.request(path) for path in paths]
    client = RawClient(server)
    samples: list[float] = []
    time.sleep(max(0.0, begin - time.time()))
    late = max(0.0, time.time() - begin)
    cpu = time.process_time()
    end = time.perf_counter() + max(0.0, begin + seconds - time.time())
    try:
        while (now := time.perf_counter()) < end:
            client.get(rng.choice(requests))
            samples.append((time.perf_counter() - now) * 1000)
    finally:
        client.close()
    return Client(samples, time.process_time() - cpu, late)


class RawClient:
    """A keep-alive HTTP/1.1 client that sends prepared requests and reads answers by
    Content-Length, like wrk: http.client parses headers through the email package and
    cost about 0.4 ms of CPU per request, as much as the API it was measuring."""

    def __init__(self, server: QueryServer) -> None:
        host, port = server.base_url.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def get(self, request: bytes) -> bytes:
        """Send one prepared GET; return its body, or raise unless the answer is 200."""
        self.sock.sendall(request)
        while (head_end := self.buffer.find(b"\r\n\r\n")) < 0:
            self._receive()
        head = self.buffer[:head_end].lower()
        start = head.find(b"\r\ncontent-length:")
        if start < 0:
            raise RuntimeError("an answer without Content-Length")
        line_end = head.find(b"\r\n", start + 2)
        length = int(head[start + 17 : line_end if line_end >= 0 else len(head)])
        end = head_end + 4 + length
        while len(self.buffer) < end:
            self._receive()
        body, self.buffer = self.buffer[head_end + 4 : end], self.buffer[end:]
        if not head.startswith(b"http/1.1 200 "):
            raise RuntimeError(f"answered {head.split(b' ', 2)[1].decode()}: {body[:200]!r}")
        return body

    def _receive(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise RuntimeError("the server closed the connection")
        self.buffer += chunk

    def close(self) -> None:
        self.sock.close()


def _random_read(call: Callable[[str], object], ids: list[str], rng: random.Random) -> object:
    return call(rng.choice(ids))


def _get(client: RawClient, server: QueryServer, path: str, entity: str) -> bytes:
    return client.get(server.request(path.format(entity)))


def _measure(call: Callable[[], object], count: int) -> Latency:
    for _ in range(min(200, count)):
        call()  # warm up caches and connections
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return Latency(percentile(samples, 0.5), percentile(samples, 0.99), count)


@dataclass(frozen=True)
class QueryServer:
    """Where the query API listens, and the key it was given for this run."""

    base_url: str
    key: str

    def request(self, path: str) -> bytes:
        """The bytes of a keep-alive GET of path with this run's key."""
        host = self.base_url.removeprefix("http://")
        auth = f"Authorization: Bearer {self.key}"
        return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n\r\n".encode()


@contextmanager
def _query_server(store_url: str, workers: int) -> Iterator[tuple[QueryServer, dict[str, int]]]:
    """Start `ecom serve query` in another process with a key of its own; yield it and
    the pids that answer (with --workers, the supervisor's children)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base_url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp, Children() as children:
        keys_file = Path(tmp) / "api-keys.db"
        api_keys = ApiKeys(keys_file)
        key = api_keys.create("bench", "queries")
        api_keys.close()
        args = ("serve", "query", "--port", str(port), "--no-watch",  # measure the API alone
                "--workers", str(workers))  # fmt: skip
        env = {"ECOM_API_KEYS_FILE": str(keys_file), "ECOM_STORE": store_url}
        server = children.start(Spec("query-api", args, env))
        deadline = time.monotonic() + 30
        while True:
            answering = workers == 1 or len(child_pids(server.pid)) == workers
            try:
                httpx.get(f"{base_url}/health", timeout=1).raise_for_status()
                if answering:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or not server.alive():
                raise RuntimeError("the query server did not start") from None
            time.sleep(0.2)
        pids = {"query API": server.pid} if workers == 1 else {
            f"query API {n}": pid for n, pid in enumerate(child_pids(server.pid), 1)
        }  # fmt: skip
        yield QueryServer(base_url, key), pids


@contextmanager
def _worker(topology: Topology, bootstrap: str, store_url: str) -> Iterator[Callable[[], int]]:
    """Run the projections in another process, as in production; yield a counter of
    what it applied."""
    store = open_store(store_url)
    view = QueryView(store)

    def offsets() -> int:
        return sum(sum(p["offsets"].values()) for p in view.health()["projections"].values())

    before = offsets()
    args = ("projections", "run", "--bootstrap", bootstrap)
    env = {"ECOM_TOPIC_PREFIX": topology.prefix, "ECOM_STORE": store_url}
    try:
        with Children() as children:
            children.start(Spec("projections", args, env))
            deadline = time.monotonic() + 60
            while offsets() == before and time.monotonic() < deadline:
                time.sleep(0.05)  # start measuring once it is applying
            yield lambda: offsets() - before
    finally:
        store.close()
