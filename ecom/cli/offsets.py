"""`ecom offsets`: see consumer groups' positions and move them safely."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from ecom.cli.context import context
from ecom.cli.output import bootstrap_option, echo_table
from ecom.errors import BadInput
from ecom.kafka import BytesProducer, GroupAdmin, GroupInfo, live_keys
from ecom.offset_plan import (
    Partition,
    Plan,
    Specifier,
    make_plan,
    parse_datetime,
    parse_duration,
    parse_scope,
    read_csv,
    to_csv,
)
from ecom.textfile import read_text
from ecom.topology import FLOW_SERVICES, Topology, changelogs_of
from streams.state import write_start_cursors


@click.group()
def offsets() -> None:
    """Consumer groups: where they are, and moving them (dry run first)."""


@offsets.command(name="list")
@bootstrap_option
def list_command(bootstrap: str | None) -> None:
    """List the consumer groups with their state."""
    groups = GroupAdmin(context(bootstrap).bootstrap).groups()
    echo_table(["group", "state", "type"], groups)


@offsets.command()
@click.argument("group")
@bootstrap_option
@click.option("--store", "store_url", help="View database, for a projection's stored offsets.")
def show(group: str, bootstrap: str | None, store_url: str | None) -> None:
    """Show a group's committed offsets, log ends, lag, state and members."""
    admin = GroupAdmin(context(bootstrap).bootstrap)
    info = admin.describe(group)
    committed = admin.committed(group)
    if info.state == "DEAD" and not committed:
        raise BadInput(f"no consumer group {group} on {admin.bootstrap}")
    partitions = sorted(committed) or sorted(p for m in info.members for p in m.partitions)
    latest = admin.ends(partitions)
    stored = _view_offsets(group, store_url)
    rows = []
    for tp in partitions:
        row: list[Any] = [tp[0], tp[1], committed.get(tp, "-"), latest[tp]]
        row.append(latest[tp] - committed[tp] if tp in committed else "-")
        if stored is not None:
            row.append(stored.get(tp, "-"))
        rows.append(row)
    click.echo(f"group {group}: state {info.state}, {len(info.members)} member(s)")
    headers = ["topic", "partition", "committed", "log end", "lag"]
    echo_table(headers + (["view offset"] if stored is not None else []), rows)
    for member in info.members:
        owned = ", ".join(f"{t}-{p}" for t, p in member.partitions) or "nothing"
        click.echo(f"member {member.instance_id or member.member_id} ({member.host}): {owned}")


def _view_offsets(group: str, store_url: str | None) -> dict[Partition, int] | None:
    """The offsets a projection's view holds (the ones it resumes from), if GROUP is one."""
    ctx = context(store=store_url)
    name = ctx.topology.projection_of(group)
    if name is None:
        return None
    from consumers.store import open_store

    with open_store(ctx.store_url) as store:
        generation = store.active_generation(name)
        if generation is None:
            return {}
        return {tp: row.next_offset for tp, row in store.offsets(name, generation).items()}


@offsets.command()
@click.argument("group")
@bootstrap_option
@click.option("--to-earliest", "to_earliest", is_flag=True, help="The log start.")
@click.option("--to-latest", "to_latest", is_flag=True, help="The log end.")
@click.option("--to-current", "to_current", is_flag=True, help="The committed offset.")
@click.option("--to-offset", "to_offset", type=int, metavar="N", help="Offset N.")
@click.option("--shift-by", "shift_by", type=int, metavar="N", help="Committed offset + N.")
@click.option("--to-datetime", "to_datetime", metavar="ISO", help="First offset at/after, UTC.")
@click.option("--by-duration", "by_duration", metavar="PnDTnHnMnS", help="Now minus duration.")
@click.option("--from-file", "from_file", type=click.Path(path_type=Path, exists=True,
              dir_okay=False), help="A plan written by --export.")  # fmt: skip
@click.option("--topic", "topics", multiple=True, metavar="T[:P,...]", help="Scope (repeatable).")
@click.option("--all-topics", is_flag=True, help="Every partition the group has committed.")
@click.option("--execute", is_flag=True, help="Move the offsets (default: dry run).")
@click.option("--export", is_flag=True, help="Print the plan as CSV for --from-file.")
@click.option("--wipe-state", is_flag=True, help="Stream apps: also empty their changelogs.")
def reset(group: str, bootstrap: str | None, topics: tuple[str, ...], all_topics: bool,
          execute: bool, export: bool, wipe_state: bool, **chosen: Any) -> None:  # fmt: skip
    """Plan (and with --execute, make) new offsets for GROUP, as kafka-consumer-groups does."""
    specifier = _specifier(chosen, group)
    ctx = context(bootstrap)
    admin = GroupAdmin(ctx.bootstrap)
    _refuse_active(admin.describe(group))
    all_names = admin.topic_names()
    holder = ctx.topology.state_holder(group, all_names)
    if holder and not (wipe_state and "stream app" in holder):
        raise BadInput(_stateful_message(group, holder, ctx.topology.projection_of(group)))
    partitions = _scope(admin, group, specifier, topics, all_topics)
    if holder:
        committed = set(admin.committed(group))
        _refuse_partial_wipe(group, partitions, committed, specifier.kind == "from_file")
    at_ms = _timestamp_ms(specifier)
    state = admin.log_state(group, partitions, at_ms)
    plan = make_plan(specifier, partitions, state)
    for note in plan.notes:
        click.echo(f"note: {note}", err=True)
    if export:
        click.echo(to_csv(plan), nl=False)
    else:
        _print_plan(plan, state.committed)
    if not execute:
        if not export:
            if holder:
                wiped = ", ".join(changelogs_of(group, all_names))
                click.echo(f"with --execute, also empties {wiped}")
            click.echo("dry run: nothing was changed (add --execute to move the offsets)")
        return
    _refuse_active(admin.describe(group))  # again: a consumer may have joined meanwhile
    if holder:
        _wipe_changelogs(admin, group, all_names, plan.offsets, ctx.topology)
    admin.alter(group, plan.offsets)
    if not export:
        click.echo(f"moved {len(plan.offsets)} partition(s) of group {group}")


def _specifier(chosen: dict[str, Any], group: str) -> Specifier:
    given = {k: v for k, v in chosen.items() if v not in (None, False)}
    if len(given) != 1:
        names = "--to-earliest, --to-latest, --to-current, --to-offset, --shift-by, "
        raise BadInput(f"give exactly one of {names}--to-datetime, --by-duration, --from-file")
    kind, value = next(iter(given.items()))
    if kind == "to_datetime":
        return Specifier(kind, parse_datetime(value))
    if kind == "by_duration":
        return Specifier(kind, datetime.now(UTC) - parse_duration(value))
    if kind == "from_file":
        return Specifier(kind, read_csv(read_text(Path(value), "--from-file"), group))
    return Specifier(kind, None if value is True else value)


def _timestamp_ms(specifier: Specifier) -> int | None:
    if not specifier.needs_times:
        return None
    assert isinstance(specifier.value, datetime)
    return int(specifier.value.timestamp() * 1000)


def _scope(admin: GroupAdmin, group: str, specifier: Specifier, topics: tuple[str, ...],
           all_topics: bool) -> list[Partition]:  # fmt: skip
    if specifier.kind == "from_file":
        assert isinstance(specifier.value, dict)
        wanted: dict[str, list[int] | None] = {}
        for topic, partition in specifier.value:
            wanted.setdefault(topic, []).append(partition)  # type: ignore[union-attr]
        return admin.partitions(wanted)
    if all_topics:
        return sorted(admin.committed(group))
    if not topics:
        raise BadInput("choose the partitions to move: --topic T[:P,...] or --all-topics")
    return admin.partitions(parse_scope(topics))


def _refuse_active(info: GroupInfo) -> None:
    if info.active:
        raise BadInput(
            f"group {info.group} is {info.state} with {len(info.members)} live member(s): "
            "stop its consumers first (offsets can only move while a group is empty); "
            "nothing was changed"
        )


def _refuse_partial_wipe(group: str, partitions: list[Partition], committed: set[Partition],
                         from_file: bool) -> None:  # fmt: skip
    """The wipe empties the state of every partition: every partition the group has
    committed must move with it, or those left where they were would go on without their
    state. (One never committed starts at its log's first record, state and all.)"""
    if not partitions:
        raise BadInput(
            f"--wipe-state: no partition of {group} to move (it has no committed offsets: "
            "Kafka drops an empty group's after offsets.retention.minutes); name its input "
            "topics with --topic; nothing was changed"
        )
    left = sorted(committed - set(partitions))
    if left:
        shown = ", ".join(f"{t}:{p}" for t, p in left[:4]) + (" ..." if len(left) > 4 else "")
        how = "list them in the file" if from_file else "--all-topics, or --topic T alone"
        raise BadInput(
            f"--wipe-state empties the state of every partition of {group}, so each must "
            f"move too ({how}); {len(left)} would not ({shown}); nothing was changed"
        )


def _stateful_message(group: str, holder: str, name: str | None) -> str:
    if name is not None:
        return (
            f"refusing to move {group} alone: it belongs to {holder}, so the view and the "
            f"offsets would disagree; rebuild the view from the log with `ecom replay {name}` "
            f"(or `ecom replay {name} --until ...` for a view of the past); nothing was changed"
        )
    return (
        f"refusing to move {group} alone: it belongs to {holder}, built from the current "
        "offsets; stop its workers and add --wipe-state to empty those tables too "
        "(they are rebuilt from the events read after the new offsets); nothing was changed"
    )


def _wipe_changelogs(admin: GroupAdmin, group: str, names: set[str],
                     offsets: dict[Partition, int], topology: Topology) -> None:  # fmt: skip
    """Empty a stream app's changelogs with a tombstone per key (compacted topics refuse
    DeleteRecords); our workers' state then starts at the group's new offsets."""
    changelogs = changelogs_of(group, names)
    ours = group in {topology.flow_app(service) for service in FLOW_SERVICES}
    starts = admin.committed(group) | offsets  # partitions not moved stay where they are
    with BytesProducer(admin.bootstrap) as producer:
        for changelog in changelogs:
            partitions = [p for _, p in admin.partitions({changelog: None})]
            for partition, key in sorted(live_keys(admin.bootstrap, changelog, partitions)):
                producer.produce(changelog, None, key, partition=partition)
            if ours:  # they trust the cursors in their state over the group's offsets
                write_start_cursors(producer, changelog, starts)
    click.echo(f"emptied {', '.join(changelogs)}")
    if ours:
        click.echo(f"their state starts at the new offsets ({len(starts)} partition(s))")


def _print_plan(plan: Plan, committed: dict[Partition, int]) -> None:
    rows = [(t, p, committed.get((t, p), "-"), o) for t, p, o in plan.rows()]
    echo_table(["topic", "partition", "current", "new offset"], rows)
