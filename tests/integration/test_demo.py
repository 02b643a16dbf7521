from __future__ import annotations

import pytest

from tests.support import run_cli

pytestmark = pytest.mark.kafka


def test_demo_round_trip_reads_back_what_it_wrote(cli_env: dict[str, str]) -> None:
    result = run_cli("demo", env=cli_env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    wrote = sorted(line.split()[1] for line in lines if line.strip().startswith("wrote"))
    read = sorted(line.split()[1] for line in lines if line.strip().startswith("read"))
    assert wrote == read == ["order-1=created", "order-1=paid", "order-2=created"]
    assert lines[-1].startswith("deleted demo-")
