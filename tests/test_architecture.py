"""The import directions between auditkit's rooms, checked on the real import graph.

Every import counts, those under `if TYPE_CHECKING:` too: a type-only import still ties
one concept to another, and a cycle of them is a cycle.
"""

from __future__ import annotations

import grimp
import pytest

PACKAGE = "auditkit"

# Top to bottom: a room may import the rooms below it, never one above it. Rooms on one
# line are independent of each other (neither imports the other).
LAYERS = (
    ("_cli",),
    ("testing",),
    ("_demo",),
    ("_report",),
    ("_audit", "_drift"),
    ("_archive", "_timetravel", "_config"),
    ("_load",),
    ("_types",),
    ("_redis",),
    ("_files", "_findings", "_progress"),
    ("_display",),
    ("_exceptions",),
    ("_logging",),
    ("_secrets",),
    ("_lazy",),
)
BASE = ("_exceptions", "_logging", "_secrets")
"""What the Redis layer may use: errors and redaction, no other concept."""


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(PACKAGE, exclude_type_checking_imports=False)


def _room(module: str) -> str:
    """`auditkit._load.reader` -> `_load`; the package itself is the room `auditkit`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else PACKAGE


def _imports_between_rooms(graph: grimp.ImportGraph) -> dict[tuple[str, str], list[str]]:
    found: dict[tuple[str, str], list[str]] = {}
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            pair = (_room(importer), _room(imported))
            if pair[0] != pair[1]:
                found.setdefault(pair, []).append(f"{importer} -> {imported}")
    return found


def test_every_room_is_in_a_layer(graph: grimp.ImportGraph) -> None:
    rooms = {_room(m) for m in graph.modules} - {PACKAGE, "__main__"}
    layered = {room for layer in LAYERS for room in layer}
    assert rooms == layered, "add the new room to LAYERS in tests/test_architecture.py"


def test_rooms_import_only_downwards(graph: grimp.ImportGraph) -> None:
    level = {room: i for i, layer in enumerate(LAYERS) for room in layer}
    wrong = [
        line
        for (importer, imported), lines in _imports_between_rooms(graph).items()
        if importer in level and imported in level and level[imported] <= level[importer]
        for line in lines
    ]
    assert wrong == []


def test_the_redis_layer_imports_no_other_concept(graph: grimp.ImportGraph) -> None:
    wrong = [
        line
        for (importer, imported), lines in _imports_between_rooms(graph).items()
        if importer == "_redis" and imported not in BASE
        for line in lines
    ]
    assert wrong == []


def test_loading_never_imports_the_jobs_built_on_it(graph: grimp.ImportGraph) -> None:
    jobs = {"_archive", "_audit", "_drift", "_timetravel", "_report", "_demo", "_cli"}
    wrong = [
        line
        for (importer, imported), lines in _imports_between_rooms(graph).items()
        if importer == "_load" and imported in jobs
        for line in lines
    ]
    assert wrong == []


def test_no_cycle_between_rooms(graph: grimp.ImportGraph) -> None:
    edges: dict[str, set[str]] = {}
    for importer, imported in _imports_between_rooms(graph):
        edges.setdefault(importer, set()).add(imported)
    cycles = []
    for start in sorted(edges):
        # Depth-first from each room: reaching it again is a cycle.
        stack = [(start, [start])]
        seen: set[str] = set()
        while stack:
            room, path = stack.pop()
            for nxt in sorted(edges.get(room, ())):
                if nxt == start:
                    cycles.append(" -> ".join([*path, start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
    assert cycles == []


def test_the_cli_is_a_shell_over_the_public_names(graph: grimp.ImportGraph) -> None:
    allowed = {PACKAGE, "_cli", "_demo", "testing"}
    wrong = [
        line
        for (importer, imported), lines in _imports_between_rooms(graph).items()
        if importer == "_cli" and imported not in allowed
        for line in lines
    ]
    assert wrong == []


def test_the_testing_kit_uses_public_names(graph: grimp.ImportGraph) -> None:
    # Besides the public names: the embedded server, the privacy rules samples apply, and
    # the loader of names on first use that the package itself uses.
    allowed = {PACKAGE, "testing", "_redis", "_archive", "_lazy"}
    wrong = [
        line
        for (importer, imported), lines in _imports_between_rooms(graph).items()
        if importer == "testing" and imported not in allowed
        for line in lines
    ]
    assert wrong == []
