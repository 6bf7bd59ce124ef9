"""Turning a raw page of stream entries into an Arrow table with the frame's columns.

The work is split in three so that a load runs close to the speed hiredis parses:
`extract` splits a page into per-field lists with C-speed list operations (no Python loop
per entry when the entries share their field names, the usual case); `prepare` turns them
into Arrow arrays (the part that needs Python objects, on the reading thread); `finish`
parses IDs, times and the payload JSON in bulk with pyarrow, which releases the GIL, on a
worker thread.

Rows are never dropped: a payload that is not JSON (or not UTF-8, or not an object) keeps
its row with null payload columns and `payload_error` saying why; a field that is not
UTF-8 keeps its bytes in a binary column.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from auditkit._load.decoders import decode_payloads, flat_mixed, type_flat
from auditkit._load.envelope import Envelope
from auditkit._load.unify import MIXED_TYPES
from auditkit._redis.pages import RawPage
from auditkit._redis.text import shown

__all__ = [
    "BASE_COLUMNS",
    "Extracted",
    "Prepared",
    "empty_table",
    "extract",
    "finish",
    "prepare",
]

BASE_COLUMNS = (
    "stream",
    "id",
    "ts",
    "seq",
    "event_type",
    "aggregate_id",
    "schema_version",
    "occurred_at",
)
PAYLOAD_PREFIX = "payload."
_RESERVED = frozenset((*BASE_COLUMNS, "fields", "payload", "payload_error"))
_INT64_MAX = 2**63 - 1
_TS_TYPE = pa.timestamp("ms", tz="UTC")
_OCCURRED_TYPE = pa.timestamp("us", tz="UTC")
_SNIPPET = 80


@dataclass(slots=True)
class Extracted:
    """A page's columns as Python lists of bytes (None where an entry lacks the field)."""

    stream: str
    ids: list[bytes]
    fields: dict[bytes, list[bytes | None]]
    rows: list[list[bytes]]
    names: list[bytes] | None = None  # when every entry has exactly these fields, in order


def extract(page: RawPage, stream: str) -> Extracted:
    """Split a raw page into per-field value lists, at C speed for uniform entries."""
    n = len(page)
    ids = list(map(itemgetter(0), page))
    rows = list(map(itemgetter(1), page))
    widths = set(map(len, rows))
    if len(widths) == 1:
        width = widths.pop()
        names = rows[0][0:width:2]
        # One flat list [f1, v1, f2, v2, ...] of every entry: a column, or the names at a
        # position, is a strided slice; each entry is checked to carry the same names.
        flat = list(chain.from_iterable(rows))
        if len(set(names)) == len(names) and all(
            flat[2 * j :: width].count(name) == n for j, name in enumerate(names)
        ):
            return Extracted(
                stream,
                ids,
                {name: flat[2 * j + 1 :: width] for j, name in enumerate(names)},
                rows,
                names,
            )
    return Extracted(stream, ids, _extract_irregular(rows), rows)


def _extract_irregular(rows: list[list[bytes]]) -> dict[bytes, list[bytes | None]]:
    # Entries with different field sets or orders: one pass per entry, still no row lost.
    n = len(rows)
    columns: dict[bytes, list[bytes | None]] = {}
    for i, row in enumerate(rows):
        for k in range(0, len(row) - 1, 2):
            name = row[k]
            column = columns.get(name)
            if column is None:
                column = columns[name] = [None] * n
            # XADD accepts a field name twice in one entry; keep both values.
            copy = 2
            while column[i] is not None:
                name = row[k] + b"#%d" % copy
                column = columns.get(name) or columns.setdefault(name, [None] * n)
                copy += 1
            column[i] = row[k + 1]
    return columns


@dataclass(slots=True)
class Prepared:
    """A page's columns built under the GIL, with the GIL-free work still to do."""

    columns: dict[str, pa.Array]
    payload: list[bytes | None] | None
    envelope: Envelope
    stream: str
    errors: dict[int, str] = dataclass_field(default_factory=dict)
    flat: dict[str, pa.Array] = dataclass_field(default_factory=dict)
    present: int = 0  # entries that carry the payload field (all of them, for flat)
    names: tuple[str, ...] = ()  # the field names seen on the page
    extras: int = 0  # fields that are neither an envelope field nor the payload
    # Concepts with a payload path among their sources: their sources in order, each an
    # array (a field's or the key's values) or a path, resolved once the payload is parsed.
    pending: dict[str, list[pa.Array | str]] = dataclass_field(default_factory=dict)


def prepare(
    page: Extracted, envelope: Envelope, *, keep_payload: bool = False, keep_fields: bool = False
) -> Prepared:
    """Build the columns that need Python objects (IDs, text fields); run on the caller.

    With `keep_payload`, the payload's JSON text is kept too, in column `payload` (for a
    decoder other than JSON, the JSON it decoded to; no column for flat fields); with
    `keep_fields`, every entry's original field/value pairs, byte-exact and in order, in
    column `fields` (what the archive stores to restore entries exactly).
    """
    n = len(page.ids)
    fields = dict(page.fields)
    names = tuple(name.decode("utf-8", "backslashreplace") for name in fields)
    payload_name = envelope.payload.encode() if envelope.payload else None
    flat = envelope.decoder == "flat"
    decoded = None
    if payload_name is not None:
        raw_values = fields.get(payload_name)
        if raw_values is not None and envelope.decoder != "json":
            decoded = decode_payloads(envelope, raw_values)
            for header, values in decoded.fields.items():
                fields.setdefault(header, values)  # a header never hides a real field
    # Each field's values as one binary array, converted once: text columns are casts of
    # it, and the archive's raw `fields` column interleaves them again.
    keep_raw_payload = keep_payload or keep_fields
    binary = {
        name: pa.array(values, pa.binary())
        for name, values in fields.items()
        if name != payload_name or keep_raw_payload
    }
    id_text = pa.array(page.ids, pa.string())
    # A key that is not UTF-8 is shown (`\\xNN`): an Arrow string holds UTF-8 only.
    columns: dict[str, pa.Array] = {
        "stream": pa.repeat(pa.scalar(shown(page.stream), pa.string()), n)
    }
    columns["id"] = id_text
    taken: set[bytes | None] = {payload_name}
    pending: dict[str, list[pa.Array | str]] = {}
    for concept in envelope.concepts.values():
        parts: list[pa.Array | str] = []
        for source in concept.sources:
            if source.kind == "field":
                taken.add(source.name.encode())
                raw = binary.get(source.name.encode())
                if raw is not None:
                    parts.append(_as_text(raw))
            elif source.kind == "key":
                value = source.from_key(page.stream)
                if value is not None:
                    parts.append(pa.repeat(pa.scalar(shown(value), pa.string()), n))
            else:
                parts.append(source.name)  # a payload path: resolved by `finish`
        if any(isinstance(part, str) for part in parts):
            pending[concept.name] = parts
            columns[concept.name] = pa.nulls(n, pa.string())
        else:
            columns[concept.name] = _first_of([p for p in parts if not isinstance(p, str)], n)
    flat_columns: dict[str, pa.Array] = {}
    for raw_name, raw in binary.items():
        if raw_name in taken:
            continue
        name = raw_name.decode("utf-8", "backslashreplace")
        if flat:
            flat_columns[name] = _as_text(raw)
            continue
        if name in _RESERVED or name.startswith(PAYLOAD_PREFIX) or name in columns:
            name = f"fields.{name}"
        columns[name] = _as_text(raw)
    taken.discard(None)
    payload: list[bytes | None] | None
    if decoded is not None:
        payload, errors = decoded.payloads, decoded.errors
    else:
        payload = fields.get(payload_name) if payload_name is not None else None
        errors = {}
    present = n if flat else (n - payload.count(None) if payload is not None else 0)
    if keep_payload and not flat:
        if decoded is not None:
            columns["payload"] = _as_text(pa.array(payload, pa.binary()))
        else:
            raw_payload = binary.get(payload_name) if payload_name is not None else None
            columns["payload"] = _as_text(raw_payload) if raw_payload is not None else pa.nulls(n)
    if keep_fields:
        uniform = page.names is not None
        columns["fields"] = _interleave(page.names, binary) if uniform else raw_fields(page.rows)
    return Prepared(
        columns,
        payload,
        envelope,
        page.stream,
        errors,
        flat_columns,
        present,
        names,
        sum(name not in taken for name in fields),
        pending,
    )


def _first_of(parts: list[pa.Array], n: int) -> pa.Array:
    """The first non-null value of each row across `parts` (text), or nulls."""
    if not parts:
        return pa.nulls(n, pa.string())
    if len(parts) == 1:
        return parts[0]
    if any(pa.types.is_binary(p.type) for p in parts):
        parts = [p.cast(pa.binary()) for p in parts]
    return pc.coalesce(*parts)


def _interleave(names: list[bytes] | None, binary: dict[bytes, pa.Array]) -> pa.Array:
    """The `fields` column of entries that all have `names`, in that order, built from the
    per-field arrays with one take (no Python object touched again)."""
    assert names is not None
    k = len(names)
    n = len(binary[names[0]]) if k else 0
    blocks = [pa.repeat(pa.scalar(name, pa.binary()), n) for name in names]
    blocks += [binary[name] for name in names]
    source = pa.concat_arrays(blocks)
    row = np.arange(n, dtype=np.int64)[:, None]
    field = np.arange(k, dtype=np.int64)[None, :]
    order = np.empty((n, 2 * k), dtype=np.int64)
    order[:, 0::2] = field * n + row
    order[:, 1::2] = (k + field) * n + row
    flat = source.take(pa.array(order.ravel()))
    offsets = pa.array(np.arange(0, 2 * k * n + 1, 2 * k, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, flat, type=RAW_FIELDS_TYPE)


RAW_FIELDS_TYPE = pa.list_(pa.binary())
"""The archive's `fields` column: each entry's fields as Redis returned them, byte for byte:
name, value, name, value, ... in their order (a name may appear twice)."""


def raw_fields(rows: list[list[bytes]]) -> pa.Array:
    """Each entry's [field, value, ...] list as one list<binary> value."""
    flat = pa.array(list(chain.from_iterable(rows)), pa.binary())
    offsets = np.zeros(len(rows) + 1, dtype=np.int32)
    np.cumsum(np.fromiter(map(len, rows), dtype=np.int32, count=len(rows)), out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), flat, type=RAW_FIELDS_TYPE)


def finish(prepared: Prepared) -> pa.Table:
    """Parse IDs, times and payloads with Arrow (which releases the GIL); on a worker."""
    columns = prepared.columns
    n = len(columns["id"])
    # One split and one cast for both halves: [ms0, seq0, ms1, seq1, ...] as uint64.
    halves = pc.cast(pc.list_flatten(pc.split_pattern(columns["id"], "-")), pa.uint64())
    head = {
        "stream": columns.pop("stream"),
        "id": columns.pop("id"),
        "ts": _ms_to_timestamp(halves[0::2]),
        "seq": halves[1::2],
    }
    if prepared.flat:
        typed = {name: type_flat(a) for name, a in prepared.flat.items()}
        # A field of numbers and other text carries the mixed-types mark, as a JSON
        # payload's would: its values had several types (schema drift counts each).
        payload = pa.Table.from_arrays(
            list(typed.values()),
            schema=pa.schema(
                pa.field(
                    name, array.type, metadata={MIXED_TYPES: b"1"} if flat_mixed(array) else None
                )
                for name, array in typed.items()
            ),
        )
        errors = pa.nulls(n, pa.string())
    elif prepared.payload is None:
        payload, errors = pa.table({}), pa.nulls(n, pa.string())
    else:
        payload, errors = _parse_payloads(prepared.payload)
        if prepared.errors:
            decoded = pa.array([prepared.errors.get(i) for i in range(n)], pa.string())
            errors = pc.coalesce(decoded, errors)
    _fill_paths(columns, payload, prepared.pending)
    columns["schema_version"] = _maybe_int(columns["schema_version"])
    columns["occurred_at"] = _to_time(columns["occurred_at"])
    plain = {**head, **columns, "payload_error": errors}
    fields = [pa.field(name, array.type) for name, array in plain.items()]
    # Payload fields keep their metadata (unify_tables marks columns of mixed types).
    fields += [f.with_name(PAYLOAD_PREFIX + f.name) for f in payload.schema]
    arrays = [*plain.values(), *payload.columns]
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _fill_paths(
    columns: dict[str, pa.Array], payload: pa.Table, pending: dict[str, list[pa.Array | str]]
) -> None:
    """Concepts read from a payload path: the first of their sources, in order, with a value."""
    for concept, parts in pending.items():
        n = len(columns[concept])
        arrays = []
        for part in parts:
            if not isinstance(part, str):
                arrays.append(part)
                continue
            name = part[len(PAYLOAD_PREFIX) :]
            if name in payload.column_names:
                arrays.append(_path_text(payload.column(name).combine_chunks()))
        columns[concept] = _first_of(arrays, n)


def _path_text(column: pa.Array) -> pa.Array:
    if pa.types.is_string(column.type) or pa.types.is_binary(column.type):
        return column
    try:
        return pc.cast(column, pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pa.nulls(len(column), pa.string())  # an object or list is no type or id


def empty_table() -> pa.Table:
    """A table with the frame's base columns and no rows."""
    types = [
        pa.string(),
        pa.string(),
        _TS_TYPE,
        pa.uint64(),
        pa.string(),
        pa.string(),
        pa.string(),
        _OCCURRED_TYPE,
    ]
    schema = pa.schema([*zip(BASE_COLUMNS, types, strict=True), ("payload_error", pa.string())])
    return schema.empty_table()


def _ms_to_timestamp(ms: pa.Array) -> pa.Array:
    if len(ms) and pc.max(ms).as_py() > _INT64_MAX:
        # IDs set by hand can exceed any representable time; keep the row, null its time.
        ms = pc.if_else(pc.greater(ms, _INT64_MAX), None, ms)
    return pc.cast(pc.cast(ms, pa.int64()), _TS_TYPE)


def _as_text(raw: pa.Array) -> pa.Array:
    try:
        return raw.cast(pa.string())
    except pa.ArrowInvalid:
        return raw  # not UTF-8: the bytes are kept as they are


def _maybe_int(column: pa.Array) -> pa.Array:
    if not pa.types.is_string(column.type) or column.null_count == len(column):
        return column
    try:
        return pc.cast(column, pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return column


def _to_time(column: pa.Array) -> pa.Array:
    """Effective times: ISO-8601 (naive means UTC) or epoch milliseconds; unparseable -> null."""
    if pa.types.is_binary(column.type) or column.null_count == len(column):
        return pa.nulls(len(column), _OCCURRED_TYPE)
    try:
        return pc.cast(column, _OCCURRED_TYPE)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    try:
        return pc.cast(pc.cast(column, pa.timestamp("us")), _OCCURRED_TYPE)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    import pandas as pd

    text = column.to_pandas()
    epoch = pd.to_numeric(text, errors="coerce")
    parsed = pd.to_datetime(text.where(epoch.isna()), errors="coerce", utc=True, format="ISO8601")
    from_epoch = pd.to_datetime(epoch, errors="coerce", utc=True, unit="ms")
    return pa.array(parsed.fillna(from_epoch), _OCCURRED_TYPE, from_pandas=True)


def _parse_payloads(values: list[bytes | None]) -> tuple[pa.Table, pa.Array]:
    """Parse JSON payloads in bulk: (columns, payload_error), aligned with `values`."""
    n = len(values)
    buffer = _clean_buffer(values)
    if buffer is not None:
        try:
            table = _read_json(buffer)
        except pa.ArrowInvalid:
            pass
        else:
            if table.num_rows == n:  # the reader skips blank lines: then rows are misaligned
                return _flatten(table), pa.nulls(n, pa.string())
    # The careful path: each problem payload becomes an empty object (so its payload
    # columns are null) and an error message; the rest still parse in bulk.
    lines, errors = _prepare_lines(values)
    try:
        table = _read_json_lines(lines)
    except pa.ArrowInvalid:
        # Objects whose types conflict between rows (a number here, text there): column
        # by column in Python, each conflicting column made text and marked.
        table = _read_json_python(lines)
    error_column = pa.array([errors.get(i) for i in range(n)], pa.string())
    return _flatten(table), error_column


def _clean_buffer(values: list[bytes | None]) -> bytes | None:
    """The payloads joined one per line, if that needs no repair; else None."""
    # At C speed and without copies: every payload is present, holds no line break (so
    # line i is payload i) and the whole buffer is UTF-8. Lines that are not JSON objects
    # make the bulk parse fail, which sends the page down the careful path.
    if None in values:
        return None
    joined = b"\n".join(values)  # type: ignore[arg-type]
    if joined.count(b"\n") != len(values) - 1:
        return None
    if joined.isascii():  # the common case, checked far faster than full UTF-8 validation
        return joined
    whole = pa.py_buffer(joined)
    offsets = pa.py_buffer(pa.array([0, len(joined)], pa.int32()).buffers()[1])
    try:
        pa.Array.from_buffers(pa.string(), 1, [None, offsets, whole]).validate(full=True)
    except pa.ArrowInvalid:
        return None
    return joined


def _prepare_lines(values: list[bytes | None]) -> tuple[list[bytes], dict[int, str]]:
    """One JSON object per line; problems become `{}` lines plus an error message."""
    lines: list[bytes] = []
    errors: dict[int, str] = {}
    for i, value in enumerate(values):
        if value is None:
            lines.append(b"{}")
            continue
        problem = None
        try:
            decoded = json.loads(value.decode("utf-8"))
        except UnicodeDecodeError as exc:
            problem = f"payload is not UTF-8 text ({exc.reason} at byte {exc.start})"
        except json.JSONDecodeError as exc:
            problem = f"payload is not valid JSON ({exc.msg} at char {exc.pos}): {_snippet(value)}"
        else:
            if not isinstance(decoded, dict):
                problem = (
                    f"payload is JSON {type(decoded).__name__}, not an object: {_snippet(value)}"
                )
        if problem is not None:
            errors[i] = problem
            lines.append(b"{}")
        elif b"\n" in value or b"\r" in value:
            lines.append(json.dumps(decoded, separators=(",", ":")).encode())
        else:
            lines.append(value)
    return lines, errors


def _snippet(value: bytes) -> str:
    text = value.decode("utf-8", "backslashreplace")
    return repr(text if len(text) <= _SNIPPET else text[:_SNIPPET] + "...")


def _read_json_lines(lines: list[bytes]) -> pa.Table:
    return _read_json(b"\n".join(lines))


def _read_json(buffer: bytes) -> pa.Table:
    options = pj.ReadOptions(use_threads=False, block_size=max(1 << 20, len(buffer) + 1))
    try:
        table = pj.read_json(pa.BufferReader(buffer), read_options=options)
    except pa.ArrowInvalid as exc:
        if "specified twice" not in str(exc):
            raise
        # Duplicate keys are valid JSON (the last one wins); normalise them the same way.
        lines = [
            json.dumps(json.loads(line), separators=(",", ":")).encode()
            for line in buffer.split(b"\n")
        ]
        buffer = b"\n".join(lines)
        table = pj.read_json(pa.BufferReader(buffer), read_options=options)
    if any(_has_timestamp(f.type) for f in table.schema):
        # pyarrow turns some date-like strings into timestamps, by guess and per block: keep
        # text as text so every page agrees, and the value reads as it was written.
        schema = pa.schema([f.with_type(_timestamps_as_text(f.type)) for f in table.schema])
        parse = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="infer")
        table = pj.read_json(pa.BufferReader(buffer), read_options=options, parse_options=parse)
    return table


def _read_json_python(lines: list[bytes]) -> pa.Table:
    """JSON objects as columns, nested objects as dotted names, as the bulk reader gives
    them; a column whose values Arrow cannot hold in one type becomes their text (numbers
    and booleans as JSON writes them) and carries the mixed-types mark."""
    n = len(lines)
    documents = [json.loads(line) for line in lines]
    # A key that holds an object in one event and a value in another stays one column
    # (of text), as the bulk reader's unification makes it: not an object's fields beside
    # a column that silently lacks those events.
    objects: set[str] = set()
    values: set[str] = set()
    for document in documents:
        _kinds(document, "", objects, values)
    both = objects & values
    columns: dict[str, list[Any]] = {}
    for i, document in enumerate(documents):
        for name, value in _leaves(document, both):
            column = columns.get(name)
            if column is None:
                column = columns[name] = [None] * n
            column[i] = value
    fields, arrays = [], []
    for name, column_values in columns.items():
        kinds = {type(v) for v in column_values if v is not None}
        try:
            if bool in kinds and kinds & {int, float}:
                raise pa.ArrowInvalid("booleans beside numbers")  # Arrow would make 1.0 of true
            array = pa.array(column_values)
            metadata = None
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            texts = [v if v is None or isinstance(v, str) else json.dumps(v) for v in column_values]
            array, metadata = pa.array(texts, pa.string()), {MIXED_TYPES: b"1"}
        fields.append(pa.field(name, array.type, metadata=metadata))
        arrays.append(array)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _kinds(document: dict[str, Any], prefix: str, objects: set[str], values: set[str]) -> None:
    for key, value in document.items():
        path = prefix + key
        if isinstance(value, dict):
            objects.add(path)
            _kinds(value, path + ".", objects, values)
        elif value is not None:
            values.add(path)


def _leaves(
    document: dict[str, Any], whole: set[str], prefix: str = ""
) -> Iterator[tuple[str, Any]]:
    for key, value in document.items():
        path = prefix + key
        if isinstance(value, dict) and value and path not in whole:
            yield from _leaves(value, whole, path + ".")
        else:
            yield path, value


def _has_timestamp(t: pa.DataType) -> bool:
    if pa.types.is_timestamp(t):
        return True
    if pa.types.is_struct(t):
        return any(_has_timestamp(t.field(i).type) for i in range(t.num_fields))
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return _has_timestamp(t.value_type)
    return False


def _timestamps_as_text(t: pa.DataType) -> pa.DataType:
    if not _has_timestamp(t):
        return t
    if pa.types.is_timestamp(t):
        return pa.string()
    if pa.types.is_struct(t):
        return pa.struct(
            [
                t.field(i).with_type(_timestamps_as_text(t.field(i).type))
                for i in range(t.num_fields)
            ]
        )
    return pa.list_(_timestamps_as_text(t.value_type))


def _flatten(table: pa.Table) -> pa.Table:
    """Nested objects become dotted columns (`a.b.c`), as pandas.json_normalize names them."""
    while any(pa.types.is_struct(f.type) for f in table.schema):
        table = table.flatten()
    return table
