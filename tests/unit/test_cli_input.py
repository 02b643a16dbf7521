"""Bad input on the command line: one line on stderr, the exit code README promises, no
traceback, and nothing written."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from consumers.projections import PROJECTIONS
from consumers.replay import Replay
from consumers.store import open_store
from ecom.errors import BadInput
from ecom.topology import FLOW_SERVICES, Topology
from schemas.codec import check_source
from tests.support import REPO, free_port, run_cli


def _one_line_error(result_stderr: str) -> str:
    assert "Traceback" not in result_stderr
    assert result_stderr.count("\n") == 1, result_stderr
    return result_stderr.strip()


@pytest.mark.parametrize("number", ["99", "0"])
def test_a_generation_the_view_does_not_hold_is_named_with_those_it_does(
    tmp_path: Path, number: str
) -> None:
    url = f"sqlite:///{tmp_path / 'view.db'}"
    with open_store(url) as store:
        store.create_generation(PROJECTIONS["orders"], 1, "active")
        store.create_generation(PROJECTIONS["orders"], 2, "past")
    result = run_cli("query", "--generation", f"orders={number}", "order", "o-1", "--store", url)
    assert result.returncode == 2
    message = _one_line_error(result.stderr)
    assert f"orders has no generation {number}" in message
    assert "it has: 1, 2" in message
    held = run_cli("query", "--generation", "orders=2", "orders", "--store", url)
    assert held.returncode == 0, held.stderr


@pytest.mark.parametrize("until", ["notatime", "-1"])
def test_a_bad_until_leaves_no_generation_behind(tmp_path: Path, until: str) -> None:
    topology = Topology.load(REPO / "topics.yaml", prefix="t-")
    with open_store(f"sqlite:///{tmp_path / 'view.db'}") as store:
        job = Replay(PROJECTIONS["orders"], store, topology, "127.0.0.1:1", lambda _: None)
        with pytest.raises(BadInput, match=r"--until -1|bad date-time 'notatime'"):
            job.run(until)
        assert store.generations("orders") == []


def test_replay_refuses_contradicting_flags_before_opening_the_view(tmp_path: Path) -> None:
    view = tmp_path / "view.db"
    for flags in (["--resume", "--drop"], ["--drop", "--gc"], ["--gc", "--until", "5"]):
        result = run_cli("replay", "orders", *flags, "--store", f"sqlite:///{view}")
        assert result.returncode == 2, flags
        assert "cannot be combined" in result.stderr or "does not go with" in result.stderr
        _one_line_error(result.stderr)
    bad = run_cli("replay", "orders", "--until", "notatime", "--store", f"sqlite:///{view}")
    assert bad.returncode == 2
    assert _one_line_error(bad.stderr).startswith("error: bad date-time 'notatime'")
    assert not view.exists()


@pytest.mark.parametrize(
    "args",
    [
        ["serve", "commands", "--port", "99999"],
        ["serve", "query", "--port", "0"],
        ["serve", "query", "--port", "65536", "--workers", "2"],
        ["projections", "run", "--metrics-port", "99999"],
        ["worker", "all", "--metrics-port", "-1"],
        ["compare", "chain-service", "orders", "--port", "70000", "--seed", "1", "--urls",
         "{}", "--data", "."],
    ],
)  # fmt: skip
def test_a_port_out_of_range_is_refused(args: list[str]) -> None:
    result = run_cli(*args, timeout=30)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "port" in result.stderr.lower()
    assert "is not in the range" in result.stderr


def test_listing_groups_of_a_cluster_that_does_not_answer_fails_with_exit_3() -> None:
    result = run_cli("offsets", "list", "--bootstrap", "127.0.0.1:1", timeout=60)
    assert result.returncode == 3
    assert _one_line_error(result.stderr).startswith("error: cannot reach Kafka at 127.0.0.1:1")
    assert result.stdout == ""


def test_a_cluster_that_does_not_answer_is_said_so_and_leaves_no_replay(tmp_path: Path) -> None:
    """These waited out a 15 s request ("Local: Timed out"), and the replay left a
    generation behind that the next one called interrupted."""
    store_url = f"sqlite:///{tmp_path / 'view.db'}"
    for args in (["offsets", "show", "ecom-projection-orders"], ["replay", "orders", "--store",
                 store_url], ["projections", "run", "orders", "--metrics-port", "0", "--store",
                 store_url]):  # fmt: skip
        result = run_cli(*args, "--bootstrap", "127.0.0.1:1", timeout=60)
        assert result.returncode == 3, result.stderr
        assert _one_line_error(result.stderr).startswith("error: cannot reach Kafka"), args
    with open_store(store_url) as store:
        assert [g.state for g in store.generations("orders")] in ([], ["active"])


def test_a_query_never_creates_the_view_database(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "view.db"
    result = run_cli("query", "order", "o-1", "--store", f"sqlite:///{missing}")
    assert result.returncode == 5
    message = _one_line_error(result.stderr)
    assert message.startswith(f"error: cannot open the view database {missing}: there is none")
    assert not missing.parent.exists()
    with open_store(f"sqlite:///{missing}"):  # the writers still make it
        pass
    assert missing.is_file()
    made = run_cli("query", "order", "o-1", "--store", f"sqlite:///{missing}")
    assert (made.returncode, made.stderr.strip()) == (
        2,
        "error: order o-1 is not in the view (yet)",
    )


def test_listing_or_serving_a_mistyped_view_makes_no_database(tmp_path: Path) -> None:
    """Both made the folders and an empty view; `ecom query` then read it as real."""
    missing = tmp_path / "nowhere" / "view.db"
    listed = run_cli("projections", "list", "--store", f"sqlite:///{missing}")
    assert listed.returncode == 5, listed.stderr
    assert "there is none" in _one_line_error(listed.stderr)
    served = run_cli("serve", "query", "--port", str(free_port()), "--store",
                     f"sqlite:///{missing}", "--bootstrap", "127.0.0.1:1", timeout=60)  # fmt: skip
    assert served.returncode == 5, served.stderr
    assert f"there is no folder {missing.parent}" in _one_line_error(served.stderr)
    assert not missing.parent.exists()


def test_an_unknown_projection_in_generation_is_called_so() -> None:
    unknown = run_cli("query", "--generation", "nope=1", "orders")
    assert unknown.returncode == 2
    assert _one_line_error(unknown.stderr) == (
        "error: bad --generation 'nope=1': unknown projection 'nope'; "
        "known: catalogue, inventory, orders, pricing"
    )
    malformed = run_cli("query", "--generation", "orders=x", "orders")
    assert malformed.returncode == 2
    assert "expected PROJECTION=N" in _one_line_error(malformed.stderr)


def test_asyncapi_check_of_a_missing_file_says_it_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    result = run_cli("asyncapi", "--check", str(missing))
    assert result.returncode == 2
    message = _one_line_error(result.stderr)
    assert message.startswith(f"error: {missing} does not exist")
    assert "stale" not in message


def test_asyncapi_bad_files_are_one_line_and_nothing_is_left(tmp_path: Path) -> None:
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(bytes(range(256)))
    blocker = tmp_path / "a.yaml"
    blocker.write_text("x")
    cases = {
        ("--check", str(binary)): "is stale",
        ("-o", str(blocker / "x.yaml")): "cannot write",
        ("--check", str(binary), "-o", str(tmp_path / "out.yaml")): "give one of them",
    }
    for args, said in cases.items():
        result = run_cli("asyncapi", *args)
        assert result.returncode == 2, result.stderr
        assert said in _one_line_error(result.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.yaml", "bin.yaml"]


def test_worker_all_serves_its_four_after_the_port_given() -> None:
    """Beside a projections runner on the port given, as 9400 and 9401-9404 by default."""
    from ecom.cli.worker import metrics_port_of

    assert [metrics_port_of(s, 38400) for s in FLOW_SERVICES] == [38401, 38402, 38403, 38404]
    assert [metrics_port_of(s, None) for s in FLOW_SERVICES] == [9401, 9402, 9403, 9404]
    assert {metrics_port_of(s, 0) for s in FLOW_SERVICES} == {0}, "off"
    beyond = run_cli("worker", "all", "--metrics-port", "65533", timeout=30)
    assert beyond.returncode == 2
    assert "must be 65535 or below" in beyond.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["compare", "sync-async", "--rate", "nan"],
        ["compare", "sync-async", "--seconds", "inf"],
        ["compare", "queue-log", "--work-ms", "nan"],
        ["simulate", "--rate", "inf"],
    ],
)
def test_nan_and_infinity_are_refused(args: list[str]) -> None:
    result = run_cli(*args, timeout=30)
    assert result.returncode == 2, result.stderr
    assert "is not a finite number" in result.stderr


def test_compare_checks_only_what_the_chosen_runs_need() -> None:
    """--down-s only bounds payment-down, and --records only the workers of the checks
    chosen (replay runs one): both went on to Kafka here, which is not there."""
    unreachable = ("--bootstrap", "127.0.0.1:1")
    normal = run_cli("compare", "sync-async", "--scenario", "normal", "--seconds", "4",
                     *unreachable, timeout=60)  # fmt: skip
    assert "does not fit" not in normal.stderr
    assert normal.returncode == 3, normal.stderr
    replay = run_cli("compare", "queue-log", "--check", "replay", "--records", "10",
                     *unreachable, timeout=60)  # fmt: skip
    assert "too few" not in replay.stderr
    assert replay.returncode == 3, replay.stderr
    crash = run_cli("compare", "queue-log", "--check", "crash", "--records", "10")
    assert (crash.returncode, "too few for 4 workers" in crash.stderr) == (2, True)


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--rate", "10000", "--seconds", "600"], "offers 6,000,000 orders per run"),
        (["--chart", "out.txt"], "name a file ending in one of"),
    ],
)
def test_compare_refuses_a_run_it_cannot_finish_before_it_starts(args: list[str],
                                                                 said: str) -> None:  # fmt: skip
    """Both were found out only after minutes: memory filling with orders never offered,
    and a chart format matplotlib does not write, after the whole run."""
    result = run_cli("compare", "sync-async", "--bootstrap", "127.0.0.1:1", *args, timeout=60)
    assert result.returncode == 2, result.stderr
    assert said in result.stderr


def test_a_worker_says_kafka_is_unreachable_in_a_line() -> None:
    """It printed aiokafka's traceback and exited 1; `worker all` restarted it for 40 s."""
    for args in (["worker", "order", "--metrics-port", "0"], ["worker", "all", "--metrics-port",
                 "0"], ["notifications", "run", "--workers", "1"]):  # fmt: skip
        result = run_cli(*args, "--bootstrap", "127.0.0.1:1", timeout=60)
        assert result.returncode == 3, result.stderr
        assert _one_line_error(result.stderr).startswith("error: cannot reach Kafka")


def test_worker_all_refuses_a_taken_metrics_port_before_starting_anyone() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        result = run_cli("worker", "all", "--bootstrap", "127.0.0.1:1", "--metrics-port",
                         str(taken - 2), timeout=60)  # fmt: skip
    assert result.returncode == 4, result.stderr
    assert f"127.0.0.1:{taken}" in _one_line_error(result.stderr)


def test_a_demo_on_taken_ports_refuses_before_touching_anything(tmp_path: Path) -> None:
    """A second demo replaced the first one's keys and sent orders into its shop."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        env = {"ECOM_HOME": str(tmp_path), "ECOM_TOPICS_FILE": str(REPO / "topics.yaml"),
               "ECOM_QUERY_URL": f"http://127.0.0.1:{taken}", "ECOM_METRICS_PORT": "0"}  # fmt: skip
        result = run_cli("demo", "--bootstrap", "127.0.0.1:1", env=env, timeout=60)
    assert result.returncode == 4, result.stderr
    assert _one_line_error(result.stderr) == (
        f"error: cannot run the demo: 127.0.0.1:{taken} is taken (Address already in use; "
        "another demo?)"
    )
    assert list(tmp_path.iterdir()) == []  # no keys made
    high = run_cli("demo", "--bootstrap", "127.0.0.1:1", env=env | {"ECOM_METRICS_PORT": "65533"})
    assert high.returncode == 2, high.stderr  # was an OverflowError's traceback
    assert "which must be 65535 or below" in _one_line_error(high.stderr)


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("ECOM_MAIL_FAILURE_SHARE", "abc", "valid number"),
        ("ECOM_MAIL_FAILURE_SHARE", "2", "less than or equal to 1"),
        ("ECOM_RESTART_BACKOFF_S", "abc", "valid number"),
    ],
)
def test_a_setting_that_does_not_parse_is_named_in_a_line(variable: str, value: str,
                                                          said: str) -> None:  # fmt: skip
    result = run_cli("notifications", "run", env={variable: value})
    assert result.returncode == 2, result.stderr
    message = _one_line_error(result.stderr)
    assert message.startswith(f"error: {variable}={value!r}: ")
    assert said in message


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("", "error: --source is empty: give a URI-reference such as /ecomstream/cli"),
        ("/shop\ncli", "error: --source '/shop\\ncli' is not a URI-reference (RFC 3986)"),
        ("/my shop", "error: --source '/my shop' is not a URI-reference (RFC 3986)"),
        ("/caf\u00e9", "error: --source '/caf\u00e9' is not a URI-reference (RFC 3986)"),
        ("1shop:cli", "error: --source '1shop:cli' is not a URI-reference (RFC 3986): a colon"),
    ],
)
def test_a_cloudevents_source_that_is_no_uri_reference_is_refused_before_kafka(
    source: str, problem: str
) -> None:
    data = '{"product_id": "p-1", "quantity": 1}'
    result = run_cli("produce", "StockAdjusted", "--source", source, "--data", data,
                     "--bootstrap", "127.0.0.1:1", timeout=30)  # fmt: skip
    assert result.returncode == 2  # not 3: nothing asked Kafka anything
    assert _one_line_error(result.stderr).startswith(problem)


@pytest.mark.parametrize(
    "source", ["/ecomstream/cli", "urn:shop:cli", "https://shop.example/a?b#c", "shop", "%2Fx"]
)
def test_a_uri_reference_is_a_source(source: str) -> None:
    assert check_source(source) == source


def test_files_that_are_not_utf8_are_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"\xff\xfe\n")
    down = ("--bootstrap", "127.0.0.1:1")  # refused before Kafka is asked anything
    runs = {
        f"--from-file {bad}": ("offsets", "reset", "g", "--from-file", str(bad), *down),
        f"--data {bad}": ("produce", "StockAdjusted", "--data", f"@{bad}", *down),
        f"{bad}:1: not": ("produce", "--file", str(bad), *down),
        f"{bad} is not": ("topics", "apply", "--dry-run", "--file", str(bad), *down),
    }
    for expected, args in runs.items():
        result = run_cli(*args, timeout=30)
        assert result.returncode == 2, (args, result.stderr)
        assert _one_line_error(result.stderr).startswith(f"error: {expected}"), result.stderr
        assert "UTF-8 text" in result.stderr
    credentials = run_cli("topics", "describe", *down, env={"ECOM_KAFKA_CREDENTIALS": str(bad)})
    assert credentials.returncode == 2
    assert _one_line_error(credentials.stderr) == (
        f"error: {bad} is not UTF-8 text (byte 0: invalid start byte)"
    )
