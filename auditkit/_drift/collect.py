"""The one pass over the events: per event type, schema version and window, a `Cell`.

A cell counts the events, their first and last record time, their producers, and per
payload field how often it is present and with which JSON types. Types come from the
payload's JSON text when a batch has it (column `payload`: exact); else from the typed
`payload.<path>` columns (coarser: a column unified to text hides the numbers in it).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from auditkit._load.decode import PAYLOAD_PREFIX

__all__ = [
    "FREQ",
    "Cell",
    "Cells",
    "Observed",
    "Window",
    "collect",
    "shape",
    "version_label",
    "window_label",
]

Window = Literal["day", "week", "month"]
FREQ = {"day": "D", "week": "W-SUN", "month": "M"}
"""A window's pandas period frequency; weeks run Monday to Sunday."""

_KINDS = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
    type(None): "null",
}
_JSON_TYPES = {
    "bool": "boolean",
    "int": "integer",
    "float": "number",
    "str": "string",
    "list": "array",
    "dict": "object",
    "NoneType": "null",
}


@dataclass
class Cell:
    """What one (event type, version, window) looked like."""

    events: int = 0
    first_ts: Any = None
    last_ts: Any = None
    producers: Counter[str] = field(default_factory=Counter)
    present: Counter[str] = field(default_factory=Counter)  # field path -> events having it
    types: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))


Cells: TypeAlias = dict[tuple[Any, Any, pd.Period], Cell]
"""(event type, schema version, window) -> its cell."""


@dataclass
class Observed:
    """What a pass over the events found: the cells, and the streams they came from."""

    cells: Cells
    streams: list[str]


def collect(batches: Iterable[pa.Table], *, window: Window, producer_field: str) -> Observed:
    """Fold batches of events into cells; memory grows with the cells, not the events."""
    cells: Cells = defaultdict(Cell)
    stream_names: set[str] = set()
    for batch in batches:
        if batch.num_rows:
            stream_names.update(pc.unique(batch.column("stream")).to_pylist())
            _collect(batch, cells, window, producer_field)
    return Observed(cells, sorted(s for s in stream_names if s is not None))


def shape(cells: Iterable[Cell]) -> dict[str, str]:
    """Field path -> its JSON types (`integer|string`) over the cells, nulls left out."""
    kinds: dict[str, set[str]] = defaultdict(set)
    for cell in cells:
        for path in cell.present:
            kinds[path].update(set(cell.types.get(path, {})) - {"null"})
    return {path: "|".join(sorted(k)) for path, k in kinds.items()}


def window_label(period: pd.Period) -> str:
    """A window's name: the month (`2026-03`), or the first day of a week or a day."""
    if period.freqstr.startswith("M"):
        return str(period)
    return f"{period.start_time:%Y-%m-%d}"


def version_label(version: Any) -> str:
    """`v2`, or `(no version)` for events without one."""
    return f"v{version}" if version is not None else "(no version)"


def _collect(batch: pa.Table, cells: Cells, window: str, producer: str) -> None:
    """Add one batch to the cells, a group of rows per (type, version, window) at a time."""
    ts = batch.column("ts").to_pandas()
    periods = ts.dt.tz_convert("UTC").dt.tz_localize(None).dt.to_period(FREQ[window])
    types = batch.column("event_type").to_pylist()
    versions = (
        batch.column("schema_version").to_pylist()
        if "schema_version" in batch.column_names
        else [None] * batch.num_rows
    )
    producers = (
        batch.column(producer).to_pylist()
        if producer in batch.column_names
        else [None] * batch.num_rows
    )
    raw = batch.column("payload").to_pylist() if "payload" in batch.column_names else None
    payload_columns = [c for c in batch.column_names if c.startswith(PAYLOAD_PREFIX)]
    groups: dict[tuple[Any, Any, pd.Period], list[int]] = defaultdict(list)
    for index, key in enumerate(zip(types, versions, periods, strict=True)):
        groups[key].append(index)
    ts_values = ts.tolist()
    for key, rows in groups.items():
        cell = cells[key]
        cell.events += len(rows)
        first, last = ts_values[rows[0]], ts_values[rows[-1]]
        cell.first_ts = first if cell.first_ts is None else min(cell.first_ts, first)
        cell.last_ts = last if cell.last_ts is None else max(cell.last_ts, last)
        cell.producers.update(p for p in (producers[i] for i in rows) if p is not None)
        if raw is not None:
            _shapes_of([raw[i] for i in rows], cell)
        else:
            _shape_of_columns(batch, payload_columns, rows, cell)


def _shapes_of(texts: list[Any], cell: Cell) -> None:
    """Count, for a group of payloads, which fields they carry and with which JSON types."""
    seen: list[tuple[str, str]] = []
    present: list[str] = []
    seen_append, present_append = seen.append, present.append
    for text in texts:
        if text is None:
            continue
        try:
            value = json.loads(text)
        except (ValueError, TypeError):
            seen.append(("(payload)", "invalid JSON"))
            continue
        if not isinstance(value, dict):
            seen.append(("(payload)", _JSON_TYPES.get(type(value).__name__, "other")))
            continue
        # An explicit stack rather than a recursive generator: this loop runs per field of
        # every event, and generator frames were most of its cost.
        stack = [("", value)]
        while stack:
            prefix, node = stack.pop()
            for key, item in node.items():
                path = prefix + key
                if type(item) is dict and item:
                    stack.append((path + ".", item))
                else:
                    seen_append((path, _KINDS.get(type(item), "other")))
                    if item is not None:
                        present_append(path)
    # Counting whole lists at once runs in C; one Counter update per field would not.
    for (path, kind), count in Counter(seen).items():
        cell.types[path][kind] += count
    cell.present.update(present)


def _shape_of_columns(batch: pa.Table, columns: list[str], rows: list[int], cell: Cell) -> None:
    # Without the JSON text, types come from the (unified) columns: coarser, still useful.
    taken = batch.select(columns).take(pa.array(rows))
    for name in columns:
        column = taken.column(name)
        present = len(column) - column.null_count
        if present:
            path = name[len(PAYLOAD_PREFIX) :]
            cell.present[path] += present
            cell.types[path][_arrow_kind(column.type)] += present


def _arrow_kind(t: pa.DataType) -> str:
    """The JSON type a typed column stands for."""
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_integer(t):
        return "integer"
    if pa.types.is_floating(t):
        return "number"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return "array"
    if pa.types.is_struct(t):
        return "object"
    return "string"
