"""`ecom compare sync-async`: with the payment service down, the synchronous chain fails
the requests that need it while the event flow accepts every order and completes it once
payment is back; neither loses an order it accepted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support import run_cli

pytestmark = pytest.mark.kafka
FIELDS = {"scenario", "design", "offered", "accepted", "rejected", "completed", "lost",
          "p50_ms", "p99_ms", "recovery_s"}  # fmt: skip


def test_payment_down_fails_the_chain_and_only_delays_the_flow(
    home_env: dict[str, str],
) -> None:
    # 4 orders/s for 10 s; payment is down from 2.5 s to 6.5 s: 16 orders arrive while it
    # is down, so the chain must refuse some by construction, however slow this box is.
    args = ("--scenario", "payment-down", "--rate", "4", "--seconds", "10", "--down-s", "4")
    result = run_cli("compare", "sync-async", *args, "--json", env=home_env, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {row["design"]: row for row in json.loads(result.stdout)}
    assert set(rows) == {"sync", "async"}
    for row in rows.values():
        assert set(row) >= FIELDS
        assert row["scenario"] == "payment-down"
        assert row["offered"] == 40
        assert row["lost"] == 0, "nothing accepted is lost, in either design"
        assert row["completed"] == row["accepted"]
    sync, flow = rows["sync"], rows["async"]
    assert sync["rejected"] >= 8, "the chain fails requests while payment is down"
    assert flow["rejected"] == 0, "the flow accepts every order"
    assert flow["completed"] == flow["offered"], "and completes each once payment is back"
    assert flow["recovery_s"] is not None
    assert flow["p99_ms"] > 1000, "orders waited for payment, they were not refused"


def test_an_outage_longer_than_the_run_is_refused(tmp_path: Path) -> None:
    result = run_cli("compare", "sync-async", "--seconds", "8", "--down-s", "7",
                     env={"ECOM_HOME": str(tmp_path)})  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: --down-s 7 does not fit in --seconds 8: the outage starts a quarter in and "
        "must end before the run does"
    ]
