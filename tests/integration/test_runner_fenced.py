"""A runner whose consumer is fenced (another consumer joined with its group.instance.id)
takes the membership back and reads on; fenced again and again, it stops with an error."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from consumers.projections import PROJECTIONS
from consumers.projections.inventory import Stock
from consumers.runner import FATAL_LIMIT
from consumers.store import Store, open_store
from ecom import metrics
from ecom.kafka import Consumer, KafkaError, is_fatal
from ecom.process import Child, Spec, spawn, stop, wait
from ecom.topology import Topology
from schemas import StockAdjusted
from tests.conftest import KafkaCluster
from tests.runners import running
from tests.support import REPO, unique, wait_for

pytestmark = pytest.mark.kafka


@contextmanager
def _twin(
    kafka: KafkaCluster, group: str, instance: str, topics: list[str]
) -> Iterator[tuple[Consumer, list[KafkaError]]]:
    """A plain consumer with the runner's group.instance.id, as a second process with the
    same id would have: the broker hands it the membership and fences the runner's. The
    list collects the errors the twin consumes (it is fenced in turn when the runner
    joins again)."""
    twin = kafka.consumer(group, **{"group.instance.id": instance})
    twin.subscribe(topics)
    try:
        yield twin, []
    finally:
        twin.close()


def _taken_back(twin: Consumer, errors: list[KafkaError]) -> bool:
    """Tell whether the runner took the membership back (which fences the twin)."""
    errors += [e for m in twin.consume(10, 0.1) if (e := m.error()) is not None]
    return any(is_fatal(error) for error in errors)


def _gone(runner: Child, twin: Consumer) -> bool:
    twin.poll(0.1)  # keeps the twin a member meanwhile
    return not runner.alive()


def _on_hand(store: Store, product: str) -> int | None:
    if store.active_generation("inventory") is None:  # the runner has not made it yet
        return None
    rows = store.load(Stock, 1, [(product,)])
    return rows[(product,)].on_hand if rows else None  # type: ignore[attr-defined]


def test_a_fenced_runner_takes_its_membership_back_and_reads_on(
    kafka: KafkaCluster, topology: Topology, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'view.db'}"
    topics = [topology.topic("inventory").name]
    kafka.seed(topology, [StockAdjusted(product_id="p-1", quantity=1)])
    with (
        open_store(url) as store,
        running(PROJECTIONS["inventory"], url, topology, kafka.bootstrap) as runner,
    ):
        wait_for(lambda: _on_hand(store, "p-1") == 1, 60, "the first record applied")
        with _twin(kafka, runner.group, runner.instance, topics) as (twin, errors):
            wait_for(lambda: _taken_back(twin, errors), 60, "the runner to take it back")
            assert "fenced" in errors[-1].str()
        assert runner.progress.replaced == 1
        kafka.seed(topology, [StockAdjusted(product_id="p-1", quantity=1)])
        wait_for(lambda: _on_hand(store, "p-1") == 2, 60, "a record produced after the fence")
    replaced = metrics.REGISTRY.get_sample_value(
        "ecom_consumers_replaced_total", {"service": runner.group}
    )
    assert replaced == 1


def test_a_runner_fenced_again_and_again_stops_with_an_error(
    kafka: KafkaCluster, topology: Topology, tmp_path: Path
) -> None:
    group = topology.projection_group("inventory")
    host = unique("host")
    instance = f"{group}-{host}-0"  # slot 0: the group is the test's own
    topics = [topology.topic("inventory").name]
    url, log = f"sqlite:///{tmp_path / 'view.db'}", tmp_path / "runner.log"
    kafka.seed(topology, [StockAdjusted(product_id="p-1", quantity=1)])
    # A window longer than the test: its fences count however slowly they come.
    env = {"ECOM_TOPIC_PREFIX": topology.prefix, "ECOM_HOST_ID": host,
           "ECOM_RUNNER_FATAL_WINDOW_S": "3600"}  # fmt: skip
    args = ("projections", "run", "inventory", "--store", url, "--bootstrap", kafka.bootstrap)
    runner = spawn(Spec("projections", args, env, cwd=REPO, log=log))
    try:
        with open_store(url) as store:  # a member once it applied: each twin fences it
            wait_for(lambda: _on_hand(store, "p-1") == 1, 60, "the first record applied")
        for _ in range(FATAL_LIMIT - 1):
            with _twin(kafka, group, instance, topics) as (twin, errors):
                wait_for(lambda: _taken_back(twin, errors), 60, "the runner to take it back")
        assert runner.alive()
        with _twin(kafka, group, instance, topics) as (twin, errors):
            wait_for(lambda: _gone(runner, twin), 60, "the runner to give up")
        code = wait(runner, 10)
    finally:
        stop(runner)
    output = log.read_text()
    assert code == 3, output
    lines = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, output
    assert f"hit {FATAL_LIMIT} fatal errors" in lines[0]
    assert "same instance id" in lines[0]
