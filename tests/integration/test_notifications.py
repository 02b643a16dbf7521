"""The confirmation mail work queue on a share group: more workers than partitions,
release and redelivery with a delivery count, dead letters past the limit, and a crash
between sending and acknowledging that sends no mail twice."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from consumers.notifications import fails
from ecom.process import Children, Spec
from ecom.topology import Topology
from schemas import Event, Money, OrderConfirmed, OrderCreated, OrderLine
from tests.conftest import KafkaCluster
from tests.support import REPO, wait_for

pytestmark = pytest.mark.kafka
FAILURE_SHARE = 0.5
LIMIT = 3


def confirmed(count: int) -> list[OrderConfirmed]:
    return [
        OrderConfirmed(order_id=f"o-{n:04d}", total=Money(amount_minor=1000 + n, currency="EUR"))
        for n in range(count)
    ]


def expected_sends(orders: list[OrderConfirmed]) -> tuple[dict[str, int], set[str]]:
    """Which delivery sends each order's mail, and which orders none does (the simulated
    mail service draws per order and delivery, so this is known in advance)."""
    sent: dict[str, int] = {}
    dead: set[str] = set()
    for order in orders:
        first = next(
            (d for d in range(1, LIMIT + 1) if not fails(order.order_id, d, FAILURE_SHARE)),
            None,
        )
        if first is None:
            dead.add(order.order_id)
        else:
            sent[order.order_id] = first
    return sent, dead


def outbox(path: Path, column: str = "delivery") -> dict[str, int]:
    """Order -> the delivery that sent its mail (or how often it came back after)."""
    if not path.exists():
        return {}
    with sqlite3.connect(path) as db:
        try:
            return dict(db.execute(f"SELECT order_id, {column} FROM sent").fetchall())
        except sqlite3.OperationalError:  # the table is not made yet
            return {}


def tally(output: str) -> dict[str, int]:
    """The counts of the workers' last line."""
    line = output.strip().splitlines()[-1]
    found = re.fullmatch(
        r"stopped: (\d+) mails sent, (\d+) released for another try, (\d+) to the dead "
        r"letters, (\d+) already sent",
        line,
    )
    assert found, output
    return dict(zip(("sent", "released", "dead", "repeats"), map(int, found.groups()), strict=True))


def workers_spec(
    topology: Topology, kafka: KafkaCluster, tmp_path: Path, lock_s: int = 30, **env: str
) -> Spec:
    full_env = {
        "ECOM_TOPIC_PREFIX": topology.prefix,
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap,
        "ECOM_MAIL_OUTBOX": str(tmp_path / "outbox.db"),
        "ECOM_MAIL_LATENCY_MS": "5",
        "ECOM_MAIL_FAILURE_SHARE": str(FAILURE_SHARE),
        **env,
    }
    args = ("notifications", "run", "--workers", "8", "--max-deliveries", str(LIMIT),
            "--lock-s", str(lock_s))  # fmt: skip
    return Spec("notifications", args, full_env, tmp_path / "workers.log", cwd=REPO)


def stop(children: Children, tmp_path: Path) -> tuple[int, str]:
    """SIGTERM the workers; their exit code and what they printed."""
    code = children.stop("notifications")
    return code, (tmp_path / "workers.log").read_text()


def test_eight_workers_on_six_partitions_send_each_mail_once_and_dead_letter_the_rest(
    kafka: KafkaCluster, topology: Topology, tmp_path: Path
) -> None:
    orders = confirmed(60)
    sent, dead = expected_sends(orders)
    assert dead  # the draws exercise both paths
    assert any(d > 1 for d in sent.values())
    other: list[Event] = [
        OrderCreated(order_id=f"x-{n}", user_id="u-1", currency="EUR", shipping_country="DE",
                     lines=(OrderLine(product_id="p-1", quantity=1),))
        for n in range(20)
    ]  # fmt: skip
    kafka.seed(topology, [*orders, *other])
    orders_topic = topology.topic("orders").name
    with kafka.producer() as producer:  # a record nobody can decode
        producer.produce(orders_topic, b"not an event", b"o-garbage")
    dlq = topology.dead_letters("notifications").name

    with Children() as children:
        children.start(workers_spec(topology, kafka, tmp_path))
        wait_for(lambda: outbox(tmp_path / "outbox.db") == sent, 120, "every mail sent")
        letters = kafka.read([dlq], expected=len(dead) + 1, timeout=120)
        code, output = stop(children, tmp_path)

    assert code == 0, output
    assert {m.key().decode() for m in letters} == dead | {"o-garbage"}
    reasons = {dict(m.headers())["kafka_dlt-exception-message"].decode() for m in letters}
    assert f"not sent in {LIMIT} deliveries" in reasons
    counts = tally(output)
    assert counts["sent"] == len(sent)
    assert counts["dead"] == len(dead) + 1
    assert counts["released"] == sum(d - 1 for d in sent.values()) + LIMIT * len(dead)


def test_a_crash_between_send_and_acknowledgement_sends_no_mail_twice(
    kafka: KafkaCluster, topology: Topology, tmp_path: Path
) -> None:
    orders = confirmed(40)
    kafka.seed(topology, orders)
    box = tmp_path / "outbox.db"
    crash = {"ECOM_FAULTS": "notify-before-ack=1", "ECOM_MAIL_FAILURE_SHARE": "0"}

    with Children() as children:
        children.start(workers_spec(topology, kafka, tmp_path, lock_s=2, **crash))
        first = children.running["notifications"].process
        code = first.wait(timeout=120)  # it kills itself after its first batch is sent
        assert code == -9, f"the workers were to crash before acknowledging, exit {code}"
        before = outbox(box)
        assert before, "the crashed batch's mails were sent before the crash"
    with Children() as children:
        children.start(workers_spec(topology, kafka, tmp_path, 2, ECOM_MAIL_FAILURE_SHARE="0"))
        wait_for(lambda: len(outbox(box)) == len(orders), 120, "every mail sent")
        # The crashed batch was never acknowledged, so it comes back: by construction.
        wait_for(lambda: sum(outbox(box, "repeats").values()) >= 1, 120, "the batch back")
        code, output = stop(children, tmp_path)

    after = outbox(box)
    assert code == 0, output
    assert {k: after[k] for k in before} == before  # sent once, at the first delivery
    counts = tally(output)
    assert counts["sent"] == len(orders) - len(before)
    assert counts["repeats"] == sum(outbox(box, "repeats").values()) >= 1
