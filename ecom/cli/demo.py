"""`ecom demo` (what `make demo` runs): the whole shop, end to end, on this machine.

It applies topics.yaml, starts the four order-flow workers, the projection worker, the
query API and the command API (each its own process, logs in .ecom/logs/), then runs a
simulated shop with more demand than stock, waits until every order has reached a
final state, and prints a report and where to look. On Ctrl-C (or with --exit, after
the report) it stops everything it started.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click

from consumers.queries import QueryView
from consumers.store import open_store
from ecom import metrics
from ecom.apikeys import SCOPES
from ecom.cli.context import context
from ecom.cli.keys import open_keys
from ecom.cli.output import FiniteRange, bootstrap_option
from ecom.cli.projections import METRICS_PORT
from ecom.cli.worker import check_metrics_ports
from ecom.errors import PortInUse, ProcessFailed
from ecom.kafka import GroupAdmin, GroupInfo, TopicAdmin, security_for
from ecom.process import Children, Spec
from ecom.settings import Settings
from ecom.topology import FLOW_SERVICES, Topology
from producers.producer import EventProducer
from producers.simulate import Shop, ShopPlan
from schemas import OrderCreated, ProductCreated
from schemas.rules.order import FINAL

Report = Callable[[str], None]


@click.command()
@bootstrap_option
@click.option("--orders", type=click.IntRange(1), default=1000, show_default=True)
@click.option(
    "--rate",
    type=FiniteRange(min=0, min_open=True),
    default=100.0,
    show_default=True,
    help="Orders per second.",
)
@click.option("--users", type=click.IntRange(1), default=200, show_default=True)
@click.option("--products", type=click.IntRange(1), default=20, show_default=True)
@click.option(
    "--stock",
    "max_stock",
    type=click.IntRange(1),
    default=60,
    show_default=True,
    help="At most this many units per product (scarce on purpose).",
)
@click.option("--seed", type=int, help="Same seed, same shop (default: a new one each run).")
@click.option("--exit", "leave", is_flag=True, help="Stop everything after the report.")
def demo(
    bootstrap: str | None, orders: int, rate: float, users: int, products: int,
    max_stock: int, seed: int | None, leave: bool,
) -> None:  # fmt: skip
    """Run the whole shop: workers, projections, both APIs, and simulated customers."""

    ctx = context(bootstrap)  # SIGTERM stops what we started, as Ctrl-C does (ecom.cli)
    chosen = seed if seed is not None else default_seed()
    low = max(1, max_stock // 10)
    plan = ShopPlan(
        users, products, orders, chosen, cancel_share=0.1, min_stock=low, max_stock=max_stock
    )
    run(ctx.topology, ctx.bootstrap, ctx.settings, plan, rate, not leave, click.echo)


Check = Callable[[], None]


@contextmanager
def services(settings: Settings, bootstrap: str, report: Report) -> Iterator[Check]:
    """Start the workers, the projections and both APIs; stop them all afterwards. Yield a
    check that raises ProcessFailed once one of them has exited: the shop cannot go on."""
    logs = settings.home / ".ecom" / "logs"
    query_port = _port(settings.query_url)
    commands = {
        "workers": ("worker", "all"),
        "projections": ("projections", "run"),
        "query-api": ("serve", "query", "--port", query_port),
        "command-api": ("serve", "commands", "--port", str(settings.commands_port)),
    }
    # The store URL may hold a password: children get it from the environment, never argv.
    env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "ECOM_STORE": settings.store_url}
    with Children() as children:
        for name, args in commands.items():
            log = logs / f"{name}.log"
            child = children.start(Spec(name, args, env, log))
            report(f"  started {name:<12} pid {child.pid}, log {log}")

        def check() -> None:
            gone = children.exited()
            if gone is not None:
                raise ProcessFailed(
                    f"the demo's {gone.spec.name} exited (code {gone.process.returncode}); "
                    f"its log: {gone.spec.log}"
                )

        try:
            yield check
        finally:
            children.stop_all(grace=60)
            report(f"stopped {', '.join(commands)}")


def run(topology: Topology, bootstrap: str, settings: Settings, plan: ShopPlan, rate: float,
        stay: bool, report: Report) -> None:  # fmt: skip
    """Run the demo; with stay, keep the services up until Ctrl-C."""
    _check_ports(settings)
    report(f"applying {settings.topics_path.name} to {bootstrap} ...")
    admin = TopicAdmin(bootstrap)
    admin.execute(admin.plan(topology, dev=admin.broker_count() < 3))
    auth = _demo_keys(settings)
    report("starting the services:")
    with services(settings, bootstrap, report) as check:
        _wait_watching(settings.query_url, auth["queries"], report, check)
        _wait_flow_joined(topology, bootstrap, report, check)
        report(f"\nthe shop, live: {settings.query_url}/#key={auth['queries']}")
        orders, products = _shop(topology, bootstrap, plan, rate, report, check)
        view = QueryView(open_store(settings.store_url))
        _wait_final(view, orders, report, check)
        check()
        _report(view, orders, products, report)
        if stay:
            _where_to_look(orders[0], settings, auth, report)
            report("\nthe shop keeps running: press Ctrl-C to stop everything")
            _wait_for_interrupt(check)
        view.store.close()


def _shop(
    topology: Topology, bootstrap: str, plan: ShopPlan, rate: float, report: Report,
    check: Check,
) -> tuple[list[str], list[str]]:  # fmt: skip
    """Play the shop; return its order ids and product ids."""
    shop = Shop(plan)
    stock = f"{plan.min_stock}-{plan.max_stock}"
    report(
        f"\nsimulated shop (seed {plan.seed}): {plan.users} users, {plan.products} products "
        f"with {stock} units each, {plan.orders} orders at {rate:g}/s"
    )
    orders: list[str] = []
    products: list[str] = []
    # The simulated customers publish as the CLI producer, not as the demo's admin.
    customer = security_for(bootstrap, "producer").librdkafka()
    with EventProducer(topology, bootstrap, "/ecomstream/demo", None, **customer) as producer:
        for event in shop.reference_events():
            if isinstance(event, ProductCreated):
                products.append(event.product_id)
            producer.publish(event)
        producer.flush()
        start = time.monotonic()
        for event in shop.order_events():
            if isinstance(event, OrderCreated):
                check()
                if (wait := start + len(orders) / rate - time.monotonic()) > 0:
                    time.sleep(wait)
                orders.append(event.order_id)
            producer.publish(event)
            producer.poll(0)
    return orders, products


def _statuses(view: QueryView, orders: list[str]) -> Counter[str]:
    wanted = set(orders)
    counts: Counter[str] = Counter()
    after = None
    while True:
        page = view.orders(None, after, 500)["data"]
        counts.update(o["status"] for o in page["items"] if o["order_id"] in wanted)
        after = page["next"]
        if after is None:
            return counts


def _wait_final(view: QueryView, orders: list[str], report: Report, check: Check,
                timeout: float = 600) -> None:  # fmt: skip
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        check()
        counts = _statuses(view, orders)
        line = ", ".join(f"{status} {n}" for status, n in sorted(counts.items()))
        if line != last:
            report(f"  {line}")
            last = line
        if sum(counts[s] for s in FINAL) >= len(orders) or time.monotonic() > deadline:
            return
        time.sleep(1)


def _report(view: QueryView, orders: list[str], products: list[str], report: Report) -> None:
    counts = _statuses(view, orders)
    reasons: Counter[str] = Counter()
    for order_id in orders:
        answer = view.order(order_id)
        if answer and answer["data"] and answer["data"]["status"] == "cancelled":
            reasons[answer["data"]["reason"]] += 1
    why = ", ".join(f"{reason} {n}" for reason, n in reasons.most_common())
    report(
        f"\n{len(orders)} orders: confirmed {counts['confirmed']}, "
        f"cancelled {counts['cancelled']} ({why}), expired {counts['expired']}"
    )
    answers = [view.product(product_id) for product_id in products]
    ours = [answer["data"] for answer in answers if answer and answer["data"]]
    scarce = sorted(ours, key=lambda p: (p["stock"] or {}).get("available", 0))[:5]
    left = [f"{p['product_id']} {_left(p['stock'])}" for p in scarce if p["stock"]]
    report("stock left, scarcest first: " + ", ".join(left))
    lags = view.health()["projections"]
    report("projection lag: " + ", ".join(f"{name} {info['lag']}" for name, info in lags.items()))


def _where_to_look(order: str, settings: Settings, auth: dict[str, str], report: Report) -> None:
    """The addresses and keys of what keeps running (not said with --exit: it all stops)."""
    report(f"""
where to look (the APIs want a key: curl -H 'Authorization: Bearer KEY' ...):
  query API key   {auth["queries"]}
  command API key {auth["commands"]}
  (made for this run as demo-queries / demo-commands; `ecom keys` makes your own)
  {settings.query_url}/#key={auth["queries"]}   the shop, live, in a browser
  {settings.query_url}/orders/{order}      an order, its timeline and payment
  {settings.query_url}/orders?status=confirmed
  {settings.query_url}/products            prices, taxes and stock
  {settings.query_url}/health              projection lag and freshness
  {settings.query_url}/docs                the query API
  http://127.0.0.1:{settings.commands_port}/docs               the command API (POST /orders ...)
  ecom query order {order}
  ecom offsets list / ecom projections list
  logs in {settings.home / ".ecom" / "logs"}""")


def _demo_keys(settings: Settings) -> dict[str, str]:
    """Make this run's demo keys (a key is shown once, so each run makes new ones)."""
    keys = open_keys(settings.api_keys_path)
    made = {}
    for scope in SCOPES:
        name = f"demo-{scope}"
        if any(k.name == name for k in keys.list()):
            keys.revoke(name)
        made[scope] = keys.create(name, scope)
    keys.close()
    return made


def _wait_watching(url: str, key: str, report: Report, check: Check,
                   timeout: float = 60) -> None:  # fmt: skip
    """Wait until the query API answers and its live page watches the log, so the page
    times every order of the run."""
    import httpx

    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        check()
        try:
            answer = httpx.get(f"{url}/live", headers={"Authorization": f"Bearer {key}"}, timeout=2)
            kafka = answer.json()["kafka"] if answer.status_code == 200 else {}
            if kafka.get("tailing") or kafka.get("watched") is False:
                return
            last = kafka.get("error") or f"HTTP {answer.status_code}"
        except (httpx.HTTPError, ValueError, KeyError) as error:
            last = str(error)
        time.sleep(0.2)
    report(f"  (the live page does not watch Kafka yet: {last}; going on)")


def _check_ports(settings: Settings) -> None:
    """Refuse at once when a port the services would listen on is taken: a second demo
    went on to replace the first one's keys and send its orders into the first shop."""
    for port in (int(_port(settings.query_url)), settings.commands_port):
        if (error := metrics.bind_refused(port)) is not None:
            raise PortInUse(f"cannot run the demo: 127.0.0.1:{port} is taken "
                            f"({error.strerror}; another demo?)") from error  # fmt: skip
    given = os.environ.get("ECOM_METRICS_PORT", "")
    base = int(given) if given.isdigit() else None  # a bad one: the child says so
    check_metrics_ports(base)
    metrics.check_free(METRICS_PORT if base is None else base)


def _wait_flow_joined(topology: Topology, bootstrap: str, report: Report, check: Check,
                      timeout: float = 120) -> None:  # fmt: skip
    """Wait until each order-flow worker has its partitions: orders sent sooner wait out
    the workers' start, and their payment deadlines (counted from the orders' own times)
    can pass before a worker sees them."""
    groups = GroupAdmin(bootstrap)
    waiting = [topology.flow_app(service) for service in FLOW_SERVICES]
    deadline = time.monotonic() + timeout
    while waiting and time.monotonic() < deadline:
        check()
        waiting = [g for g in waiting if not _assigned(groups.describe(g))]
        time.sleep(0.5)
    if waiting:
        report(f"  (not every order-flow worker has its partitions yet: {waiting}; going on)")


def _assigned(group: GroupInfo) -> bool:
    return group.state == "STABLE" and any(member.partitions for member in group.members)


def _port(url: str) -> str:
    return url.rsplit(":", 1)[-1].split("/")[0]


def _left(stock: dict[str, int]) -> str:
    return f"{stock['available']} of {stock['on_hand'] + stock['sold']}"


def _wait_for_interrupt(check: Check) -> None:
    try:
        while True:
            check()
            time.sleep(1)
    except KeyboardInterrupt:
        return


def default_seed() -> int:
    """A new seed per run, so each demo adds a new batch of orders."""
    return int(time.time()) % 1_000_000
