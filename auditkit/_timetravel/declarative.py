"""Declarative projections: last values, counts and sums per aggregate, run in DuckDB.

`Projection.declarative(...)` builds a projection from a description instead of code. Its
`states_at` runs as one vectorised GROUP BY over millions of events; `state_at`, `history`
and snapshots run the equivalent Python handler, so both paths answer the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from auditkit._load.sources import ORDER_COLUMN
from auditkit._timetravel.replay import WILDCARD, Event

__all__ = ["Spec", "handler_for", "initial_for", "states_vectorised"]


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
            value = _value(event, column)
            if value is not None:
                new[field] = value
        for field, types in count.items():
            if types == WILDCARD or event_type in types:
                new[field] += 1
        for field, by_type in sums.items():
            spec_for_type = by_type.get(event_type)
            if spec_for_type is not None:
                sign, column = spec_for_type
                value = _value(event, column)
                if value is not None:
                    new[field] += sign * value
        return new

    return apply


def states_vectorised(spec: Spec, table: pa.Table) -> pd.DataFrame:
    """`states_at` as one DuckDB GROUP BY over the ordered events table."""
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
    for field, column in spec.last.items():
        alias = f"f{len(names)}"
        names[alias] = field
        col = quoted(column)
        parts.append(f"arg_max({col}, {ORDER_COLUMN}) FILTER (WHERE {col} IS NOT NULL) AS {alias}")
    for field, types in spec.count.items():
        alias = f"f{len(names)}"
        names[alias] = field
        if types == WILDCARD:
            parts.append(f"count(*) AS {alias}")
        else:
            listed = ", ".join(param(t) for t in types)
            parts.append(f"count(*) FILTER (WHERE event_type IN ({listed})) AS {alias}")
    for field, by_type in spec.sum.items():
        alias = f"f{len(names)}"
        names[alias] = field
        cases = " ".join(
            f"WHEN event_type = {param(event_type)} THEN {'-' if sign < 0 else ''}{quoted(column)}"
            for event_type, (sign, column) in by_type.items()
        )
        parts.append(f"coalesce(sum(CASE {cases} END), 0) AS {alias}")
    query = (
        "SELECT aggregate_id, " + ", ".join(parts) + f", arg_max(id, {ORDER_COLUMN}) AS last_id, "
        f"arg_max(ts, {ORDER_COLUMN}) AS last_ts, count(*) AS events "
        "FROM events GROUP BY aggregate_id ORDER BY aggregate_id NULLS LAST"
    )
    connection = duckdb.connect()
    try:
        connection.register("events", table)
        frame: pd.DataFrame = connection.execute(query, params).df()
    finally:
        connection.close()
    frame = frame.rename(columns=names)
    for field in spec.count:
        frame[field] = frame[field].astype("int64")
    frame["events"] = frame["events"].astype("int64")
    frame["last_ts"] = pd.to_datetime(frame["last_ts"], utc=True)
    return frame


def _value(event: Event, column: str) -> Any:
    if column.startswith("payload."):
        node: Any = event["payload"]
        for part in column[len("payload.") :].split("."):
            if not isinstance(node, Mapping):
                return None
            node = node.get(part)
        return node
    return event.get(column)
