"""Health of the read side: liveness (the process runs) is not readiness (its answers
are fresh). Runners say how they are (`Pulse`, a row in `ecom_runners` every few
seconds); `readiness` reads those rows and tells why the view is not fit to serve.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable

from consumers.store import Heartbeat, Store
from ecom.errors import StoreError
from ecom.settings import Settings


class Pulse:
    """A runner's heartbeat: its lag, since when it is caught up, since when Kafka is
    silent; written at most every `settings.heartbeat_s`."""

    def __init__(self, store: Store, projection: str, instance: str, settings: Settings) -> None:
        self.store, self.projection, self.instance = store, projection, instance
        self.max_lag, self.every = settings.ready_max_lag, settings.heartbeat_s
        self.lags: dict[tuple[str, int], int] = {}
        self.caught_up_at = time.time()
        self.kafka_down_since: float | None = None
        self._last = 0.0

    def note_lag(self, topic: str, partition: int, lag: int) -> None:
        self.lags[(topic, partition)] = lag

    def tick(self, kafka_answers: Callable[[], bool]) -> None:
        """Write the heartbeat if it is due (Kafka asked once per beat)."""
        now = time.time()
        if now - self._last < self.every:
            return
        previous, self._last = self._last, now
        if kafka_answers():
            self.kafka_down_since = None
        elif self.kafka_down_since is None:
            # Not heard since the last beat: one that comes late came from a loop that
            # waited on Kafka meanwhile (counting from now made /readyz say "ready" then).
            self.kafka_down_since = previous or now
        lag = sum(self.lags.values())
        if lag <= self.max_lag:
            self.caught_up_at = now
        beat = Heartbeat(
            self.projection, self.instance, now, lag, self.caught_up_at, self.kafka_down_since
        )
        self.store.beat(beat)


def readiness(
    store: Store, settings: Settings, names: set[str] | None = None, now: float | None = None
) -> list[str]:
    """Return why the view (or these projections of it) is not ready to serve (nothing:
    it is)."""
    now = time.time() if now is None else now
    try:
        views = [r["projection"] for r in store.fetch("SELECT projection FROM ecom_views")]
        views = [v for v in views if names is None or v in names]
        beats: dict[str, list[Heartbeat]] = defaultdict(list)
        for beat in store.heartbeats():
            beats[beat.projection].append(beat)
    except (StoreError, OSError) as error:
        return [f"the view store cannot be read: {error}"]
    except Exception as error:  # noqa: BLE001 - any driver error means the same: unreadable
        return [f"the view store cannot be read: {type(error).__name__}: {error}"]
    if not views:
        return ["no projection has built a view yet"]
    return [reason for name in sorted(views) for reason in _stale(name, beats[name], now, settings)]


def _stale(name: str, beats: list[Heartbeat], now: float, settings: Settings) -> list[str]:
    grace = settings.ready_grace_s
    live = [b for b in beats if now - b.beat_at <= settings.runner_gone_s]
    if not live:
        return [f"{name}: no runner heard from in {settings.runner_gone_s:g}s"]
    reasons = []
    down = [now - b.kafka_down_since for b in live if b.kafka_down_since is not None]
    if down and max(down) > grace:
        reasons.append(f"{name}: Kafka has not answered its runner for {max(down):.0f}s")
    # Behind as of its last word: a runner silent for a while is the other rules' case.
    behind = max(live, key=lambda b: b.beat_at - b.caught_up_at)
    if behind.beat_at - behind.caught_up_at > grace:
        reasons.append(
            f"{name}: {behind.lag} records behind, over {settings.ready_max_lag} "
            f"for {behind.beat_at - behind.caught_up_at:.0f}s"
        )
    return reasons
