"""A projection runner's heartbeat, and what /readyz makes of it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from consumers.health import Pulse, readiness
from consumers.store import open_store
from ecom.settings import Settings


def test_kafka_silent_through_a_late_beat_counts_from_the_beat_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A runner blocked on Kafka for 20 s beat late; its first beat after that said Kafka
    had been silent for 0 s, and /readyz answered "ready" between "no runner heard from"
    and "Kafka has not answered"."""
    settings = Settings(home=tmp_path, ready_grace_s=10, runner_gone_s=15, heartbeat_s=1)
    clock = [1000.0]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    with open_store(f"sqlite:///{tmp_path / 'view.db'}") as store:
        with store.transaction() as connection:
            connection.execute(
                "INSERT INTO ecom_views (projection, generation, switched_at) VALUES "
                "('orders', 1, '2026-01-01T00:00:00+00:00')"
            )
        pulse = Pulse(store, "orders", "host-1", settings)
        pulse.tick(lambda: True)
        clock[0] += 20  # the loop waited on Kafka
        pulse.tick(lambda: False)
        assert pulse.kafka_down_since == 1000.0
        assert readiness(store, settings, now=clock[0]) == [
            "orders: Kafka has not answered its runner for 20s"
        ]
