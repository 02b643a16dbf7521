"""`ecom compare queue-log` through the CLI: the same jobs through a consumer group and a
share group on the real cluster."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ecom.kafka import GroupAdmin
from tests.support import run_cli

pytestmark = pytest.mark.kafka


def test_a_share_group_spreads_two_partitions_over_four_workers_and_redelivers_a_crash(
    home_env: dict[str, str],
) -> None:
    args = ("--records", "200", "--partitions", "2", "--workers", "4", "--failover-s", "6",
            "--json")  # fmt: skip
    groups = GroupAdmin(home_env["KAFKA_BOOTSTRAP_SERVERS"])
    before = {name for name, _, _ in groups.groups()}
    result = run_cli("compare", "queue-log", *args, env=home_env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    # Nothing of the run is left: no group, no folder of worker logs.
    assert not {n for n, _, _ in groups.groups()} - before
    assert not list((Path(home_env["ECOM_HOME"]) / ".ecom" / "compare").glob("ecom-compare-*"))
    rows = {(r["check"], r["design"]): r for r in json.loads(result.stdout)}
    group, share = "consumer group", "share group"
    for row in rows.values():
        assert row["lost"] == 0, row
    # A consumer group gives a partition to one member: two of four work.
    assert rows["throughput", group]["busy_workers"] == 2
    # A share group hands records of a partition to every member (each held some
    # before the run began).
    assert rows["throughput", share]["busy_workers"] == 4
    # A worker died after handling its batch, before committing or acknowledging it:
    # both designs hand that batch out again.
    assert rows["crash", group]["repeated"] >= 1
    assert rows["crash", share]["repeated"] >= 1
    for design in (group, share):
        assert rows["replay: a new member joins", design]["handled"] == 0
        assert rows["replay: the group is rewound", design]["handled"] == 200
        assert rows["replay: the group is rewound", design]["per_second"] is None  # not timed


def test_bad_worker_counts_are_one_line(tmp_path: Path) -> None:
    result = run_cli("compare", "queue-log", "--workers", "2,x", env={"ECOM_HOME": str(tmp_path)})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: --workers wants counts from 1 to 32 separated by commas, not '2,x'"
    ]
