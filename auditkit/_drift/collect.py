"""The one pass over the events: per event type, schema version and window, a `Cell`.

A cell counts the events, their first and last record time, their producers, and per
payload field how often it is present and with which JSON types. Everything comes from
what a loaded table holds: the typed `payload.<path>` columns, the loader's
`auditkit.mixed_types` mark, `payload_error`; never from the payload's raw text. So the
same events give the same cells from every source (a table, a DataFrame, Redis, an
archive), however they were cut into batches; `kinds` says how a value's type is read.

Each batch is folded with one Arrow group-by over (type, version, window): the work per
event runs in Arrow, and Python only touches the groups.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from auditkit._drift.kinds import column_kinds
from auditkit._drift.windows import Window
from auditkit._load.decode import PAYLOAD_PREFIX
from auditkit._load.unify import MIXED_TYPES, unify_tables

__all__ = [
    "UNREADABLE",
    "Cell",
    "Cells",
    "Observed",
    "cell_order",
    "collect",
    "families",
    "shape",
    "version_label",
    "version_order",
]

UNREADABLE = "(payload)"
"""The pseudo-field under which payloads that could not be decoded are counted."""

_WHOLE = re.compile(r"[+-]?[0-9]+")


@dataclass
class Cell:
    """What one (event type, version, window) looked like."""

    label: str  # the window's name
    events: int = 0
    first_ts: pd.Timestamp | None = None
    last_ts: pd.Timestamp | None = None
    producers: Counter[str] = field(default_factory=Counter)
    present: Counter[str] = field(default_factory=Counter)  # field path -> events having it
    types: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    maybe: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    """Text that reads as another type, until it is known whether its column is mixed."""

    def settle(self, mixed: set[str]) -> set[str]:
        """Count each `maybe` as the type it reads as (mixed column) or as text; returns
        the paths counted as text."""
        as_text = set()
        for path, kinds in self.maybe.items():
            if path in mixed:
                self.types[path].update(kinds)
            else:
                self.types[path]["string"] += sum(kinds.values())
                as_text.add(path)
        self.maybe = defaultdict(Counter)
        return as_text


Cells: TypeAlias = dict[tuple[Any, Any, int | None], Cell]
"""(event type, schema version, window start in epoch ms) -> its cell."""


@dataclass
class Observed:
    """What a pass over the events found: the cells, their streams, the mixed fields."""

    cells: Cells
    streams: list[str]
    mixed: set[str]
    """Payload paths whose values had several types, made text by the loader."""
    look_typed: set[str] = field(default_factory=set)
    """Payload paths with text that reads as a number or a boolean in a column not marked
    mixed: text written as text (`"12"`), unless the mark was lost (a DataFrame)."""


def collect(batches: Iterable[pa.Table], *, window: Window, producer_field: str) -> Observed:
    """Fold batches of events into cells; memory grows with the cells, not the events."""
    cells: Cells = {}
    streams: set[str] = set()
    schemas: list[pa.Schema] = []
    for batch in batches:
        if batch.num_rows:
            if "stream" in batch.column_names:
                streams.update(pc.unique(batch.column("stream")).to_pylist())
            _remember(schemas, batch.schema)
            _fold(batch, cells, window, producer_field)
    mixed = _mixed(schemas)
    look_typed: set[str] = set()
    for cell in cells.values():
        look_typed |= cell.settle(mixed)
    return Observed(cells, sorted(s for s in streams if s is not None), mixed, look_typed)


def shape(cells: Iterable[Cell]) -> dict[str, str]:
    """Field path -> its JSON types (`integer|string`) over the cells."""
    kinds: dict[str, set[str]] = defaultdict(set)
    for cell in cells:
        for path in cell.present:
            kinds[path].update(k for k, n in cell.types.get(path, {}).items() if n)
    return {path: "|".join(sorted(k)) for path, k in kinds.items()}


def families(kinds: Iterable[str]) -> set[str]:
    """Types with `integer` taken as a `number`: the loader keeps no other difference."""
    return {"number" if k == "integer" else k for k in kinds if k}


def version_order(version: Any) -> tuple[int, float, str]:
    """Unversioned events first, then versions as numbers (v10 after v9), then other names."""
    if version is None or (isinstance(version, float) and math.isnan(version)):
        return (0, 0.0, "")
    if isinstance(version, (int, float)):
        return (1, float(version), "")
    return (2, 0.0, str(version))


def cell_order(key: tuple[Any, Any, int | None]) -> tuple[Any, ...]:
    """Cells by event type, version and window: one order whatever the batches were."""
    event_type, version, start = key
    return (
        event_type is None,
        str(event_type),
        version_order(version),
        start is not None,
        start or 0,
    )


def version_label(version: Any) -> str:
    """`v2`, or `(no version)` for events without one."""
    return f"v{version}" if version is not None else "(no version)"


def _fold(batch: pa.Table, cells: Cells, window: Window, producer: str) -> None:
    """Add one batch to the cells with one group-by (and one more for the producers)."""
    n = batch.num_rows
    names = batch.column_names
    keys = {
        "t": batch.column("event_type") if "event_type" in names else pa.nulls(n, pa.string()),
        "v": _versions(batch),
        "w": window.starts(batch.column("ts")),
    }
    columns: dict[str, Any] = {**keys, "ts": batch.column("ts")}
    aggregates: list[tuple[Any, str]] = [("ts", "min"), ("ts", "max"), ([], "count_all")]
    fields: list[tuple[str, str, dict[str, str], dict[str, str]]] = []
    for index, name in enumerate(c for c in names if c.startswith(PAYLOAD_PREFIX)):
        kinds = column_kinds(batch.column(name))
        if not kinds.sure and not kinds.maybe:
            continue
        key = f"f{index}"
        columns[key] = batch.column(name)
        aggregates.append((key, "count"))
        sure: dict[str, str] = {}
        for kind, ones in kinds.sure.items():
            if ones is None:
                sure[kind] = f"{key}_count"
            else:
                columns[f"{key}_{kind}"] = ones
                aggregates.append((f"{key}_{kind}", "sum"))
                sure[kind] = f"{key}_{kind}_sum"
        maybe: dict[str, str] = {}
        for kind, ones in kinds.maybe.items():
            columns[f"{key}_maybe_{kind}"] = ones
            aggregates.append((f"{key}_maybe_{kind}", "sum"))
            maybe[kind] = f"{key}_maybe_{kind}_sum"
        fields.append((name[len(PAYLOAD_PREFIX) :], f"{key}_count", sure, maybe))
    if "payload_error" in names:
        columns["errors"] = batch.column("payload_error")
        aggregates.append(("errors", "count"))
    grouped = pa.table(columns).group_by(list(keys), use_threads=False).aggregate(aggregates)
    out = grouped.to_pydict()
    errors = out.get("errors_count", [0] * grouped.num_rows)
    for g in range(grouped.num_rows):
        cell = _cell(cells, window, out["t"][g], out["v"][g], out["w"][g])
        cell.events += out["count_all"][g]
        first, last = _timestamp(out["ts_min"][g]), _timestamp(out["ts_max"][g])
        if first is not None:
            cell.first_ts = first if cell.first_ts is None else min(cell.first_ts, first)
        if last is not None:
            cell.last_ts = last if cell.last_ts is None else max(cell.last_ts, last)
        for path, present_key, sure, maybe in fields:
            present = out[present_key][g]
            if not present:
                continue
            cell.present[path] += present
            for sums, counts in ((sure, cell.types), (maybe, cell.maybe)):
                for kind, column in sums.items():
                    if count := out[column][g]:
                        counts[path][kind] += count
        if errors[g]:
            cell.types[UNREADABLE]["invalid"] += errors[g]
    if producer in names:
        _fold_producers(keys, batch.column(producer), cells, window)


def _fold_producers(
    keys: dict[str, Any], producers: pa.ChunkedArray, cells: Cells, window: Window
) -> None:
    table = pa.table({**keys, "p": producers})
    grouped = table.group_by([*keys, "p"], use_threads=False).aggregate([([], "count_all")])
    out = grouped.to_pydict()
    for t, v, w, who, count in zip(
        out["t"], out["v"], out["w"], out["p"], out["count_all"], strict=True
    ):
        if who is not None:
            _cell(cells, window, t, v, w).producers[who] += count


def _cell(cells: Cells, window: Window, event_type: Any, version: Any, start: Any) -> Cell:
    key = (event_type, _version(version), start)
    cell = cells.get(key)
    if cell is None:
        cell = cells[key] = Cell(window.label(start))
    return cell


def _versions(batch: pa.Table) -> pa.ChunkedArray | pa.Array:
    if "schema_version" not in batch.column_names:
        return pa.nulls(batch.num_rows, pa.int64())
    column = batch.column("schema_version")
    return column.cast(pa.int64()) if pa.types.is_null(column.type) else column


def _version(value: Any) -> Any:
    """A schema version as its number when it is one, however the batch typed it."""
    # A batch whose versions are all numbers has them as integers; one with a `v2` among
    # them keeps every version as text. `"1"` and `1` are the same version.
    if isinstance(value, str) and _WHOLE.fullmatch(value):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _timestamp(value: Any) -> pd.Timestamp | None:
    return None if value is None else pd.Timestamp(value)


def _remember(schemas: list[pa.Schema], schema: pa.Schema) -> None:
    """Keep each distinct schema of the payload columns once."""
    payload = pa.schema([f for f in schema if f.name.startswith(PAYLOAD_PREFIX)])
    if not any(payload.equals(seen, check_metadata=True) for seen in schemas):
        schemas.append(payload)


def _mixed(schemas: list[pa.Schema]) -> set[str]:
    """Payload paths the loader would mark mixed in one table of every batch."""
    if not schemas:
        return set()
    # The loader's own rule, over the batches' column types: a field that is a number in
    # one batch and text in another is mixed, as it is in a table loaded in one piece.
    unified = unify_tables([schema.empty_table() for schema in schemas]).schema
    return {
        f.name[len(PAYLOAD_PREFIX) :]
        for f in unified
        if f.metadata and MIXED_TYPES in f.metadata and f.name.startswith(PAYLOAD_PREFIX)
    }
