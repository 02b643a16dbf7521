"""`ecom compare sync-async`: the same shop through the synchronous chain and through the
event flow, with the same seed and offered rate, in four scenarios:

    normal             nothing goes wrong
    payment-slow       the payment gateway takes 500 ms per call
    payment-down       the payment service (the chain's, or the payment worker) is stopped
                       for --down-s seconds, a quarter into the run
    inventory-restart  the inventory service (or worker) is killed and started again,
                       a quarter into the run

Per scenario and design: orders offered, accepted (the client got a yes: a 2xx from the
chain, Kafka's acknowledgement of OrderCreated for the flow), rejected at the door,
completed (reached a final state: confirmed or cancelled), lost (accepted and never
final), p50/p99 from offering an order to its final state and to the client's answer,
and recovery: from the fault's end (the service started again) until the first order
offered after it is confirmed (so it went through every service).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import httpx

from bench.base import free_port, percentile, wait_until
from bench.flow import Finals, running_flow, still_running
from chain.services import SERVICES as CHAIN_SERVICES
from ecom.errors import BadInput
from ecom.kafka import Outcome, scratch_topology
from ecom.kafka.producer import Delivery
from ecom.process import Children, Spec
from ecom.topology import Topology
from producers.producer import EventProducer
from producers.simulate import Shop, ShopPlan
from schemas import Event, OrderCreated

Report = Callable[[str], None]
SCENARIOS = ("normal", "payment-slow", "payment-down", "inventory-restart")
SLOW_GATEWAY_MS = 500
DECLINE_SHARE = 0.2
CLIENT_TIMEOUT_S = 10.0


MAX_ORDERS = 100_000  # per scenario and design: every order is built before the run


@dataclass(frozen=True)
class Setup:
    """One comparison's knobs, the same for both designs."""

    rate: float
    seconds: float
    down_s: float
    seed: int

    @property
    def orders(self) -> int:
        return max(1, int(self.rate * self.seconds))

    @property
    def fault_at(self) -> float:
        return self.seconds / 4

    def plan(self) -> ShopPlan:
        """The shop: one warm-up order, then the measured ones; stock plentiful enough that
        what fails is the infrastructure, scarce enough that some orders are refused."""
        return ShopPlan(users=500, products=50, orders=self.orders + 1, seed=self.seed,
                        cancel_share=0.0, min_stock=20, max_stock=400)  # fmt: skip


@dataclass
class Order:
    """What happened to one offered order."""

    offered_at: float
    answered_at: float | None = None
    accepted: bool = False
    final_at: float | None = None
    status: str | None = None


@dataclass(frozen=True)
class Row:
    """One line of the comparison."""

    scenario: str
    design: str  # "sync" or "async"
    offered: int
    accepted: int
    rejected: int
    completed: int
    lost: int
    p50_ms: float | None  # offered -> final state
    p99_ms: float | None
    answer_p50_ms: float | None  # offered -> the client's answer
    answer_p99_ms: float | None
    recovery_s: float | None
    confirmed: int = 0


@dataclass
class Fault:
    """A scenario's fault, as actions at times from the start of the offered load."""

    actions: list[tuple[float, Callable[[], object]]] = field(default_factory=list)
    started_at: float | None = None  # monotonic time the service was stopped or killed
    ended_at: float | None = None  # monotonic time the service was started again


def reference_and_orders(setup: Setup) -> tuple[list[Event], OrderCreated, list[OrderCreated]]:
    """The shop's reference data, a warm-up order and the measured orders."""
    shop = Shop(setup.plan())
    reference = list(shop.reference_events())
    orders = [e for e in shop.order_events() if isinstance(e, OrderCreated)]
    return reference, orders[0], orders[1:]


def compare(scenarios: list[str], setup: Setup, topology: Topology, bootstrap: str,
            home: Path, topics_file: Path, report: Report) -> list[Row]:  # fmt: skip
    """Run every scenario through both designs; return the rows."""
    rows = []
    for scenario in scenarios:
        for design in ("sync", "async"):
            report(f"{scenario}: {design} ...")
            folder = home / f"{scenario}-{design}"
            shutil.rmtree(folder, ignore_errors=True)  # same seed, same shop: start afresh
            folder.mkdir(parents=True)
            env = _env(scenario, topics_file)
            if design == "sync":
                row = run_sync(scenario, setup, folder, env)
            else:
                row = run_async(scenario, setup, topology, bootstrap, folder, env)
            report(f"  {_line(row)}")
            rows.append(row)
    return rows


# -- the synchronous chain ---------------------------------------------------------------


def run_sync(scenario: str, setup: Setup, home: Path, env: dict[str, str]) -> Row:
    """Run one scenario through the four HTTP services."""
    _, warm_up, orders = reference_and_orders(setup)
    ports = {name: free_port() for name in CHAIN_SERVICES}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    specs = {
        name: Spec(
            f"chain-{name}",
            (
                "compare",
                "chain-service",
                name,
                "--port",
                str(port),
                "--seed",
                str(setup.seed),
                "--urls",
                json.dumps(urls),
                "--data",
                str(home),
            ),
            env,
            home / f"chain-{name}.log",
        )
        for name, port in ports.items()
    }
    with Children() as children:
        for spec in specs.values():
            children.start(spec)
        for name, url in urls.items():
            _wait_answering(url, partial(still_running, children, specs[name]))
        by_name = {specs[n].name: urls[n] for n in specs}
        fault = _fault(scenario, setup, children, specs["payment"], specs["inventory"], by_name)
        tally = asyncio.run(_offer_sync(urls["orders"], warm_up, orders, setup, fault))
    return _row(scenario, "sync", tally, fault)


async def _offer_sync(url: str, warm_up: OrderCreated, orders: list[OrderCreated],
                      setup: Setup, fault: Fault) -> dict[str, Order]:  # fmt: skip
    limits = httpx.Limits(max_connections=1000)
    async with httpx.AsyncClient(base_url=url, timeout=CLIENT_TIMEOUT_S, limits=limits) as client:
        await client.post("/orders", json=warm_up.model_dump(mode="json"))
        tally = {o.order_id: Order(0.0) for o in orders}
        start = time.monotonic()
        faults = asyncio.ensure_future(_run_faults(fault, start))
        tasks = []
        for number, order in enumerate(orders):
            await asyncio.sleep(max(0.0, start + number / setup.rate - time.monotonic()))
            tasks.append(asyncio.ensure_future(_post(client, order, tally[order.order_id])))
        await asyncio.gather(*tasks, faults)
    return tally


async def _post(client: httpx.AsyncClient, order: OrderCreated, seen: Order) -> None:
    seen.offered_at = time.monotonic()
    try:
        answer = await client.post("/orders", json=order.model_dump(mode="json"))
    except httpx.HTTPError:
        seen.answered_at = time.monotonic()
        return
    seen.answered_at = time.monotonic()
    if answer.status_code == 200:
        seen.accepted = True
        seen.final_at = seen.answered_at  # the chain answers with the final state
        seen.status = answer.json()["status"]


async def _run_faults(fault: Fault, start: float) -> None:
    for at, action in fault.actions:
        await asyncio.sleep(max(0.0, start + at - time.monotonic()))
        await asyncio.to_thread(action)


# -- the event flow ------------------------------------------------------------------------


def run_async(scenario: str, setup: Setup, topology: Topology, bootstrap: str, home: Path,
              env: dict[str, str]) -> Row:  # fmt: skip
    """Run one scenario through the four order-flow workers, on scratch topics."""
    reference, warm_up, orders = reference_and_orders(setup)
    env = {**env, "ECOM_GATEWAY_LEDGER": str(home / "ledger.db")}
    with (
        scratch_topology(topology, bootstrap, "cmp") as scratch,
        running_flow(
            scratch, bootstrap, env, "/ecomstream/compare", reference, warm_up, home
        ) as flow,  # fmt: skip
    ):
        specs = flow.specs
        fault = _fault(scenario, setup, flow.children, specs["payment"], specs["inventory"], {})
        tally = _offer_async(flow.producer, orders, setup, fault)
        _wait_finals(tally, flow.finals, setup)
    return _row(scenario, "async", tally, fault)


def _offer_async(producer: EventProducer, orders: list[OrderCreated], setup: Setup,
                 fault: Fault) -> dict[str, Order]:  # fmt: skip
    tally = {o.order_id: Order(0.0) for o in orders}
    start = time.monotonic()
    faults = threading.Thread(target=lambda: asyncio.run(_run_faults(fault, start)), daemon=True)
    faults.start()
    for number, order in enumerate(orders):
        # Wait by polling, so each acknowledgement is noted when it comes, not at the next send.
        while (wait := start + number / setup.rate - time.monotonic()) > 0:
            producer.poll(min(wait, 0.005))
        seen = tally[order.order_id]
        seen.offered_at = time.monotonic()
        producer.publish(order, on_outcome=_acknowledged(seen))
        producer.poll(0)  # a driver behind schedule still notes acknowledgements as they come
    producer.flush()
    faults.join()
    return tally


def _acknowledged(seen: Order) -> Callable[[Outcome], None]:
    def note(outcome: Outcome) -> None:
        seen.answered_at = time.monotonic()
        seen.accepted = isinstance(outcome, Delivery)

    return note


def _wait_finals(tally: dict[str, Order], finals: Finals, setup: Setup) -> None:
    """Wait until every accepted order is final (or give up: those are the lost ones)."""
    accepted = [k for k, o in tally.items() if o.accepted]
    deadline = time.monotonic() + 120 + setup.orders / 5
    while time.monotonic() < deadline and not all(k in finals.arrived for k in accepted):
        time.sleep(0.05)
    for order_id, seen in tally.items():
        if order_id in finals.arrived:
            seen.final_at, outcome = finals.arrived[order_id]
            seen.status = outcome.removeprefix("Order").lower().split(" ")[0]


# -- faults, shared --------------------------------------------------------------------


def _fault(scenario: str, setup: Setup, children: Children, payment: Spec, inventory: Spec,
           urls: dict[str, str]) -> Fault:  # fmt: skip
    """The scenario's fault as actions on the design's processes (urls: the HTTP ones)."""
    fault = Fault()

    def begin(action: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            fault.started_at = time.monotonic()
            action()

        return run

    def start_again(spec: Spec) -> None:
        children.start(spec)
        fault.ended_at = time.monotonic()  # the outage is over; recovery counts from here
        if spec.name in urls:
            _wait_answering(urls[spec.name])

    if scenario == "payment-down":
        fault.actions = [
            (setup.fault_at, begin(lambda: children.stop(payment.name))),
            (setup.fault_at + setup.down_s, lambda: start_again(payment)),
        ]
    elif scenario == "inventory-restart":

        def restart() -> None:
            children.kill(inventory.name)
            start_again(inventory)

        fault.actions = [(setup.fault_at, begin(restart))]
    return fault


def _env(scenario: str, topics_file: Path) -> dict[str, str]:
    latency = SLOW_GATEWAY_MS if scenario == "payment-slow" else 5
    return {
        "ECOM_TOPICS_FILE": str(topics_file),
        "ECOM_GATEWAY_LATENCY_MS": str(latency),
        "ECOM_GATEWAY_DECLINE_SHARE": str(DECLINE_SHARE),
        # Long enough that an outage delays payments instead of expiring the orders.
        "ECOM_PAYMENT_TIMEOUT_S": "600",
        "ECOM_METRICS_PORT": "0",
    }


# -- results ---------------------------------------------------------------------------


def _row(scenario: str, design: str, tally: dict[str, Order], fault: Fault) -> Row:
    orders = list(tally.values())
    accepted = [o for o in orders if o.accepted]
    final = [o for o in accepted if o.final_at is not None]
    to_final = sorted((o.final_at - o.offered_at) * 1000 for o in final if o.final_at)
    answered = [o for o in orders if o.answered_at is not None]
    to_answer = sorted((o.answered_at - o.offered_at) * 1000 for o in answered if o.answered_at)
    return Row(
        scenario=scenario,
        design=design,
        offered=len(orders),
        accepted=len(accepted),
        rejected=len(orders) - len(accepted),
        completed=len(final),
        lost=len(accepted) - len(final),
        p50_ms=_ms(to_final, 0.50),
        p99_ms=_ms(to_final, 0.99),
        answer_p50_ms=_ms(to_answer, 0.50),
        answer_p99_ms=_ms(to_answer, 0.99),
        recovery_s=_recovery(orders, fault),
        confirmed=sum(1 for o in final if o.status == "confirmed"),
    )


def _recovery(orders: list[Order], fault: Fault) -> float | None:
    """From the fault's end until the first order offered after the fault began is
    confirmed: such an order needed the failed service after it came back. (An order
    already past that service confirms at once and says nothing; counting from the first
    order offered after the end would depend on how long stopping and starting took.)"""
    if fault.started_at is None or fault.ended_at is None:
        return None
    began, ended = fault.started_at, fault.ended_at
    confirmed = [(o.offered_at, o.final_at) for o in orders
                 if o.status == "confirmed" and o.final_at is not None]  # fmt: skip
    after = [final for offered, final in confirmed if offered >= began and final >= ended]
    return round(min(after) - ended, 2) if after else None


def _ms(values: list[float], share: float) -> float | None:
    return round(percentile(values, share), 1) if values else None


def _line(row: Row) -> str:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:,.0f} ms"

    recovery = "-" if row.recovery_s is None else f"{row.recovery_s:.1f} s"
    return (
        f"offered {row.offered}, accepted {row.accepted}, rejected {row.rejected}, "
        f"completed {row.completed} (confirmed {row.confirmed}), lost {row.lost}; "
        f"to final p50 {ms(row.p50_ms)} p99 {ms(row.p99_ms)}; "
        f"answer p50 {ms(row.answer_p50_ms)} p99 {ms(row.answer_p99_ms)}; recovery {recovery}"
    )


def table(rows: list[Row]) -> str:
    """The rows side by side, as a Markdown table."""
    head = ("scenario", "design", "offered", "accepted", "rejected", "completed", "lost",
            "p50 to final", "p99 to final", "p99 answer", "recovery")  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = (r.scenario, r.design, r.offered, r.accepted, r.rejected, r.completed, r.lost,
                 _fmt_ms(r.p50_ms), _fmt_ms(r.p99_ms), _fmt_ms(r.answer_p99_ms),
                 "-" if r.recovery_s is None else f"{r.recovery_s:.1f} s")  # fmt: skip
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def _fmt_ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1000:.1f} s" if value >= 1000 else f"{value:.0f} ms"


def as_json(rows: list[Row]) -> str:
    return json.dumps([asdict(r) for r in rows], indent=2)


# -- helpers ---------------------------------------------------------------------------


def _wait_answering(
    url: str, alive: Callable[[], bool] = lambda: True, timeout: float = 60
) -> None:
    def answers() -> bool:
        try:
            return alive() and httpx.get(f"{url}/livez", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(answers, timeout, f"{url} to answer")


def check_charts(path: Path) -> None:
    """Refuse --chart before a run, not after it: matplotlib missing, nowhere to write."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as error:
        raise BadInput("--chart needs matplotlib: pip install 'ecomstream[charts]'") from error
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise BadInput(f"--chart {path}: cannot make its folder: {error.strerror}") from error
    if not os.access(path.parent, os.W_OK):
        raise BadInput(f"--chart {path}: its folder is not writable")
    from matplotlib.backend_bases import FigureCanvasBase

    kinds = FigureCanvasBase.get_supported_filetypes()
    if path.suffix.lstrip(".").lower() not in kinds:
        raise BadInput(f"--chart {path}: name a file ending in one of "
                       f"{', '.join('.' + k for k in sorted(kinds))}")  # fmt: skip


def chart(rows: list[Row], path: Path) -> None:
    """Draw the rows as a PNG: per scenario, the two designs side by side."""
    check_charts(path)
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    scenarios = list(dict.fromkeys(r.scenario for r in rows))
    by = {(r.scenario, r.design): r for r in rows}
    panels: list[tuple[str, Callable[[Row], float | None], str | None]] = [
        ("orders rejected at the door", lambda r: r.rejected, None),
        ("p99 to the client's answer (ms)", lambda r: r.answer_p99_ms, "log"),
        ("p99 to the final state (ms)", lambda r: r.p99_ms, "log"),
        ("recovery after the fault (s)", lambda r: r.recovery_s, None),
    ]
    figure, axes = pyplot.subplots(2, 2, figsize=(11, 7))
    for axis, (title, value, scale) in zip(axes.flat, panels, strict=True):
        for offset, design, colour in ((-0.2, "sync", "#c0504d"), (0.2, "async", "#4f81bd")):
            values = [value(by[s, design]) if (s, design) in by else None for s in scenarios]
            label = "synchronous chain" if design == "sync" else "event flow"
            axis.bar([i + offset for i in range(len(scenarios))],
                     [math.nan if v is None else v for v in values], 0.4, label=label,
                     color=colour)  # fmt: skip
            for i, v in enumerate(values):  # not measured: no bar, said so, never a zero
                if v is None:
                    axis.annotate("none", (i + offset, 0.02), xycoords=("data", "axes fraction"),
                                  ha="center", fontsize=7)  # fmt: skip
        axis.set_title(title)
        axis.set_xticks(range(len(scenarios)), scenarios, fontsize=8)
        if scale:
            axis.set_yscale(scale)
    axes.flat[0].legend()
    offered = rows[0].offered if rows else 0
    figure.suptitle(f"ecom compare sync-async: {offered} orders per scenario and design")
    figure.tight_layout()
    try:
        figure.savefig(path, dpi=100)
    except OSError as error:
        raise BadInput(f"--chart {path}: {error.strerror or error}") from error
    finally:
        pyplot.close(figure)
