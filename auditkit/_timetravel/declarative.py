"""Declarative projections: last values, counts and sums per aggregate, run in DuckDB.

`Projection.declarative(...)` builds a projection from a description instead of code. Its
`states_at` runs as one vectorised GROUP BY over millions of events; `state_at`, `history`
and snapshots run the equivalent Python handler, so both paths answer the same. Sums add
numbers and text that spells a number exactly (numeric.py); anything else is refused by
both paths with one FieldTypeMismatch that says where each kind of value occurs (sums.py).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from auditkit._exceptions import ProjectionError
from auditkit._load.decode import PAYLOAD_PREFIX
from auditkit._load.sources import ORDER_COLUMN
from auditkit._load.unify import MIXED_TYPES
from auditkit._timetravel.numeric import as_number
from auditkit._timetravel.replay import WILDCARD, Event, value_of
from auditkit._timetravel.sums import sum_columns

__all__ = ["Spec", "check_columns", "handler_for", "initial_for", "states_vectorised"]


class Spec:
    """A validated description: `last`, `count` and `sum` state fields."""

    def __init__(
        self,
        last: Mapping[str, str] | None,
        count: Mapping[str, str | Sequence[str]] | None,
        sum: Mapping[str, Mapping[str, str]] | None,
    ) -> None:
        self.last = dict(last or {})
        self.count = {
            field: (
                WILDCARD
                if types == WILDCARD
                else tuple([types] if isinstance(types, str) else types)
            )
            for field, types in (count or {}).items()
        }
        self.sum: dict[str, dict[str, tuple[int, str]]] = {}
        for field, by_type in (sum or {}).items():
            if not isinstance(by_type, Mapping) or not by_type:
                raise TypeError(
                    f"sum[{field!r}] maps event types to columns, e.g. "
                    "{'Deposited': 'payload.amount', 'Withdrawn': '-payload.amount'}."
                )
            self.sum[field] = {
                event_type: (-1, column[1:]) if column.startswith("-") else (1, column)
                for event_type, column in by_type.items()
            }
        fields = [*self.last, *self.count, *self.sum]
        if not fields:
            raise TypeError("A declarative projection needs at least one of last, count, sum.")
        if len(set(fields)) != len(fields):
            raise ValueError(f"State fields must be unique across last, count and sum: {fields}.")


def check_columns(spec: Spec, table: pa.Table) -> None:
    """Refuse a column the events do not have when it looks like a slip for one they do.

    A column no event has is null, so its sum is 0 and its last value None: right for a
    field no event has carried yet, silently wrong for `payload.amuont`. A name that is
    close to a column the events have (or that lacks the `payload.` prefix) is the slip.
    """
    if not table.num_rows:
        return
    have = [c for c in table.column_names if not c.startswith("__")]
    # A sum's column matters once an event of its type is there: before the first one
    # (a state asked for at a moment before it) the sum is 0 and the column may not exist.
    types = set(table.column("event_type").to_pylist()) if "event_type" in have else set()
    wanted = [*spec.last.values()] + [
        column for by in spec.sum.values() for t, (_, column) in by.items() if t in types
    ]
    named = [t for types in spec.count.values() if types != WILDCARD for t in types]
    named += [t for by in spec.sum.values() for t in by]
    present = sorted(str(t) for t in types if t is not None)
    for event_type in dict.fromkeys(named):
        if event_type in types:
            continue
        near = difflib.get_close_matches(event_type, present, n=3, cutoff=0.9)  # one slip
        near += [t for t in present if t.casefold() == event_type.casefold() and t not in near]
        if near:
            shown = ", ".join(f"`{n}`" for n in near)
            raise ProjectionError(
                f"No event has the type `{event_type}`, so the projection would count and "
                f"sum nothing for it; did you mean {shown}?"
            )
    for column in dict.fromkeys(wanted):
        if column in have:
            continue
        near = difflib.get_close_matches(column, have, n=3, cutoff=0.8)
        if f"payload.{column}" in have:
            near = [f"payload.{column}", *[n for n in near if n != f"payload.{column}"]]
        if near:
            shown = ", ".join(f"`{n}`" for n in near)
            raise ProjectionError(
                f"No event has a column `{column}`, so the projection would read it as "
                f"empty for every event; did you mean {shown}? (Payload fields are "
                "`payload.<path>`.)"
            )


def initial_for(spec: Spec) -> dict[str, Any]:
    """The state before any event: no last values, zero counts and sums."""
    return {
        **dict.fromkeys(spec.last),
        **dict.fromkeys(spec.count, 0),
        **dict.fromkeys(spec.sum, 0),
    }


def handler_for(spec: Spec) -> Any:
    """The Python handler equivalent to the vectorised query (for every event type)."""
    last, count, sums = spec.last, spec.count, spec.sum

    def apply(state: dict[str, Any], event: Event) -> dict[str, Any]:
        new = dict(state)
        event_type = event["event_type"]
        for field, column in last.items():
            value = value_of(event, column)
            if value is not None:
                new[field] = value
        for field, types in count.items():
            if types == WILDCARD or event_type in types:
                new[field] += 1
        for field, by_type in sums.items():
            spec_for_type = by_type.get(event_type)
            if spec_for_type is not None:
                sign, column = spec_for_type
                value = value_of(event, column)
                if value is not None:
                    new[field] += sign * as_number(field, value)
        return new

    return apply


def states_vectorised(spec: Spec, table: pa.Table) -> pd.DataFrame:
    """`states_at` as one DuckDB GROUP BY over the ordered events table."""
    sums = sum_columns(spec.sum, table)
    for name, values in sums.items():
        table = table.append_column(name, values)
    columns = set(table.column_names)
    params: list[Any] = []

    def quoted(column: str) -> str:
        # Identifiers only from the table's own columns; absent columns are NULL, as the
        # Python handler sees them. User values travel as parameters, never as SQL text.
        return '"' + column.replace('"', '""') + '"' if column in columns else "NULL"

    def param(value: Any) -> str:
        params.append(value)
        return f"${len(params)}"

    parts = []
    names: dict[str, str] = {}
    as_written: dict[str, str] = {}
    for field, column in spec.last.items():
        alias = f"f{len(names)}"
        names[alias] = field
        col = quoted(column)
        if _written_differently(table, column):
            # The column holds text for values of several types; the payload as written
            # has each value's own type, as the Python handler sees it: take the row.
            as_written[alias] = column
            parts.append(
                f"arg_max({ORDER_COLUMN}, {ORDER_COLUMN}) FILTER (WHERE {col} IS NOT NULL) "
                f"AS {alias}"
            )
            continue
        parts.append(f"arg_max({col}, {ORDER_COLUMN}) FILTER (WHERE {col} IS NOT NULL) AS {alias}")
    for field, types in spec.count.items():
        alias = f"f{len(names)}"
        names[alias] = field
        if types == WILDCARD:
            parts.append(f"count(*) AS {alias}")
        else:
            listed = ", ".join(param(t) for t in types)
            parts.append(f"count(*) FILTER (WHERE event_type IN ({listed})) AS {alias}")
    for field, (name, values) in zip(spec.sum, sums.items(), strict=True):
        alias = f"f{len(names)}"
        names[alias] = field
        total = f"sum({quoted(name)})"
        if pa.types.is_integer(values.type):
            # DuckDB widens an integer sum to HUGEINT, which pandas would turn into floats.
            total = f"CAST({total} AS BIGINT)"
        parts.append(f"coalesce({total}, 0) AS {alias}")
    query = (
        "SELECT aggregate_id, " + ", ".join(parts) + f", arg_max(id, {ORDER_COLUMN}) AS last_id, "
        f"arg_max(ts, {ORDER_COLUMN}) AS last_ts, count(*) AS events "
        "FROM events GROUP BY aggregate_id ORDER BY aggregate_id NULLS LAST"
    )
    connection = duckdb.connect()
    try:
        connection.register("events", table)
        frame: pd.DataFrame = connection.execute(query, params).df()
    except duckdb.Error as exc:
        raise ProjectionError(
            f"DuckDB could not run the declarative projection: {exc}. Replay with "
            "`state_at`/`history` (the Python handler) to find the event at fault."
        ) from exc
    finally:
        connection.close()
    for alias, column in as_written.items():
        frame[alias] = _values_as_written(table, column, frame[alias])
    frame = frame.rename(columns=names)
    for field in spec.count:
        frame[field] = frame[field].astype("int64")
    frame["events"] = frame["events"].astype("int64")
    frame["last_ts"] = pd.to_datetime(frame["last_ts"], utc=True)
    for column in frame.columns:
        if frame[column].dtype == object:
            # DuckDB gives binary values (non-UTF-8 ids) as bytearray; replay gives bytes.
            frame[column] = frame[column].map(lambda v: bytes(v) if isinstance(v, bytearray) else v)
    return frame


def _written_differently(table: pa.Table, column: str) -> bool:
    """A payload column made text from values of several types, with the payload at hand."""
    if not column.startswith(PAYLOAD_PREFIX) or column not in table.column_names:
        return False
    metadata = table.schema.field(column).metadata or {}
    return MIXED_TYPES in metadata and "payload" in table.column_names


def _values_as_written(table: pa.Table, column: str, rows: pd.Series) -> list[Any]:
    """The value of `column` in each row's payload as written (None where no row)."""
    present = rows.notna()
    taken = table.column("payload").take(pa.array(rows[present].astype("int64"), pa.int64()))
    values = iter(taken.to_pylist())
    path = column[len(PAYLOAD_PREFIX) :].split(".")
    result: list[Any] = []
    for has_row in present:
        if not has_row:
            result.append(None)
            continue
        node: Any = json.loads(next(values))
        for part in path:
            node = node.get(part) if isinstance(node, Mapping) else None
        result.append(node)
    return result
