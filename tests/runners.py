"""Helpers to run projections against the real cluster in tests."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from consumers.projection import Projection
from consumers.projections import PROJECTIONS
from consumers.runner import ProjectionRunner
from consumers.store import Store, open_store
from ecom.kafka import log_ends
from ecom.process import Child, Spec, kill, spawn
from ecom.topology import Topology
from producers.simulate import Shop, ShopPlan, with_stock_flow
from schemas import Event
from tests.conftest import KafkaCluster
from tests.support import REPO, wait_for


def shop_log(orders: int, seed: int = 5) -> list[Event]:
    """Simulated shop traffic plus the stock requests, releases and commits orders cause."""
    plan = ShopPlan(users=200, products=40, orders=orders, seed=seed, cancel_share=0.2)
    return list(with_stock_flow(Shop(plan).events()))


def view_env(bootstrap: str, topology: Topology, store_url: str) -> dict[str, str]:
    """Environment for `ecom` subprocesses working on a view: the cluster, the topics'
    prefix and the view's database."""
    return {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "ECOM_TOPIC_PREFIX": topology.prefix,
        "ECOM_STORE": store_url,
    }


def live_orders_view(
    kafka: KafkaCluster, topology: Topology, folder: Path, orders: int, seed: int
) -> tuple[str, dict[str, str]]:
    """Publish a shop log of `orders` orders, fold the orders view from it (generation 1,
    active) in folder/view.db; return the view's URL and the environment for `ecom`."""
    kafka.seed(topology, shop_log(orders, seed=seed))
    url = f"sqlite:///{folder / 'view.db'}"
    run_until_caught_up(PROJECTIONS["orders"], url, topology, kafka.bootstrap)
    return url, view_env(kafka.bootstrap, topology, url)


def caught_up(store: Store, runner: ProjectionRunner, bootstrap: str) -> bool:
    ends = log_ends(bootstrap, [runner.topology.topic(t).name for t in runner.projection.topics])
    stored = store.offsets(runner.projection.name, runner.generation)
    return all(
        stored[key].next_offset >= end for key, end in ends.items() if end > 0 and key in stored
    ) and all(key in stored for key, end in ends.items() if end > 0)


@contextmanager
def running(
    projection: Projection, store_url: str, topology: Topology, bootstrap: str, **kwargs: object
) -> Iterator[ProjectionRunner]:
    """Run a projection in a thread for the duration of the block."""
    runner = ProjectionRunner(projection, open_store(store_url), topology, bootstrap, **kwargs)  # type: ignore[arg-type]
    failures: list[BaseException] = []

    def target() -> None:
        try:
            runner.run()
        except BaseException as error:  # noqa: BLE001 - re-raised in the test's thread
            failures.append(error)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    try:
        yield runner
    finally:
        runner.stop()
        thread.join(60)
        runner.store.close()
    if failures:
        raise failures[0]


def run_until_caught_up(
    projection: Projection, store_url: str, topology: Topology, bootstrap: str, timeout: float = 180
) -> ProjectionRunner:
    """Run a projection until its view has read everything now in its topics."""
    store = open_store(store_url)
    with running(projection, store_url, topology, bootstrap) as runner:
        wait_for(
            lambda: caught_up(store, runner, bootstrap),
            timeout,
            f"{projection.name} to catch up",
            0.2,
        )
    store.close()
    return runner


@contextmanager
def runner_process(
    topology: Topology,
    bootstrap: str,
    store_url: str,
    *names: str,
    env: dict[str, str] | None = None,
    **faults: int,
) -> Iterator[Child]:
    """Run `ecom projections run [NAMES]` in another process; make sure it is gone after."""
    full_env = {"ECOM_TOPIC_PREFIX": topology.prefix, **(env or {})}
    if faults:
        full_env["ECOM_FAULTS"] = ",".join(f"{k.replace('_', '-')}={v}" for k, v in faults.items())
    args = ("projections", "run", *names, "--store", store_url, "--bootstrap", bootstrap)
    worker = spawn(Spec("projections", args, full_env, cwd=REPO))
    try:
        yield worker
    finally:
        if worker.alive():
            kill(worker)
