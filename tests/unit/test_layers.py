"""The house rules, read from the import graph (grimp), checked by `make lint`:

    schemas       the contracts: import nothing of the project but themselves
    ecom          the floor (all of ecom but ecom.cli): imports no wing, no CLI, no bench
    producers, consumers, streams, chain
                  the wings: import the floor and the contracts, never each other
    ecom.cli, bench
                  the roof: the only importers of wings

and: confluent_kafka is imported by ecom.kafka alone; no module imports itself back
through a cycle.
"""

from __future__ import annotations

from functools import cache

import grimp
import pytest

PACKAGES = ("schemas", "ecom", "producers", "consumers", "streams", "chain", "bench")
WINGS = ("producers", "consumers", "streams", "chain")
ROOF = ("ecom.cli", "ecom.__main__", "bench")


@cache
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(
        *PACKAGES, include_external_packages=True, exclude_type_checking_imports=True
    )


def part(module: str) -> str:
    """Return the part of the house a module belongs to: schemas, floor, a wing, roof."""
    top = module.split(".")[0]
    if any(module == r or module.startswith(r + ".") for r in ROOF):
        return "roof"
    if top == "ecom":
        return "floor"
    return top


def imports() -> list[tuple[str, str]]:
    """Every direct import between the project's modules (and of external packages)."""
    found = graph()
    return [
        (importer, imported)
        for importer in sorted(found.modules)
        if importer.split(".")[0] in PACKAGES
        for imported in sorted(found.find_modules_directly_imported_by(importer))
    ]


def violation(importer: str, imported: str) -> str | None:
    """Say what rule an import breaks, if any."""
    if imported.split(".")[0] == "confluent_kafka":
        ok = importer == "ecom.kafka" or importer.startswith("ecom.kafka.")
        return None if ok else "only ecom.kafka imports confluent_kafka"
    if imported.split(".")[0] not in PACKAGES:
        return None
    source, target = part(importer), part(imported)
    if source == "schemas" and target != "schemas":
        return "the contracts import nothing of the project"
    if source == "floor" and target not in ("schemas", "floor"):
        return "the floor imports no wing, CLI or benchmark"
    if source in WINGS and target not in ("schemas", "floor", source):
        return "a wing imports only the floor, the contracts and itself"
    return None


def test_every_import_keeps_the_house_rules() -> None:
    broken = [
        f"{importer} -> {imported}: {rule}"
        for importer, imported in imports()
        if (rule := violation(importer, imported))
    ]
    assert not broken, "\n".join(broken)


def test_no_module_imports_itself_back_through_a_cycle() -> None:
    internal = {
        importer: {
            i
            for i in graph().find_modules_directly_imported_by(importer)
            if i.split(".")[0] in PACKAGES
        }
        for importer in graph().modules
        if importer.split(".")[0] in PACKAGES
    }
    cycles = [sorted(c) for c in strongly_connected(internal) if len(c) > 1]
    assert not cycles, f"import cycles: {cycles}"


def strongly_connected(edges: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm, iteratively: the strongly connected components of a graph."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[set[str]] = []
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    components.append(component)
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(edges.get(child, ())))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return components


@pytest.mark.parametrize(
    ("importer", "imported", "broken"),
    [
        ("schemas.codec", "ecom.errors", True),
        ("ecom.kafka.admin", "consumers.store", True),
        ("consumers.runner", "streams.flow", True),
        ("streams.flow", "ecom.kafka", False),
        ("ecom.cli.demo", "producers.producer", False),
        ("bench.flow", "streams.order", False),
        ("consumers.runner", "confluent_kafka", True),
        ("ecom.kafka.producer", "confluent_kafka", False),
    ],
)
def test_the_rules_catch_what_they_should(importer: str, imported: str, broken: bool) -> None:
    assert (violation(importer, imported) is not None) is broken


def test_a_planted_cycle_is_found() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert [sorted(c) for c in strongly_connected(edges) if len(c) > 1] == [["a", "b", "c"]]
