"""Declarative sums: the numeric column each one adds, and the error when it cannot.

Both engines call `check_sums`/`sum_columns` on the events they replay, so they refuse
alike; the rules for a single value are in numeric.py. When a sum meets a value it cannot
add, `mismatch` reads every value that sum uses, as the handler would see it (from the
payload as written where the table holds it, after upcasting), and names each kind of
value with the event types and schema versions where it occurs, and what to do.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeAlias

import pyarrow as pa
import pyarrow.compute as pc

from auditkit._exceptions import FieldTypeMismatch
from auditkit._load.decode import PAYLOAD_PREFIX
from auditkit._load.unify import MIXED_TYPES
from auditkit._timetravel.numeric import EXACT_INT, as_number, exact_as_float, kind_of, numbers
from auditkit._timetravel.replay import Batch, Event, value_of

__all__ = ["Sums", "check_sums", "mismatch", "sum_columns"]

Sums: TypeAlias = Mapping[str, Mapping[str, tuple[int, str]]]
"""A declarative projection's sums: state field -> {event type: (sign, column)}."""


def check_sums(sums: Sums, table: pa.Table) -> None:
    """Refuse, before any replay, a sum over values it cannot add (FieldTypeMismatch)."""
    sum_columns(sums, table)


def sum_columns(sums: Sums, table: pa.Table) -> dict[str, pa.ChunkedArray]:
    """One numeric column per sum: each event's signed contribution, null where none.

    Raises FieldTypeMismatch when a sum meets a value it cannot add (see numeric.py).
    """
    if not sums:
        return {}
    names = set(table.column_names)
    size = table.num_rows
    event_types = (
        table.column("event_type")
        if "event_type" in names
        else pa.chunked_array([pa.nulls(size, pa.string())])
    )
    result: dict[str, pa.ChunkedArray] = {}
    for number, (field, by_type) in enumerate(sums.items()):
        parts: list[tuple[pa.ChunkedArray, int, pa.ChunkedArray]] = []
        for event_type, (sign, column) in by_type.items():
            if column not in names:
                continue  # absent: no value, as the handler sees it
            used = pc.fill_null(pc.equal(event_types, event_type), False)
            values = numbers(table.column(column), used)
            if values is None:
                raise mismatch(sums, field, Batch(table, {}))
            parts.append((used, sign, values))
        floats = any(pa.types.is_floating(values.type) for _, _, values in parts)
        kind = pa.float64() if floats else pa.int64()
        total: Any = pa.nulls(size, kind)
        for used, sign, values in parts:
            if floats and pa.types.is_integer(values.type):
                if not exact_as_float(values):
                    raise mismatch(sums, field, Batch(table, {}))
                values = pc.cast(values, pa.float64())
            signed = values if sign > 0 else pc.negate_checked(values)
            total = pc.if_else(used, signed, total)
        result[f"__sum{number}"] = (
            total if isinstance(total, pa.ChunkedArray) else pa.chunked_array([total])
        )
    return result


def mismatch(sums: Sums, field: str, batch: Batch) -> FieldTypeMismatch:
    """The error for a sum over values it cannot add: every kind seen, and where."""
    by_type = sums[field]
    event_types = batch.column("event_type")
    versions = batch.column("schema_version")
    ids = batch.column("id")
    places: dict[str, dict[str, None]] = {}
    examples: dict[str, tuple[Any, Any]] = {}
    at_fault: dict[str, set[tuple[Any, Any]]] = {}
    columns: dict[str, None] = {}
    floats = False
    rows = (
        pc.indices_nonzero(
            pc.fill_null(pc.is_in(batch.table.column("event_type"), pa.array(list(by_type))), False)
        ).to_pylist()
        if batch.size and "event_type" in batch.table.column_names
        else []
    )
    for index in rows:
        event_type = event_types[index]
        _, column = by_type[event_type]
        try:
            value = value_of(Event(batch, index, event_type), column)
        except ValueError:
            continue  # a payload that is not JSON: no value, as in the query
        if value is None:
            continue
        kind = kind_of(value)
        if kind in _ADDABLE:
            number = as_number(field, value)
            floats = floats or isinstance(number, float)
            if isinstance(number, int) and abs(number) > EXACT_INT:
                kind = f"{kind} beyond 2**53"
        version = versions[index]
        place = event_type if version is None else f"{event_type} v{version}"
        places.setdefault(kind, {})[place] = None
        examples.setdefault(kind, (value, ids[index]))
        at_fault.setdefault(kind, set()).add((event_type, version))
        columns[column] = None
    problems = [
        k for k in places if k not in _ADDABLE and (floats or not k.endswith("beyond 2**53"))
    ]
    described = "; ".join(
        f"{kind} in {', '.join(where)}"
        + (f" (e.g. `{examples[kind][0]!r}` at `{examples[kind][1]}`)" if kind in problems else "")
        for kind, where in places.items()
    )
    fault = sorted(
        {pair for k in problems for pair in at_fault[k]}, key=lambda p: (str(p[0]), str(p[1]))
    )
    column_names = ", ".join(f"`{c}`" for c in columns) or "its columns"
    advice = _advice(fault, list(columns))
    rules = (
        "A sum adds numbers, and text that spells a number exactly; not other text, "
        "booleans, bytes, lists or objects."
    )
    if any(k.endswith("beyond 2**53") for k in problems):
        rules += " Beside floats it adds floats, and ints beyond 2**53 are not exact as floats."
    note = ""
    loaded_as_text = [
        c
        for c in columns
        if c in batch.table.column_names
        and (batch.table.schema.field(c).metadata or {}).get(MIXED_TYPES)
    ]
    if loaded_as_text and "payload" not in batch.table.column_names:
        note = (
            f" ({loaded_as_text[0]} was loaded as text because its values had several types; "
            "read with keep_payload=True, or from (client, stream), to see each as written.)"
        )
    return FieldTypeMismatch(
        f"Cannot sum {column_names} into `{field}`: it holds {described or 'no value'}. "
        f"{rules}{note} {advice}",
        field=field,
        column=", ".join(columns),
        types={kind: list(where) for kind, where in places.items()},
        problems=problems or ["unknown"],
    )


_ADDABLE = frozenset(("int", "float", "number as text"))


def _advice(fault: list[tuple[Any, Any]], columns: list[str]) -> str:
    versioned = [(t, v) for t, v in fault if v is not None]
    payload = [c for c in columns if c.startswith(PAYLOAD_PREFIX)]
    if versioned and payload and len(versioned) == len(fault):
        keys = ", ".join(f"({t!r}, {v})" for t, v in versioned)
        leaf = payload[0][len(PAYLOAD_PREFIX) :]
        return (
            f"Add an upcaster for {keys} that makes `{leaf}` a number "
            "(Projection.declarative(..., upcasters=...)), or sum a different field."
        )
    return "Have the producers write a number there, or sum a different field."
