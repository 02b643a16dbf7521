"""The live page of the shop (`/` on the query API) and the numbers behind it (`/live`).

The view gives orders per status, stock per product and the projections' lag; a Watch
of the cluster gives every group's lag, the dead letters, the newest records of every
topic, and the time from OrderCreated to an order's final event. A sampler reads the
view once a second and keeps ten minutes of order counts, so a page opened late still
sees how the shop got where it is, and any number of open pages cost the store nothing
more.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import asdict
from pathlib import Path
from typing import Any

from consumers.queries import QueryView
from ecom.kafka.watch import Journey, Watch, percentile
from ecom.topology import Topology
from schemas.rules.order import FINAL_EVENT_TYPES

PAGE = Path(__file__).with_name("live.html")
HISTORY = 600  # samples kept (one a second)
PRODUCTS_SHOWN = 50


def order_watch(topology: Topology, bootstrap: str) -> Watch:
    """A watch of every event and dead-letter topic and of the services' groups."""
    topics = [t.name for t in topology.watched_topics() if t.spec.kind != "dlq"]
    dead = [t.name for t in topology.watched_topics() if t.spec.kind == "dlq"]
    groups = topology.watched_groups()
    journey = Journey(topology.topic("orders").name, "OrderCreated", FINAL_EVENT_TYPES)
    return Watch(bootstrap, topics, dead, groups, journey, topology.watch_group())


class Live:
    """What the live page shows, refreshed once a second from a background thread."""

    def __init__(self, view: QueryView, watch: Watch | None, interval: float = 1.0) -> None:
        self.view = view
        self.watch = watch
        self.interval = interval
        self.history: deque[list[float]] = deque(maxlen=HISTORY)
        self._shop: dict[str, Any] = {}
        self._error: str | None = None
        self._lock = threading.Lock()  # the sampler writes what the event loop reads
        self._stop = threading.Event()
        self._sample()  # the first sample is taken before anyone can ask
        self._thread = threading.Thread(target=self._run, name="live", daemon=True)

    def start(self) -> Live:
        if self.watch is not None:
            self.watch.start()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        if self.watch is not None:
            self.watch.stop()

    def snapshot(self) -> dict[str, Any]:
        """Return everything the page shows, as JSON-ready data."""
        with self._lock:
            answer = {**self._shop, "history": list(self.history), "store_error": self._error}
        answer["kafka"] = self._kafka()
        return answer

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        try:
            shop = self.view.shop(PRODUCTS_SHOWN)
        except Exception as error:  # noqa: BLE001 - the page shows it; the next sample retries
            with self._lock:
                self._error = str(error).splitlines()[0][:300]
            return
        orders = shop["orders"]
        outcome = [orders.get(status, 0) for status in ("confirmed", "cancelled", "expired")]
        with self._lock:
            self.history.append([round(time.time(), 1), sum(orders.values()), *outcome])
            self._shop, self._error = shop, None

    def _kafka(self) -> dict[str, Any]:
        if self.watch is None:
            return {"watched": False, "error": None}
        seen = self.watch.view()
        return {
            "watched": True,
            "tailing": seen.tailing,
            "error": seen.error,
            "updated": seen.updated,
            "groups": [
                {"group": group, "topic": topic, "lag": lag}
                for (group, topic), lag in sorted(seen.lag.items())
            ],
            "dead_letters": seen.dead_letters,
            "latest": {
                topic: [asdict(seen) for seen in reversed(records)]
                for topic, records in seen.latest.items()
            },
            "orders_per_s": {"created": seen.started_per_s, "finished": seen.finished_per_s},
            "latency_ms": {
                "p50": percentile(seen.latencies_ms, 0.50),
                "p99": percentile(seen.latencies_ms, 0.99),
                "orders": len(seen.latencies_ms),
            },
        }
