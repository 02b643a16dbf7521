"""bench produce hands ProducerPerformance our own records, in a form its payload file keeps."""

from __future__ import annotations

from pathlib import Path

from bench.produce import PAYLOADS, payload_file, realistic_events, record_size
from ecom.topology import Topology
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
    digits = len(str(payloads.keys - 1))
    assert abs(size - digits - ours) <= 0.02 * ours, "the tool's records are not our size"


def test_the_tool_draws_from_as_many_keys_as_the_events_have() -> None:
    topology = Topology.load(REPO / "topics.yaml")
    events = realistic_events(2000)
    keys = {str(getattr(e, topology.for_event(e.event_type).key_field(e.event_type)))
            for e in events}  # fmt: skip
    payloads, _ = payload_file(events, topology, Path("/dev/null"))
    assert payloads.keys == len(keys) > 100
