"""The order flow on the real cluster: invariants under contention, crashes and outages."""

from __future__ import annotations

import random
import time

import pytest

from ecom.cluster import LocalCluster
from ecom.topology import Topology
from producers.simulate import Shop, ShopPlan
from schemas import Event, OrderCreated
from tests.conftest import KafkaCluster
from tests.flow import Follower, check_invariants, running_workers
from tests.support import run_cli

pytestmark = pytest.mark.kafka
FLOW_TOPICS = ("orders", "inventory", "reservations", "payments")


def scarce_shop(orders: int, seed: int) -> list[Event]:
    """Many users, few products with little stock, some cancellations."""
    plan = ShopPlan(
        users=300,
        products=12,
        orders=orders,
        seed=seed,
        cancel_share=0.1,
        min_stock=100,
        max_stock=300,
    )
    return list(Shop(plan).events())


def _orders(events: list[Event]) -> list[OrderCreated]:
    return [e for e in events if isinstance(e, OrderCreated)]


def test_two_thousand_orders_on_scarce_stock_keep_every_invariant(
    kafka: KafkaCluster, topology: Topology
) -> None:
    events = scarce_shop(2000, seed=41)
    orders = _orders(events)
    with (
        Follower(topology, kafka.bootstrap, FLOW_TOPICS) as follower,
        running_workers(
            topology, kafka.bootstrap, ECOM_GATEWAY_DECLINE_SHARE="0.2", ECOM_PAYMENT_TIMEOUT_S="60"
        ),
    ):
        kafka.seed(topology, events)
        follower.wait_final({o.order_id for o in orders}, timeout=600)
        counts = check_invariants(follower.log, orders)
    assert counts.get("OrderConfirmed", 0) > 100
    assert counts.get("OrderCancelled", 0) > 100
    assert sum(counts.values()) == 2000


def test_invariants_hold_while_workers_and_a_broker_are_killed(
    kafka: KafkaCluster, topology: Topology, local_cluster: LocalCluster
) -> None:
    events = scarce_shop(2000, seed=42)
    orders = _orders(events)
    rng = random.Random(7)
    reference = [
        e
        for e in events
        if not isinstance(e, OrderCreated) and e.event_type != "OrderCancellationRequested"
    ]
    traffic = [e for e in events if e not in reference]
    with (
        Follower(topology, kafka.bootstrap, FLOW_TOPICS) as follower,
        running_workers(
            topology,
            kafka.bootstrap,
            ECOM_GATEWAY_DECLINE_SHARE="0.2",
            ECOM_PAYMENT_TIMEOUT_S="60",
        ) as workers,
    ):
        kafka.seed(topology, reference)
        chunks = [traffic[i : i + 400] for i in range(0, len(traffic), 400)]
        for number, chunk in enumerate(chunks):
            kafka.seed(topology, chunk)
            victim = rng.choice(["inventory", "order", "payment", "pricing"])
            time.sleep(rng.uniform(0.5, 2.0))  # a random instant mid-flow: the test's point
            workers.kill(victim)
            workers.start_worker(victim)
            if number == 2:
                node = rng.choice([n.node_id for n in local_cluster.nodes()])
                assert run_cli("cluster", "kill", str(node)).returncode == 0
                time.sleep(rng.uniform(1.0, 3.0))
                assert run_cli("cluster", "start", str(node), timeout=180).returncode == 0
        follower.wait_final({o.order_id for o in orders}, timeout=420)
        counts = check_invariants(follower.log, orders)
    assert sum(counts.values()) == 2000


def test_orders_wait_out_a_payment_outage_and_unpaid_ones_expire(
    kafka: KafkaCluster, topology: Topology
) -> None:
    plan = ShopPlan(users=20, products=5, orders=0, seed=43, min_stock=100, max_stock=100)
    kafka.seed(topology, list(Shop(plan).events()))
    with (
        Follower(topology, kafka.bootstrap, FLOW_TOPICS) as follower,
        running_workers(
            topology, kafka.bootstrap, ECOM_GATEWAY_DECLINE_SHARE="0", ECOM_PAYMENT_TIMEOUT_S="8"
        ) as workers,
    ):
        workers.stop("payment")
        first = _orders(list(Shop(ShopPlan(20, 5, 30, seed=43, cancel_share=0)).order_events()))
        kafka.seed(topology, first)  # accepted at once, though nobody takes payment
        finals = follower.wait_final({o.order_id for o in first}, timeout=120)
        assert {type(e).__name__ for e in finals.values()} == {"OrderExpired"}
        workers.start_worker("payment")
        second = [o.model_copy(update={"order_id": o.order_id + "-b"}) for o in first]
        kafka.seed(topology, second)
        finals = follower.wait_final({o.order_id for o in second}, timeout=120)
        assert {type(finals[o.order_id]).__name__ for o in second} == {"OrderConfirmed"}
        counts = check_invariants(follower.log, first + second)
    assert counts == {"OrderExpired": 30, "OrderConfirmed": 30}
