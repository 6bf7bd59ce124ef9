"""The rule families that turn cells into drift findings.

- `version-regression`: an older version emitted again after a newer one appeared;
- `field-added` / `field-removed` / `type-change` (info): what a new version changed;
- `drift-without-version-bump` (warning): the same version, a different shape over time
  (a field appears, disappears or changes type);
- `mixed-types`: a field with several JSON types inside one window and version;
- `hidden-types` (warning): a field written with several types that the loaded table holds
  as text, where every value reads as one type, so the events that wrote another cannot be
  told apart;
- `undeclared-type` / `undeclared-version` / `schema-mismatch`: against a registry;
- `no-upcaster-path`: a version that occurs but no upcaster chain leads to the current one.

A whole number is an `integer` however it was written (`10` or `10.0`, as JSON Schema says),
and an integer is a number: a field of numbers whose values happen to be whole in a later
window has not changed type, while a field of integers that starts holding fractions has.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

import pandas as pd

from auditkit._drift.collect import Cell, Cells, cell_order, families, shape, version_label
from auditkit._drift.registry import Registry, declared_fields
from auditkit._findings import Findings

__all__ = ["drift_findings"]

Versions: TypeAlias = dict[Any, dict[int | None, Cell]]
"""One event type's cells: schema version -> window -> cell."""
ByType: TypeAlias = dict[Any, Versions]
Note: TypeAlias = Callable[[str, str, str], None]
"""Records a finding: check, severity, detail."""


def drift_findings(
    cells: Cells,
    *,
    mixed: set[str],
    registry: Registry | None,
    upcasters: Mapping[tuple[str, int], Any],
    stream: str | None,
) -> pd.DataFrame:
    """Every rule family over the cells: one findings table (the columns of `ak.audit`)."""
    found = Findings(stream)
    note = found.add
    by_type: ByType = defaultdict(lambda: defaultdict(dict))
    # Built in one order, so every rule notes its findings in one order for any source.
    for (t, v, w), cell in sorted(cells.items(), key=lambda item: cell_order(item[0])):
        by_type[t][v][w] = cell
    _hidden_types(by_type, mixed, note)
    for event_type in sorted(by_type, key=str):
        versions = by_type[event_type]
        _regressions(event_type, versions, note)
        _shape_over_time(event_type, versions, note)
        _between_versions(event_type, versions, note)
    _against_registry(by_type, registry, note)
    _upcaster_coverage(by_type, upcasters, note)
    return found.frame()


def _regressions(event_type: Any, versions: Versions, note: Note) -> None:
    """`version-regression`: an older version still written after a newer one appeared."""
    known = sorted(v for v in versions if isinstance(v, int))
    for older_index, older in enumerate(known):
        for newer in known[older_index + 1 :]:
            firsts = [c.first_ts for c in versions[newer].values() if c.first_ts is not None]
            if not firsts:
                continue
            newer_first = min(firsts)
            late = [
                c
                for c in versions[older].values()
                if c.last_ts is not None and c.last_ts > newer_first
            ]
            if not late:
                continue
            producers = Counter[str]()
            for cell in late:
                producers.update(cell.producers)
            last = max(c.last_ts for c in late if c.last_ts is not None)
            who = ", ".join(sorted(producers)) or "an unnamed producer"
            note(
                "version-regression",
                "warning",
                f"`{event_type}` v{older} is still emitted after v{newer} appeared on "
                f"{_day(newer_first)}: last on {_day(last)}, by {who}",
            )
            break


def _shape_over_time(event_type: Any, versions: Versions, note: Note) -> None:
    """`mixed-types` in a window; fields appearing, disappearing or changing type in a version."""
    for version, windows in versions.items():
        label = f"`{event_type}` {version_label(version)}"
        seen: dict[str, set[str]] = {}  # field -> its types so far
        order = sorted(windows, key=_chronological)
        for index, when in enumerate(order):
            cell = windows[when]
            for path, types in sorted(cell.types.items()):
                # Whole numbers among fractions are numbers too: one type, not two.
                held = {k for k, n in types.items() if n}
                if len(held - ({"integer"} if "number" in held else set())) > 1:
                    note(
                        "mixed-types",
                        "warning",
                        f"{label}: field `{path}` has several types in {cell.label}: "
                        f"{_counts(types)}",
                    )
            for path in sorted(cell.present):
                kinds = {k for k, n in cell.types.get(path, {}).items() if n}
                if path not in seen:
                    if index > 0:
                        note(
                            "drift-without-version-bump",
                            "warning",
                            f"{label}: field `{path}` appears in {cell.label} (in "
                            f"{cell.present[path] / cell.events:.0%} of that window's "
                            "events) with no new schema version",
                        )
                    seen[path] = kinds
                elif kinds and seen[path] and not kinds <= _covered(seen[path]):
                    # Only a type not seen before is a change (once); a narrower set of
                    # types, or the same again, is not.
                    note(
                        "drift-without-version-bump",
                        "warning",
                        f"{label}: field `{path}` changes type from {_joined(seen[path])} to "
                        f"{_joined(kinds)} in {cell.label} with no new schema version",
                    )
                    seen[path] = seen[path] | kinds
            if index + 1 < len(order):
                following = windows[order[index + 1]]
                for path in sorted(set(cell.present) - set(following.present)):
                    later = any(path in windows[w].present for w in order[index + 2 :])
                    if not later:
                        note(
                            "drift-without-version-bump",
                            "warning",
                            f"{label}: field `{path}` disappears after {cell.label} "
                            "with no new schema version",
                        )


def _between_versions(event_type: Any, versions: Versions, note: Note) -> None:
    """What each version changed from the one before: fields added, dropped, retyped."""
    known = sorted(v for v in versions if isinstance(v, int))
    for older, newer in itertools.pairwise(known):
        before = shape(versions[older].values())
        after = shape(versions[newer].values())
        for path in sorted(set(after) - set(before)):
            note("field-added", "info", f"`{event_type}` v{newer} adds field `{path}`")
        for path in sorted(set(before) - set(after)):
            note("field-removed", "info", f"`{event_type}` v{newer} drops field `{path}`")
        for path in sorted(set(before) & set(after)):
            if before[path] and after[path] and before[path] != after[path]:
                note(
                    "type-change",
                    "info",
                    f"`{event_type}` v{newer} changes field `{path}` from {before[path]} "
                    f"to {after[path]}",
                )


def _against_registry(by_type: ByType, registry: Registry | None, note: Note) -> None:
    """Types, versions and fields that the registry does not declare, or declares otherwise."""
    if registry is None:
        return
    for event_type, versions in by_type.items():
        declared = registry.get(str(event_type))
        if declared is None:
            note(
                "undeclared-type",
                "warning",
                f"event type `{event_type}` is not in the registry",
            )
            continue
        for version, windows in versions.items():
            schema = declared.get(str(version))
            if schema is None:
                note(
                    "undeclared-version",
                    "warning",
                    f"`{event_type}` {version_label(version)} is not in the registry "
                    f"(declared: {', '.join(sorted(declared))})",
                )
                continue
            observed = shape(windows.values())
            properties = declared_fields(schema)
            for path in sorted(set(observed) - set(properties)):
                note(
                    "schema-mismatch",
                    "warning",
                    f"`{event_type}` {version_label(version)}: field `{path}` is not declared",
                )
            for path in sorted(set(schema.get("required", [])) - set(observed)):
                note(
                    "schema-mismatch",
                    "warning",
                    f"`{event_type}` {version_label(version)}: required field `{path}` never "
                    "occurs",
                )
            for path in sorted(set(observed) & set(properties)):
                allowed = properties[path]
                kinds = set(observed[path].split("|")) - {""}
                if allowed and kinds - allowed - ({"integer"} if "number" in allowed else set()):
                    note(
                        "schema-mismatch",
                        "warning",
                        f"`{event_type}` {version_label(version)}: field `{path}` is "
                        f"{observed[path]}, declared {'|'.join(sorted(allowed))}",
                    )


def _upcaster_coverage(
    by_type: ByType, upcasters: Mapping[tuple[str, int], Any], note: Note
) -> None:
    """`no-upcaster-path`: versions that occur with no upcaster chain to the current one."""
    if not upcasters:
        return
    for event_type, versions in by_type.items():
        steps = {v for (t, v) in upcasters if t == event_type}
        seen = [v for v in versions if isinstance(v, int)]
        # The current version: past every upcaster, and at least the newest one seen.
        current = max([*(s + 1 for s in steps), *seen], default=0)
        for version in sorted(v for v in versions if isinstance(v, int)):
            step = version
            while step < current and step in steps:
                step += 1
            if step < current:
                note(
                    "no-upcaster-path",
                    "error",
                    f"`{event_type}` v{version} occurs, but no upcaster takes "
                    f"({event_type!r}, {step}) towards v{current}",
                )


def _hidden_types(by_type: ByType, mixed: set[str], note: Note) -> None:
    """`hidden-types`: a mixed field whose values all read as one type."""
    for path in sorted(mixed):
        kinds: set[str] = set()
        holders = set()
        for event_type, versions in by_type.items():
            for windows in versions.values():
                for cell in windows.values():
                    if cell.present.get(path):
                        kinds.update(k for k, n in cell.types.get(path, {}).items() if n)
                        holders.add(event_type)
        if holders and len(families(kinds)) <= 1:
            note(
                "hidden-types",
                "warning",
                f"field `{path}` was written with values of several types, which the loader "
                f"made text, yet every value reads as {_joined(kinds) or 'text'}: the events "
                'that wrote another type (`"15"` for `15`, say) cannot be told apart '
                f"(event types: {', '.join(f'`{t}`' for t in sorted(holders, key=str))})",
            )


def _covered(kinds: set[str]) -> set[str]:
    """The types a field holding `kinds` may take without changing type."""
    return kinds | {"integer"} if "number" in kinds else kinds


def _chronological(start: int | None) -> float:
    """Windows in time order; events without a time first."""
    return float("-inf") if start is None else float(start)


def _joined(kinds: set[str]) -> str:
    """`integer|string`."""
    return "|".join(sorted(kinds))


def _day(when: Any) -> str:
    """`2026-03-01`."""
    return pd.Timestamp(when).strftime("%Y-%m-%d")


def _counts(types: Counter[str]) -> str:
    """`3 integer, 1 string`, commonest first (then by name, however they were counted)."""
    counted = sorted(((n, kind) for kind, n in types.items() if n), key=lambda p: (-p[0], p[1]))
    return ", ".join(f"{n:,} {kind}" for n, kind in counted)
