"""`ecom demo`: the whole shop comes up, its live page shows it in a real browser while
it runs, every order ends, and everything stops again on SIGTERM."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from ecom.kafka import TopicAdmin
from ecom.topology import Topology
from tests.conftest import KafkaCluster
from tests.support import REPO, free_port, unique, wait_for

pytestmark = pytest.mark.kafka
ORDERS = 40
PRODUCTS = 20
ARTIFACTS = Path(os.environ.get("ECOM_TEST_ARTIFACTS", REPO / "test-artifacts"))


@contextmanager
def browser() -> Iterator[webdriver.Chrome]:
    """Headless Chromium (Debian's chromium and chromium-driver; `make test` installs them)."""
    driver_path = shutil.which("chromedriver")
    assert driver_path, "chromedriver is missing: apt-get install chromium chromium-driver"
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--window-size=1400,1300"):  # fmt: skip
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    try:
        yield driver
    finally:
        driver.quit()


def _page(driver: webdriver.Chrome) -> dict[str, Any]:
    """Read what the page shows in one go (it redraws its tables every second)."""
    return dict(driver.execute_script(PAGE_TEXT))


PAGE_TEXT = """
const text = (id) => document.getElementById(id).textContent;
const rows = (id) => [...document.querySelectorAll(`#${id} tbody tr`)].map(
  (row) => [...row.cells].map((cell) => cell.textContent));
const history = document.getElementById("history").dataset;
return {
  ended: ["confirmed", "cancelled", "expired"].map((id) => Number(text(id)) || 0)
    .reduce((a, b) => a + b, 0),
  first: history.first, last: history.last, stock: rows("stock"), groups: rows("groups"),
  dead: rows("dead"), latest: text("latest"), p99: text("p99"),
  status: document.getElementById("status").className,
};
"""


def test_demo_runs_the_shop_shows_it_live_and_stops(kafka: KafkaCluster, tmp_path: Path) -> None:
    prefix = unique("demo") + "-"
    env = _demo_env(kafka, tmp_path, prefix, free_port()) | {"ECOM_PAYMENT_TIMEOUT_S": "60"}
    out, err = tmp_path / "demo.out", tmp_path / "demo.err"
    args = ["demo", "--orders", str(ORDERS), "--rate", "20", "--seed", "5"]
    with out.open("w") as sink, err.open("w") as errors:
        demo = subprocess.Popen([sys.executable, "-m", "ecom", *args], stdout=sink,
                                stderr=errors, env=env, cwd=REPO, text=True)  # fmt: skip
    try:
        found = wait_for(lambda: re.search(r"the shop, live: (\S+)", out.read_text()), 180,
                         "the demo to print the live page's address")  # fmt: skip
        with browser() as driver:
            driver.get(found.group(1))  # the query key is in the fragment, never sent
            assert "key=" not in driver.current_url, "the page takes the key out of the address"
            # Every order ended, and the lag of the groups measured since (the tail and
            # the lag are sampled apart: the first can be ahead of the second).
            shown = wait_for(lambda: (p := _page(driver))["ended"] == ORDERS and _lag_of(p)
                             >= FLOW_GROUPS and p, 300,
                             "the page to show every order ended and the groups' lag")  # fmt: skip
            _check_page(shown)
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            assert driver.save_screenshot(str(ARTIFACTS / "live-page.png"))
        wait_for(lambda: "press Ctrl-C" in out.read_text(), 120, "the demo's report")
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(120) == 0, err.read_text()[-3000:] + out.read_text()[-2000:]
    finally:
        _clean_up(demo, kafka, prefix)
    _check_report(out.read_text(), tmp_path)


def test_a_service_that_dies_stops_the_demo_naming_it(kafka: KafkaCluster, tmp_path: Path) -> None:
    """The command API dies (SIGKILLed as soon as it started): the demo stops everything
    it started and says which one died, instead of going on without it. (A taken port is
    refused before anything starts.)"""
    prefix = unique("demo") + "-"
    env = _demo_env(kafka, tmp_path, prefix, free_port())
    out = tmp_path / "demo.out"
    try:
        with out.open("w") as sink:
            demo = subprocess.Popen([sys.executable, "-m", "ecom", "demo", "--orders", "5"],
                                    stdout=sink, stderr=subprocess.PIPE, env=env, cwd=REPO,
                                    text=True)  # fmt: skip
        started = wait_for(lambda: re.search(r"started command-api +pid (\d+)", out.read_text()),
                           120, "the demo to start its command API")  # fmt: skip
        os.kill(int(started.group(1)), signal.SIGKILL)
        _, errors = demo.communicate(timeout=300)
    finally:
        _clean_up(demo, kafka, prefix)
    assert demo.returncode == 7, errors[-2000:] + out.read_text()[-2000:]
    assert errors.startswith("error: the demo's command-api exited (code -9)"), errors
    assert out.read_text().strip().splitlines()[-1] == (
        "stopped workers, projections, query-api, command-api"
    )


def _clean_up(demo: subprocess.Popen[str], kafka: KafkaCluster, prefix: str) -> None:
    """Reap a demo a failed test left running, and delete the test's topics."""
    if demo.poll() is None:
        demo.kill()
        demo.wait(30)
    topology = Topology.load(REPO / "topics.yaml", prefix)
    TopicAdmin(kafka.bootstrap).delete([t.name for t in topology.topics()])


def _demo_env(kafka: KafkaCluster, home: Path, prefix: str, commands_port: int) -> dict[str, str]:
    """A demo of the test's own: its topics, home, view and ports."""
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap,
        "ECOM_TOPIC_PREFIX": prefix,
        "ECOM_HOME": str(home),
        "ECOM_TOPICS_FILE": str(REPO / "topics.yaml"),
        "ECOM_STORE": f"sqlite:///{home / 'view.db'}",
        "ECOM_QUERY_URL": f"http://127.0.0.1:{free_port()}",
        "ECOM_COMMANDS_PORT": str(commands_port),
    }


FLOW_GROUPS = {"order-flow-inventory", "order-flow-order", "ecom-projection-orders"}


def _lag_of(page: dict[str, Any]) -> set[str]:
    """The groups whose lag the page shows, without the run's prefix."""
    return {row[0].split("-", 1)[1] for row in page["groups"]}


def _check_page(shown: dict[str, Any]) -> None:
    assert shown["first"] == "0", "sampled before the first order"
    assert shown["last"] == str(ORDERS), "and rose to every order"
    assert len(shown["stock"]) == PRODUCTS
    assert sum(int(row[3]) for row in shown["stock"]) > 0, "units sold"
    assert _lag_of(shown) >= FLOW_GROUPS
    assert any(row[0].endswith("order-flow-dlq") for row in shown["dead"])
    assert re.search(r"Order(Confirmed|Cancelled|Expired) o-", shown["latest"]), shown["latest"]
    assert shown["p99"].endswith("s"), "the time to a final state is shown"
    assert shown["status"] != "bad"


def _check_report(stdout: str, home: Path) -> None:
    outcome = re.search(
        rf"{ORDERS} orders: confirmed (\d+), cancelled (\d+) .*expired (\d+)", stdout
    )
    assert outcome, stdout
    assert sum(int(n) for n in outcome.groups()) == ORDERS
    assert "stock left, scarcest first: " in stdout
    assert re.search(r"projection lag: .*orders 0", stdout), stdout
    stopped = stdout.strip().splitlines()[-1]
    assert stopped == "stopped workers, projections, query-api, command-api"
    assert sorted(p.name for p in (home / ".ecom" / "logs").iterdir()) == [
        "command-api.log", "projections.log", "query-api.log", "workers.log"
    ]  # fmt: skip
