"""bench produce hands ProducerPerformance our own records, in a form its payload file keeps."""

from __future__ import annotations

from pathlib import Path

from bench.produce import (
    PAYLOADS,
    SOURCE,
    _digits,
    _wire,
    payload_file,
    realistic_events,
    record_size,
)
from ecom.topology import Topology
from producers.producer import EventProducer
from schemas import Codec

REPO = Path(__file__).resolve().parents[2]


def _read_as_the_tool_does(path: Path) -> list[bytes]:
    """ProducerPerformance decodes the file as UTF-8 and splits it at newlines."""
    return [line.encode() for line in path.read_bytes().decode("utf-8", "replace").split("\n")]


def test_every_sampled_record_is_one_payload_of_its_own_size(tmp_path: Path) -> None:
    topology = Topology.load(REPO / "topics.yaml")
    events = realistic_events(3 * PAYLOADS)
    payloads, size = payload_file(events, topology, tmp_path / "payloads")
    written = tmp_path.joinpath("payloads").read_bytes().split(b"\n")
    assert _read_as_the_tool_does(payloads.path) == written, "a byte changed on decoding"
    assert len(written) == PAYLOADS
    assert all(line for line in written), "an empty payload"
    ours = record_size(events, Codec(), topology)
    assert abs(size - _digits(payloads.keys) - ours) <= 0.02 * ours, "not our records' size"


def test_the_tool_draws_from_as_many_keys_as_the_events_have() -> None:
    topology = Topology.load(REPO / "topics.yaml")
    events = realistic_events(2000)
    keys = {str(getattr(e, topology.for_event(e.event_type).key_field(e.event_type)))
            for e in events}  # fmt: skip
    payloads, _ = payload_file(events, topology, Path("/dev/null"))
    assert payloads.keys == len(keys) > 100


class _Recorder:
    """Stands in for the Kafka producer: keeps what publish hands it."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, str, list[tuple[str, bytes]]]] = []

    def produce(self, topic: str, value: bytes, key: str, headers: list[tuple[str, bytes]],
                **_: object) -> None:  # fmt: skip
        self.sent.append((topic, value, key, headers))


def test_the_payloads_hold_the_bytes_our_producer_sends() -> None:
    topology = Topology.load(REPO / "topics.yaml")
    producer = EventProducer(topology, "127.0.0.1:1", SOURCE)
    recorder = _Recorder()
    producer.producer = recorder  # type: ignore[assignment]
    codec = Codec()
    for event in realistic_events(300):
        producer.publish(event)
        _, value, key, head = recorder.sent[-1]
        sent = key.encode() + b"".join(name.encode() + data for name, data in head) + value
        assert _wire(event, codec, key) == sent


def test_the_tools_mean_key_length_counts_every_integer_below_the_range() -> None:
    for count in (1, 9, 10, 11, 100, 1234, 180_792):
        assert _digits(count) == sum(len(str(i)) for i in range(count)) / count
