from __future__ import annotations

import pytest

from tests.support import run_cli

pytestmark = pytest.mark.kafka


def test_demo_round_trip_reads_back_every_event_it_wrote(cli_env: dict[str, str]) -> None:
    result = run_cli("demo", env=cli_env)
    assert result.returncode == 0, result.stderr
    lines = [line.split() for line in result.stdout.splitlines()]
    wrote = sorted(line[1] for line in lines if line[0] == "wrote")
    read = sorted(line[1] for line in lines if line[0] == "read")
    assert wrote == read
    assert wrote == sorted(
        ["UserCreated", "ProductCreated", "PriceChanged", "StockAdjusted", "OrderCreated"]
    )
    assert '"order_id":"o-1"' in result.stdout
    assert lines[-1][0] == "deleted"
