"""The order flow's machinery without a broker: the commit order of checkpoints, state
tables and their changelog records, retention, replica histories, the gateway's ledger,
and process supervision."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from ecom.errors import DeliveryFailed, KafkaRefused, KafkaUnavailable, ProcessFailed
from ecom.gateway import Charge, Ledger
from ecom.kafka import Delivery, Outcome
from ecom.process import RestartPolicy, Spec, Supervisor, claim_slot
from streams.checkpoint import MAX_IN_FLIGHT, Checkpoint, Committer, Deliveries, merged
from streams.flow import DUPLICATE, GAP, STALE, TAKE, Lineup, log_start
from streams.pricing import Priced
from streams.replica import History
from streams.state import CURSOR, Change, Retention, Table
from tests.support import REPO, wait_for

T0 = datetime(2026, 6, 1, tzinfo=UTC)


class Recorder:
    """Stands in for the producer: records sends, delivers them when told."""

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.pending: list[tuple[str, Any]] = []
        self.values: list[tuple[Any, Any]] = []

    def produce(self, topic: str, value: Any, key: Any, **options: Any) -> None:
        self.log.append(f"send {topic} {key!r}")
        self.values.append((key, value))
        self.pending.append((f"{topic} {key!r}", options["on_outcome"]))

    def deliver_all(self, failure: bool = False) -> None:
        pending, self.pending = self.pending, []
        for what, report in pending:
            self.log.append(f"acked {what}")
            outcome: Outcome = DeliveryFailed("no") if failure else Delivery("t", 0, 0, "k")
            report(outcome)


def _table() -> Table[Priced]:
    table: Table[Priced] = Table(Priced, "changelog", "nowhere:1")
    table.adopt(0, {}, {})
    return table


def test_a_checkpoint_persists_state_after_its_outputs_and_acks_inputs_last() -> None:
    async def scenario() -> list[str]:
        log: list[str] = []
        producer = Recorder(log)
        table = _table()

        async def ack(records: Any) -> None:
            log.append(f"ack {list(records)}")

        committer = Committer(producer, table, ack)  # type: ignore[arg-type]
        task = asyncio.ensure_future(committer.run())
        loop = asyncio.get_running_loop()
        for number in (1, 2):
            outputs = Deliveries(loop)
            producer.produce("orders", b"x", f"out{number}", on_outcome=outputs.track())
            table.put(0, f"k{number}".encode(), Priced(f"c{number}"))
            checkpoint = Checkpoint(outputs, records=[f"r{number}"])
            checkpoint.changes = table.take_changes()
            outputs.seal()
            await committer.submit(checkpoint)
        for _ in range(3):  # outputs, then state of 1, then state of 2
            await asyncio.sleep(0.01)
            producer.deliver_all()
        await asyncio.wait_for(committer.drain(), 5)
        task.cancel()
        return log

    log = asyncio.run(scenario())
    assert log.index("acked orders 'out1'") < log.index("send changelog b'k1'")
    assert log.index("acked orders 'out2'") < log.index("send changelog b'k2'")
    acks = [line for line in log if line.startswith("ack [")]
    assert acks == ["ack ['r1', 'r2']"], "sealed while the first waited: one commit, in order"
    assert log.index("acked changelog b'k2'") < log.index(acks[0])
    assert log.index("send changelog b'k1'") < log.index("send changelog b'k2'")


def test_a_hand_over_that_finds_room_does_not_overtake_one_waiting_for_room() -> None:
    """The retention timer hands over its tombstones in the step where a slot frees, while
    the agent's sealed checkpoint still waits for room: the timer's must commit after it
    (a plain bounded queue let it in first, and a tombstone landed before its row)."""

    async def scenario() -> list[str]:
        log: list[str] = []
        producer = Recorder(log)
        timer: list[asyncio.Future[None]] = []

        def sealed(name: str, waits: bool = False) -> Checkpoint:
            outputs = Deliveries(asyncio.get_running_loop())
            if waits:  # its outputs wait for Kafka: nothing commits meanwhile
                producer.produce("orders", b"x", name, on_outcome=outputs.track())
            outputs.seal()
            return Checkpoint(outputs, records=[name])

        async def ack(records: Any) -> None:
            log.extend(f"ack {record}" for record in records)
            if "agent0" in records:  # runs just before the committer frees a slot
                tombstone = sealed("timer")
                tombstone.changes = [Change(0, b"gone", None)]
                timer.append(asyncio.ensure_future(committer.submit(tombstone)))

        committer = Committer(producer, _table(), ack)  # type: ignore[arg-type]
        task = asyncio.ensure_future(committer.run())
        await asyncio.wait_for(committer.submit(sealed("agent0", waits=True)), 5)
        await asyncio.sleep(0)  # the committer takes agent0 and waits for its outputs
        for number in range(1, MAX_IN_FLIGHT):  # agent0 and these fill it: none waits
            await asyncio.wait_for(committer.submit(sealed(f"agent{number}")), 5)
        agent = asyncio.ensure_future(committer.submit(sealed(f"agent{MAX_IN_FLIGHT}")))
        await asyncio.sleep(0.01)
        assert not agent.done(), "the agent waits while the queue is full"
        producer.deliver_all()
        await asyncio.wait_for(agent, 5)
        await asyncio.wait_for(timer[0], 5)
        await _drain(committer, producer)  # the tombstone's write waits for its ack
        task.cancel()
        return log

    log = asyncio.run(scenario())
    agents = [f"ack agent{n}" for n in range(MAX_IN_FLIGHT + 1)]
    assert [line for line in log if line.startswith("ack ")] == [*agents, "ack timer"]


def _sealed(producer: Recorder, name: str, changes: list[Change]) -> Checkpoint:
    """A checkpoint of one sent output (keyed by its name) and one input record, sealed."""
    outputs = Deliveries(asyncio.get_running_loop())
    producer.produce("orders", b"x", name, on_outcome=outputs.track())
    outputs.seal()
    return Checkpoint(outputs, records=[name], changes=changes)


async def _drain(committer: Committer, producer: Recorder) -> None:
    """Deliver every send until the committer has committed all it was handed."""
    drained = asyncio.ensure_future(committer.drain())
    for _ in range(500):
        if drained.done():
            return
        await asyncio.sleep(0.01)
        producer.deliver_all()
    raise AssertionError("the committer never drained")


def test_checkpoints_sealed_meanwhile_commit_together_and_tombstones_lead_a_group() -> None:
    """One write per group, each key's latest value, cursors last; a retention tombstone
    never rides behind a checkpoint (it could land ahead of that checkpoint's cursor)."""

    async def scenario() -> tuple[list[str], list[tuple[Any, Any]]]:
        log: list[str] = []
        producer = Recorder(log)
        table = _table()
        committer = Committer(producer, table, _logging_ack(log))  # type: ignore[arg-type]
        task = asyncio.ensure_future(committer.run())

        async def seal(name: str, *changes: tuple[str, bytes, Priced | None]) -> None:
            for step, key, row in changes:
                table.advance(0, "orders", int(step))
                if row is None:
                    table.delete(0, key)
                else:
                    table.put(0, key, row)
            taken = table.take_deletions() if name == "timer" else table.take_changes()
            await committer.submit(_sealed(producer, name, taken))

        await seal("a", ("1", b"k1", Priced("first")), ("1", b"gone", Priced("old")))
        await asyncio.sleep(0)  # the committer takes a and waits for its outputs
        await seal("b", ("2", b"k1", Priced("second")))
        await seal("timer", ("2", b"gone", None))
        await seal("c", ("3", b"k2", Priced("third")))
        await _drain(committer, producer)
        task.cancel()
        return log, producer.values

    log, values = asyncio.run(scenario())
    changelog = [(key, value) for key, value in values if key not in ("a", "b", "timer", "c")]
    cursor = CURSOR + b"orders"
    assert [key for key, _ in changelog] == [b"k1", b"gone", cursor, b"gone", b"k2", cursor]
    assert orjson.loads(changelog[0][1])["row"]["cause"] == "second", "the latest value"
    assert orjson.loads(changelog[2][1]) == {"next": 2}
    assert changelog[3][1] is None
    acks = [line for line in log if line.startswith("ack ")]
    assert acks == ["ack a", "ack b", "ack timer", "ack c"]
    assert log.index("acked changelog " + repr(cursor)) < log.index(
        "send changelog b'gone'", log.index("ack b")
    ), "the tombstone is sent once the cursor before it is persisted"


def test_a_failed_output_of_any_member_stops_the_group_before_state_or_acks() -> None:
    async def scenario() -> tuple[list[str], BaseException | None]:
        log: list[str] = []
        producer = Recorder(log)
        table = _table()
        committer = Committer(producer, table, _logging_ack(log))  # type: ignore[arg-type]
        task = asyncio.ensure_future(committer.run())
        for name in ("a", "b"):
            table.put(0, name.encode(), Priced(name))
            await committer.submit(_sealed(producer, name, table.take_changes()))
            await asyncio.sleep(0)  # a is taken before b is sealed
        first, second = producer.pending
        producer.pending = [second]
        first[1](Delivery("t", 0, 0, "k"))  # a's output acknowledged: b joins its group
        await asyncio.sleep(0.01)
        producer.deliver_all(failure=True)  # b's output refused
        with pytest.raises(DeliveryFailed):
            await asyncio.wait_for(task, 5)
        return log, task.exception()

    log, error = asyncio.run(scenario())
    assert isinstance(error, DeliveryFailed)
    assert not any(line.startswith(("ack ", "send changelog")) for line in log), log


def test_a_row_put_again_after_its_tombstone_in_one_group_is_written_once_as_the_put() -> None:
    loop = asyncio.new_event_loop()

    def checkpoint(*changes: Change) -> Checkpoint:
        return Checkpoint(Deliveries(loop), changes=list(changes))

    cursor = CURSOR + b"orders"
    group = [
        checkpoint(Change(0, b"k", None)),
        checkpoint(Change(0, b"k", b"again"), Change(0, cursor, b"5")),
        checkpoint(Change(1, b"k", b"other partition"), Change(1, cursor, b"9")),
        checkpoint(Change(0, cursor, b"7")),
    ]
    assert merged(group) == [
        Change(0, b"k", b"again"),
        Change(1, b"k", b"other partition"),
        Change(0, cursor, b"7"),
        Change(1, cursor, b"9"),
    ]
    loop.close()


def _logging_ack(log: list[str]) -> Any:
    async def ack(records: Any) -> None:
        log.extend(f"ack {record}" for record in records)

    return ack


def test_a_failed_output_stops_the_committer_before_any_state_is_written() -> None:
    async def scenario() -> tuple[list[str], BaseException | None]:
        log: list[str] = []
        producer = Recorder(log)
        table = _table()

        async def ack(records: Any) -> None:
            log.append("ack")

        committer = Committer(producer, table, ack)  # type: ignore[arg-type]
        task = asyncio.ensure_future(committer.run())
        table.put(0, b"k", Priced("c"))
        await committer.submit(_sealed(producer, "r", table.take_changes()))
        await asyncio.sleep(0.01)
        producer.deliver_all(failure=True)
        with pytest.raises(DeliveryFailed):
            await asyncio.wait_for(task, 5)
        return log, task.exception()

    log, error = asyncio.run(scenario())
    assert isinstance(error, DeliveryFailed)
    assert "ack" not in log
    assert not any(line.startswith("send changelog") for line in log)


def test_a_table_turns_rows_cursors_and_deletions_into_changelog_records() -> None:
    table = _table()
    table.advance(0, "orders", 42)
    table.handling = ("orders", 41)
    table.put(0, b"o-1", Priced("c-1"))
    table.handling = None
    records = table.take_changes()
    assert [c.key for c in records] == [b"o-1", CURSOR + b"orders"], "the cursor goes last"
    changes = {c.key: c for c in records}
    assert orjson.loads(changes[b"o-1"].value or b"") == {
        "row": {"cause": "c-1", "finished_at": None},
        "applied": {"orders": 41},
    }
    assert orjson.loads(changes[CURSOR + b"orders"].value or b"") == {"next": 42}
    assert table.holds(0, b"o-1", "orders", 41)
    assert not table.holds(0, b"o-1", "orders", 42)
    assert not table.holds(0, b"o-1", "payments", 41), "marks are per source topic"
    assert table.take_changes() == [], "each change is taken once"
    table.delete(0, b"o-1")
    table.put(0, b"o-2", Priced("c-2"))
    assert table.take_deletions() == [Change(0, b"o-1", None)]
    assert [c.key for c in table.take_changes()] == [b"o-2"], "the rest waits for a batch"


def test_retention_forgets_finished_rows_once_their_time_is_up() -> None:
    table = _table()
    retention = Retention(table, timedelta(seconds=60), lambda row: row.finished_at)
    table.put(0, b"done", Priced("c", finished_at=T0))
    table.put(0, b"open", Priced("c"))
    table.take_changes()  # sealed in the agent's checkpoint
    assert retention.tick(T0 + timedelta(seconds=59)) == 0
    assert retention.tick(T0 + timedelta(seconds=61)) == 1
    assert set(table.rows[0]) == {b"open"}
    assert table.take_deletions() == [Change(0, b"done", None)]


def test_a_finished_row_no_checkpoint_holds_yet_is_forgotten_only_later() -> None:
    """Finished long ago by its events' time, put by the batch being decided: deleting it
    now would persist its tombstone before the batch (and what the batch sent)."""
    table = _table()
    retention = Retention(table, timedelta(seconds=60), lambda row: row.finished_at)
    table.put(0, b"done", Priced("c", finished_at=T0))
    later = T0 + timedelta(hours=1)
    assert retention.tick(later) == 0
    assert table.get(0, b"done") is not None
    table.take_changes()  # the batch is sealed
    assert retention.tick(later + timedelta(seconds=0.5)) == 0
    assert retention.tick(later + timedelta(seconds=1)) == 1, "looked at again a second later"
    assert table.take_deletions() == [Change(0, b"done", None)]


def test_retention_looks_again_at_a_partition_that_went_and_came_back_between_ticks() -> None:
    table = _table()
    retention = Retention(table, timedelta(seconds=60), lambda row: row.finished_at)
    assert retention.tick(T0) == 0  # partition 0 (empty) is looked at
    # revoked, assigned again and loaded (with a finished row) before the next tick
    table.adopt(0, {b"done": Priced("c", finished_at=T0)}, {"orders": 5})
    assert retention.tick(T0 + timedelta(seconds=61)) == 1
    assert table.take_deletions() == [Change(0, b"done", None)]


def test_a_log_start_unknown_while_a_broker_is_down_is_asked_again_then_given_up() -> None:
    answers = iter([-1001, None, -1001, 7])  # None: the cluster did not answer
    asked: list[list[tuple[str, int]]] = []

    def starts(partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        asked.append(partitions)
        answer = next(answers)
        if answer is None:
            raise KafkaUnavailable("cannot list offsets: Local: Timed out")
        return {partitions[0]: answer}

    assert asyncio.run(log_start(starts, ("orders", 3))) == 7
    assert asked == [[("orders", 3)]] * 4
    with pytest.raises(RuntimeError, match=r"no log start offset for orders\[3\]: -1001"):
        asyncio.run(log_start(lambda ps: {ps[0]: -1001}, ("orders", 3), within=0))

    def silent(partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        raise KafkaUnavailable("cannot list offsets: Local: Timed out")

    with pytest.raises(KafkaUnavailable, match="Timed out"):
        asyncio.run(log_start(silent, ("orders", 3), within=0))

    def refusing(partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        asked.append(partitions)
        raise KafkaRefused("cannot list offsets: Broker: Topic authorization failed")

    asked.clear()
    with pytest.raises(KafkaRefused):
        asyncio.run(log_start(refusing, ("orders", 3)))
    assert len(asked) == 1, "a refusal is not asked again"


def test_a_history_answers_the_value_in_force_at_a_time() -> None:
    history: History[int] = History()
    history.add(T0 + timedelta(hours=2), 20)
    history.add(T0, 10)
    assert history.at(T0 - timedelta(seconds=1)) is None
    assert history.at(T0) == 10
    assert history.at(T0 + timedelta(hours=1)) == 10
    assert history.at(T0 + timedelta(hours=3)) == 20


def test_the_ledger_charges_once_per_key_and_refunds_only_what_was_authorized(
    tmp_path: Path,
) -> None:
    ledger = Ledger(tmp_path / "ledger.db")
    charge = Charge("pay-o-1", "o-1", 500, "EUR")
    assert ledger.charge([(charge, True)]) == {"pay-o-1": True}
    assert ledger.charge([(charge, False)]) == {"pay-o-1": True}, "the first answer stands"
    assert ledger.charge([(Charge("pay-o-2", "o-2", 7, "EUR"), False)]) == {"pay-o-2": False}
    assert ledger.refund("pay-o-1/refund", "pay-o-1")
    assert ledger.refund("pay-o-1/refund", "pay-o-1")
    assert not ledger.refund("pay-o-2/refund", "pay-o-2"), "a declined charge has no refund"
    db = ledger._db
    assert db.execute("SELECT COUNT(*) FROM charges").fetchone() == (2,)
    assert db.execute("SELECT order_id, amount_minor FROM refunds").fetchall() == [("o-1", 500)]


def test_a_supervisor_restarts_a_failing_child_then_gives_up_naming_it(tmp_path: Path) -> None:
    messages: list[str] = []
    policy = RestartPolicy(first_backoff_s=0.05, max_backoff_s=0.1, max_failures=3)
    failing = ("topics", "apply", "--file", str(tmp_path / "missing.yaml"))  # exits 2 at once
    with Supervisor(messages.append, policy) as supervisor:
        supervisor.start(Spec("bad-apple", failing, cwd=REPO))

        def gave_up() -> str | None:
            try:
                supervisor.check()
            except ProcessFailed as error:
                return str(error)
            return None

        error = wait_for(gave_up, 60, "the supervisor to give up", interval=0.05)
    assert error.startswith("bad-apple exited 3 times within 60s (last exit code 2)")
    assert supervisor.restarts["bad-apple"] == 2
    assert sum("restarting in" in m for m in messages) == 2


def test_instance_slots_are_distinct_while_held(tmp_path: Path) -> None:
    assert [claim_slot(tmp_path, "app"), claim_slot(tmp_path, "app")] == [0, 1]
    assert claim_slot(tmp_path, "other") == 0


def test_the_lineup_takes_each_offset_once_and_in_order() -> None:
    table = _table()
    lineup = Lineup(table)
    verdicts = [lineup.check("orders", 0, offset)[0] for offset in (5, 6, 6, 5, 7)]
    assert verdicts == [TAKE, TAKE, DUPLICATE, DUPLICATE, TAKE]
    assert table.cursor(0, "orders") == 8
    assert lineup.check("payments", 0, 3)[0] == TAKE, "each topic has a cursor of its own"


def test_a_skipped_offset_rewinds_and_drops_records_until_it_comes_again() -> None:
    table = _table()
    lineup = Lineup(table)
    assert lineup.check("orders", 0, 10)[0] == TAKE
    assert lineup.check("orders", 0, 13) == (GAP, 11), "11 and 12 never came: seek to 11"
    assert lineup.check("orders", 0, 14)[0] == STALE, "still in flight from before the seek"
    assert lineup.check("orders", 0, 11)[0] == TAKE
    assert [lineup.check("orders", 0, o)[0] for o in (12, 13)] == [TAKE, TAKE]
    assert table.cursor(0, "orders") == 14


def test_a_seek_back_that_faust_lost_is_made_again() -> None:
    """The rest of a batch fetched before the seek comes first (STALE); if faust then
    drops the records sought (its read offset ran past them), the batch's last offset
    comes a second time, and the lineup asks for the seek again."""
    table = _table()
    lineup = Lineup(table)
    assert lineup.check("orders", 0, 10)[0] == TAKE
    assert lineup.check("orders", 0, 13) == (GAP, 11)
    assert [lineup.check("orders", 0, o)[0] for o in (14, 15)] == [STALE, STALE]
    assert lineup.check("orders", 0, 15) == (GAP, 11), "15 again, not 11: seek again"
    assert lineup.check("orders", 0, 16)[0] == STALE, "still before the new seek"
    assert [lineup.check("orders", 0, o)[0] for o in (11, 12)] == [TAKE, TAKE]


def test_a_rebalance_voids_an_awaited_seek_back_and_the_next_record_seeks_again() -> None:
    """faust seeks every partition to its committed offset on a rebalance: a seek back
    still awaited would otherwise hold every later record as STALE for ever."""
    table = _table()
    lineup = Lineup(table)
    table.advance(0, "orders", 0)  # never handled: starts at the log's first offset
    assert lineup.check("orders", 0, 40) == (GAP, 0)
    lineup.forget_rewinds()  # a rebalance: faust moved the consumer to offset 40 again
    assert lineup.check("orders", 0, 40) == (GAP, 0), "judged afresh: seek back again"
    assert lineup.check("orders", 0, 0)[0] == TAKE


def test_changes_of_a_partition_that_went_are_not_written_even_if_it_came_back() -> None:
    async def scenario() -> list[Change]:
        table = _table()
        loaded = asyncio.get_running_loop().create_future()
        loaded.set_result(None)
        table._loads[0] = loaded  # partition 0 was assigned and loaded (by _table)
        table.put(0, b"o-1", Priced("the old owner's last word"))
        table.assign(set())
        table.adopt(0, {b"o-1": Priced("the new owner's")}, {"orders": 9})  # back, afresh
        return table.take_changes()

    assert asyncio.run(scenario()) == []


class _Record:
    """A changelog record as the state loader reads it."""

    def __init__(self, key: bytes, value: bytes | None) -> None:
        self._key, self._value = key, value

    def key(self) -> bytes:
        return self._key

    def value(self) -> bytes | None:
        return self._value


def _changelog_that_fails(times: int, error: KafkaUnavailable | None = None) -> Any:
    """A read_to_end whose first `times` reads hand over a row, then find the cluster
    gone (as during a broker restart), or raise `error`; the next one reads the whole
    changelog."""
    calls: list[int] = []

    def read_to_end(bootstrap: str, topic: str, partitions: list[int], apply: Any) -> None:
        calls.append(partitions[0])
        row = orjson.dumps({"row": {"cause": "e-1", "finished_at": None}, "applied": {}})
        if len(calls) <= times:
            apply(_Record(b"o-half-read", row))
            raise error or KafkaUnavailable("cannot reach Kafka at nowhere:1: Local: Timed out")
        apply(_Record(b"o-1", row))
        apply(_Record(CURSOR + b"orders", orjson.dumps({"next": 7})))

    read_to_end.calls = calls  # type: ignore[attr-defined]
    return read_to_end


def _loading(monkeypatch: pytest.MonkeyPatch, reader: Any, **settings: float) -> Table[Priced]:
    """A table whose changelog reads go to `reader`, with streams.state's settings given."""
    monkeypatch.setattr("streams.state.read_to_end", reader)
    for name, value in settings.items():
        monkeypatch.setattr(f"streams.state.{name}", value)
    return Table(Priced, "changelog", "nowhere:1")


def test_a_partition_whose_changelog_cannot_be_read_yet_is_loaded_when_it_can(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reader = _changelog_that_fails(times=2)
    table = _loading(monkeypatch, reader, LOAD_RETRY_S=0.0)
    asyncio.run(table.ready(3))
    assert reader.calls == [3, 3, 3]
    assert set(table.rows[3]) == {b"o-1"}  # only what the whole read found
    assert table.cursors[3] == {"orders": 7}
    assert table.loaded() == [3]


def test_a_changelog_that_stays_unreadable_fails_the_load_after_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reader = _changelog_that_fails(times=10**6)
    table = _loading(monkeypatch, reader, LOAD_WITHIN_S=0.05, LOAD_RETRY_S=0.01)
    with pytest.raises(KafkaUnavailable, match="Timed out"):
        asyncio.run(table.ready(3))
    assert len(reader.calls) > 1, "asked once only"
    assert table.loaded() == []


def test_a_cluster_that_refuses_the_worker_fails_the_load_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    refused = KafkaRefused("Kafka at nowhere:1 refused this client: SASL authentication")
    reader = _changelog_that_fails(times=10**6, error=refused)
    table = _loading(monkeypatch, reader)
    with pytest.raises(KafkaRefused):
        asyncio.run(table.ready(3))
    assert reader.calls == [3]


def test_a_load_still_waiting_for_the_cluster_stops_when_the_agent_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reader = _changelog_that_fails(times=3)
    table = _loading(monkeypatch, reader, LOAD_RETRY_S=0.01)

    async def scenario() -> None:
        table.assign({3})
        await asyncio.sleep(0)  # the load's first read fails; it waits to try again
        table.close()
        assert table.loaded() == []
        await table.ready(3)  # asked again: loaded afresh

    asyncio.run(scenario())
    assert set(table.rows[3]) == {b"o-1"}
    assert table.loaded() == [3]


def test_a_partition_revoked_while_its_load_waits_lets_the_agent_go_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reader = _changelog_that_fails(times=10**6)
    table = _loading(monkeypatch, reader, LOAD_RETRY_S=0.01)

    async def scenario() -> tuple[bool, bool]:
        table.assign({3})
        waiting = asyncio.ensure_future(table.ready(3))
        await asyncio.sleep(0.03)  # its reads fail; it waits to try again
        table.assign(set())  # revoked (a rebalance)
        revoked_then = await waiting  # before the fix: CancelledError, the agent's end
        asked_again = await table.ready(3)  # a record of it still in the batch
        return revoked_then, asked_again

    assert asyncio.run(scenario()) == (False, False)
    assert table.loaded() == []
    assert 3 not in table.rows


def test_a_partition_revoked_and_given_back_while_its_load_waits_is_loaded_afresh(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reader = _changelog_that_fails(times=2)
    table = _loading(monkeypatch, reader, LOAD_RETRY_S=0.01)

    async def scenario() -> bool:
        table.assign({3})
        waiting = asyncio.ensure_future(table.ready(3))
        await asyncio.sleep(0)  # the load and the waiter have started
        table.assign(set())
        table.assign({3})  # given back before the waiter saw it go
        return await waiting

    assert asyncio.run(scenario()) is True
    assert set(table.rows[3]) == {b"o-1"}
    assert table.loaded() == [3]


def test_a_waiter_whose_own_task_is_cancelled_still_stops(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    table = _loading(monkeypatch, _changelog_that_fails(times=10**6), LOAD_RETRY_S=0.01)

    async def scenario(revoked_too: bool) -> None:
        table.assign({3})
        waiting = asyncio.ensure_future(table.ready(3))
        await asyncio.sleep(0.02)
        waiting.cancel()  # the worker stopping
        if revoked_too:
            table.assign(set())  # in the same tick: the load is cancelled as well
        with pytest.raises(asyncio.CancelledError):
            await waiting
        table.close()

    asyncio.run(scenario(revoked_too=False))
    asyncio.run(scenario(revoked_too=True))


def test_a_load_that_ends_as_its_partition_goes_is_not_reported_ready(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    table = _loading(monkeypatch, _changelog_that_fails(times=0))

    async def scenario() -> bool:
        table.assign({3})
        waiting = asyncio.ensure_future(table.ready(3))
        load = table._loads[3]
        # The revocation lands after the load ended but before the waiter woke up.
        load.add_done_callback(lambda _: table.assign(set()))
        return await waiting

    assert asyncio.run(scenario()) is False
