"""The JSON type of every value of a typed payload column, with Arrow compute.

A typed column says most of it: integers are `integer`, booleans `boolean`, lists `array`.
A floating-point value is `integer` when it has no fractional part (JSON has one number
type, and `10` and `10.0` are the same number: JSON Schema calls both integers), else
`number`.

Text is `string`, except in a column the loader marked as holding values of several types
made text (`auditkit.mixed_types`): there a text that is exactly how Arrow or JSON writes a
number (`10`, `2.5`, `1e+20`, `99.0`, `1e-07`) or a boolean (`true`), or a JSON list
(`[1, 2]`), was most likely that value and counts as its type; any other text (`"2.50"`,
`"ten"`) is a string.
Which columns are marked is only known once every batch has been seen (a batch may hold
only the text of a field that is a number elsewhere), so text that reads as another type is
counted apart (`maybe`) and settled at the end.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["ColumnKinds", "column_kinds"]

STRING, INTEGER, NUMBER, BOOLEAN, ARRAY, OBJECT = range(6)
_NAMES = ("string", "integer", "number", "boolean", "array", "object")

_INTEGER = r"^-?(0|[1-9][0-9]*)$"
_NUMBER = r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?$"
_ARRAY = r"(?s)^\[.*\]$"
_OBJECT = r"(?s)^\{.*\}$"
_BOOLEANS = pa.array(["true", "false"])

# First bytes a number, a boolean or a JSON text can start with: '-' to '9' (the digits,
# and '.' and '/' which the exact checks then turn down), '[', '{'; 't'/'f' are checked
# with the length of `true`/`false`.
_STARTS = np.zeros(256, dtype=bool)
_STARTS[ord("-") : ord("9") + 1] = True
_STARTS[[ord("["), ord("{")]] = True


@dataclass
class ColumnKinds:
    """One column's values by JSON type, as int8 indicators to sum per group of rows.

    An indicator of None means every present (non-null) value.
    """

    sure: dict[str, pa.Array | None] = field(default_factory=dict)
    maybe: dict[str, pa.Array] = field(default_factory=dict)
    """Text that reads as this type: counted as it if the column is marked mixed, else as
    `string`."""


def column_kinds(column: pa.ChunkedArray) -> ColumnKinds:
    """The JSON types of a column's values (nulls are absent fields and count as none)."""
    t = column.type
    if pa.types.is_dictionary(t):
        column, t = column.cast(t.value_type), t.value_type
    if pa.types.is_null(t) or column.null_count == len(column):
        return ColumnKinds()
    if pa.types.is_integer(t):
        return ColumnKinds({"integer": None})
    if pa.types.is_boolean(t):
        return ColumnKinds({"boolean": None})
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return _numbers(column)
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return ColumnKinds({"array": None})
    if pa.types.is_struct(t) or pa.types.is_map(t):
        return ColumnKinds({"object": None})
    if _is_text(t):
        return _texts(column)
    # Times, durations: JSON writes them as text.
    return ColumnKinds({"string": None})


def _numbers(column: pa.ChunkedArray) -> ColumnKinds:
    values = pc.cast(column, pa.float64())
    whole = pc.equal(pc.floor(values), values)
    count = pc.sum(whole).as_py() or 0
    if count == len(values) - values.null_count:
        return ColumnKinds({"integer": None})
    if count == 0:
        return ColumnKinds({"number": None})
    ones = pc.cast(whole, pa.int8())
    return ColumnKinds({"integer": ones, "number": pc.subtract(pa.scalar(1, pa.int8()), ones)})


def _texts(column: pa.ChunkedArray) -> ColumnKinds:
    candidates = _candidates(column)
    if not candidates.any():
        return ColumnKinds({"string": None})
    try:
        texts = pc.cast(column.filter(pa.array(candidates)), pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return ColumnKinds({"string": None})  # bytes that are not UTF-8 read as no number
    read = _read(texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts)
    if not read.any():
        return ColumnKinds({"string": None})
    codes = np.zeros(len(column), dtype=np.int8)
    codes[candidates] = read
    present = _valid(column)
    kinds = ColumnKinds({"string": pa.array((present & (codes == STRING)).astype(np.int8))})
    for code in np.unique(read[read != STRING]):
        kinds.maybe[_NAMES[code]] = pa.array((codes == code).astype(np.int8))
    return kinds


def _read(texts: pa.Array) -> np.ndarray:
    """What each text would be if it were a value written as text: a code per text."""
    codes = np.zeros(len(texts), dtype=np.int8)
    codes[_mask(pc.is_in(texts, value_set=_BOOLEANS))] = BOOLEAN
    codes[_mask(pc.match_substring_regex(texts, _ARRAY))] = ARRAY
    codes[_mask(pc.match_substring_regex(texts, _OBJECT))] = OBJECT
    integer = _mask(pc.match_substring_regex(texts, _INTEGER))
    codes[integer] = INTEGER
    number = _mask(pc.match_substring_regex(texts, _NUMBER)) & ~integer
    if number.any():
        # Only the ways a float is written as text are one: `2.5` was a number, `2.50`
        # was text.
        where = np.flatnonzero(number)
        text = texts.take(pa.array(where))
        value = pc.cast(text, pa.float64())
        exact = _mask(pc.equal(pc.cast(value, pa.string()), text))
        if not exact.all():
            exact |= _written_by_json(text, exact)
        whole = _mask(pc.equal(pc.floor(value), value))
        codes[where[exact & whole]] = INTEGER
        codes[where[exact & ~whole]] = NUMBER
    return codes


def _written_by_json(texts: pa.Array, known: np.ndarray) -> np.ndarray:
    """Which texts are how JSON writes their float (`99.0`, `1e-07`), where Arrow writes
    it otherwise (`99`, `1e-7`)."""
    # The loader writes values of a column whose types conflict within a page with
    # json.dumps, and those of columns unified across pages with Arrow: both are numbers.
    # Python's float repr is JSON's; it runs once per distinct text, on the few texts
    # Arrow does not write so.
    others = pc.unique(texts.filter(pa.array(~known)))
    written = [t for t in others.to_pylist() if repr(float(t)) == t]
    found: np.ndarray = _mask(pc.is_in(texts, value_set=pa.array(written, pa.string()))) & ~known
    return found


def _candidates(column: pa.ChunkedArray) -> np.ndarray:
    """Which values could be a number, a boolean or JSON text, by their first byte."""
    parts = [_chunk_candidates(chunk) for chunk in column.chunks]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=bool)


def _chunk_candidates(chunk: pa.Array) -> np.ndarray:
    n = len(chunk)
    _, offsets_buffer, data = chunk.buffers()[:3]
    if n == 0 or data is None or data.size == 0:
        return np.zeros(n, dtype=bool)
    width = (
        np.int64
        if pa.types.is_large_string(chunk.type) or pa.types.is_large_binary(chunk.type)
        else np.int32
    )
    offsets = np.frombuffer(offsets_buffer, dtype=width)[chunk.offset : chunk.offset + n + 1]
    starts, lengths = offsets[:-1], np.diff(offsets)
    nonempty = lengths > 0
    first = np.zeros(n, dtype=np.uint8)
    first[nonempty] = np.frombuffer(data, dtype=np.uint8)[starts[nonempty]]
    mask: np.ndarray = nonempty & (
        _STARTS[first]
        | ((first == ord("t")) & (lengths == 4))
        | ((first == ord("f")) & (lengths == 5))
    )
    if chunk.null_count:
        mask &= _valid(chunk)
    return mask


def _valid(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return _mask(pc.is_valid(values))


def _mask(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A boolean result as a numpy mask, null as False."""
    mask: np.ndarray = np.asarray(
        pc.fill_null(values, False).to_numpy(zero_copy_only=False), dtype=bool
    )
    return mask


def _is_text(t: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
    )
