"""Concatenating tables whose schemas differ: real streams change shape over time.

Columns are matched by name, missing columns become nulls, and a column whose type differs
between tables takes the narrowest type that holds every value: null < int < float,
string beside numbers or booleans becomes string, anything beside binary becomes binary
(non-UTF-8 bytes are kept, never mangled). Nested types fall back to Arrow's permissive
promotion, then to their JSON text.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["MIXED_ATTR", "MIXED_TYPES", "unify_tables"]


MIXED_TYPES = b"auditkit.mixed_types"
"""Field metadata on a column whose values had different types and were made text: the
typed column is no longer exact for those rows (`1` became `"1"`)."""


MIXED_ATTR = "auditkit.mixed_types"
"""`DataFrame.attrs` key naming the columns with the `MIXED_TYPES` mark (pandas keeps no
field metadata)."""


def unify_tables(tables: Sequence[pa.Table]) -> pa.Table:
    """One table holding every row of `tables`, in order, under a common schema."""
    tables = [t for t in tables if t.num_columns or t.num_rows]
    if not tables:
        return pa.table({})
    if len(tables) == 1:
        return tables[0]
    names: dict[str, list[pa.DataType]] = {}
    marked: set[str] = set()
    for table in tables:
        for field in table.schema:
            names.setdefault(field.name, []).append(field.type)
            if field.metadata and MIXED_TYPES in field.metadata:
                marked.add(field.name)
    first = tables[0].schema
    if all(t.schema.equals(first) for t in tables[1:]) and all(
        first.field(name).metadata and MIXED_TYPES in first.field(name).metadata for name in marked
    ):
        return pa.concat_tables(tables)
    fields = []
    for name, types in names.items():
        target = _common_type(types)
        seen = {str(t) for t in types if not pa.types.is_null(t)}
        if name in marked or (len(seen) > 1 and pa.types.is_string(target)):
            # A flag, not the list of types seen: that list would depend on how the rows
            # were split into pieces, and archive files must not.
            fields.append(pa.field(name, target, metadata={MIXED_TYPES: b"1"}))
        else:
            fields.append(pa.field(name, target))
    target_schema = pa.schema(fields)
    return pa.concat_tables([_conform(t, target_schema) for t in tables])


def _common_type(types: list[pa.DataType]) -> pa.DataType:
    distinct: list[pa.DataType] = []
    for t in types:
        if not pa.types.is_null(t) and all(not t.equals(d) for d in distinct):
            distinct.append(t)
    if not distinct:
        return pa.null()
    if len(distinct) == 1:
        return distinct[0]
    if any(pa.types.is_binary(t) or pa.types.is_large_binary(t) for t in distinct):
        return pa.binary()
    if all(pa.types.is_integer(t) for t in distinct):
        return pa.int64()
    if all(pa.types.is_integer(t) or pa.types.is_floating(t) for t in distinct):
        return pa.float64()
    if all(_is_scalar(t) for t in distinct):
        return pa.string()
    try:
        unified = pa.unify_schemas(
            [pa.schema([("x", t)]) for t in distinct], promote_options="permissive"
        )
        return unified.field("x").type
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return pa.string()


def _is_scalar(t: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_boolean(t)
        or pa.types.is_temporal(t)
    )


def _conform(table: pa.Table, target: pa.Schema) -> pa.Table:
    columns = []
    for field in target:
        index = table.schema.get_field_index(field.name)
        if index < 0:
            columns.append(pa.nulls(table.num_rows, field.type))
            continue
        column = table.column(index)
        columns.append(column if column.type.equals(field.type) else _cast(column, field.type))
    return pa.Table.from_arrays(columns, schema=target)


def _cast(column: pa.ChunkedArray, to: pa.DataType) -> pa.ChunkedArray:
    try:
        return pc.cast(column, to)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        if not pa.types.is_string(to):
            raise
    # Lists or structs that no promotion reconciles are kept as their JSON text.
    texts = [None if v is None else json.dumps(v, default=str) for v in column.to_pylist()]
    return pa.chunked_array([pa.array(texts, pa.string())])
