"""What a declarative `sum` adds: numbers, and text that spells a number exactly.

Producers change a field's type between schema versions: `amount` is `12` in v1 and
`"12.50"` in v2. Loaded together such a column becomes text (`auditkit.mixed_types`,
docs/load.md), which no database sums. A sum therefore takes

- an int or a float as it is;
- text holding a JSON number literal (`"12"`, `"-3.5"`, `"1e3"`) as the number it spells,
  the number a producer writing it unquoted would have sent: an int for an integer literal
  (within int64), else a float, when the float reads back as the same number (at most 15
  significant digits, within the float range);
- when one sum meets both ints and floats it adds floats, so every int must be exact as a
  float (at most 2**53 in magnitude);

and nothing else: other text, booleans, bytes, lists. The Python handler (`as_number`) and
the DuckDB query (`numbers`) apply the same rules, so both paths answer the same or refuse
the same.
"""

from __future__ import annotations

import re
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["EXACT_INT", "NotANumber", "as_number", "exact_as_float", "kind_of", "numbers"]

_INTEGER = r"-?(?:0|[1-9][0-9]*)"
_NUMBER = _INTEGER + r"(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?"
_INTEGER_TEXT = re.compile(_INTEGER)
_NUMBER_TEXT = re.compile(_NUMBER)
_FLOAT_DIGITS = 15
"""Significant digits a float holds exactly: text with at most this many reads back as is."""
_FLOAT_MIN, _FLOAT_MAX = 2.2250738585072014e-308, 1.7976931348623157e308
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
EXACT_INT = 2**53
"""The largest magnitude every int up to which a float holds exactly."""


class NotANumber(TypeError):
    """A value a sum cannot add; the projection turns it into one FieldTypeMismatch."""

    def __init__(self, field: str, value: Any) -> None:
        self.field = field
        super().__init__(f"`{value!r}` is not a number")


def as_number(field: str, value: Any) -> int | float:
    """`value` as the number a sum adds, or NotANumber."""
    if isinstance(value, bool):
        raise NotANumber(field, value)
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        if _INTEGER_TEXT.fullmatch(value):
            number = int(value)
            if _INT64_MIN <= number <= _INT64_MAX:
                return number
        elif _NUMBER_TEXT.fullmatch(value) and _exact_float_text(value):
            return float(value)
    raise NotANumber(field, value)


def kind_of(value: Any) -> str:
    """The kind of a value as an error message names it."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        if _INTEGER_TEXT.fullmatch(value) or _NUMBER_TEXT.fullmatch(value):
            try:
                as_number("", value)
            except NotANumber:
                return "number as text beyond int64 or float precision"
            return "number as text"
        return "text"
    if isinstance(value, (bytes, bytearray)):
        return "bytes"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, dict) or hasattr(value, "keys"):
        return "object"
    return type(value).__name__


def numbers(column: pa.ChunkedArray, used: pa.ChunkedArray) -> pa.ChunkedArray | None:
    """`column` as int64 or float64 where `used` is true (null elsewhere); None if it cannot be.

    The vectorised twin of `as_number`, for the values a sum uses.
    """
    if column.num_chunks > 1:
        # A column whose type changed can come one chunk per row; every vectorised step
        # below would pay per chunk, many times over, what one concatenation costs.
        column = pa.chunked_array([column.combine_chunks()])
    kind = column.type
    if pa.types.is_dictionary(kind):
        column, kind = column.cast(kind.value_type), kind.value_type
    if pa.types.is_null(kind):
        return pa.chunked_array([pa.nulls(len(column), pa.int64())])
    if pa.types.is_integer(kind):
        try:
            values = pc.cast(column, pa.int64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None
        return pc.if_else(used, values, pa.scalar(None, pa.int64()))
    if pa.types.is_floating(kind):
        values = pc.cast(column, pa.float64())
        return pc.if_else(used, values, pa.scalar(None, pa.float64()))
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        return None
    texts = pc.if_else(used, pc.cast(column, pa.string()), pa.scalar(None, pa.string()))
    if not _all(pc.match_substring_regex(texts, f"^{_NUMBER}$")):
        return None
    integers = pc.match_substring_regex(texts, f"^{_INTEGER}$")
    if _all(integers):
        try:
            return pc.cast(texts, pa.int64())
        except pa.ArrowInvalid:  # beyond int64
            return None
    fractions = pc.filter(texts, pc.invert(integers))
    if not _exact_float_texts(fractions):
        return None
    if _any(integers):
        # Integer literals among floats are added as floats: each must be exact as one.
        try:
            whole = pc.cast(pc.filter(texts, integers), pa.int64())
        except pa.ArrowInvalid:
            return None
        if not exact_as_float(whole):
            return None
    return pc.cast(texts, pa.float64())


def exact_as_float(integers: pa.ChunkedArray | pa.Array) -> bool:
    """Every int is exact as a float (at most 2**53 in magnitude)."""
    try:
        pc.cast(integers, pa.float64())  # a safe cast refuses beyond 2**53
    except pa.ArrowInvalid:
        return False
    return True


def _exact_float_text(text: str) -> bool:
    mantissa = re.split("[eE]", text, maxsplit=1)[0]
    digits = mantissa.replace("-", "").replace(".", "").strip("0")
    if len(digits) > _FLOAT_DIGITS:
        return False
    magnitude = abs(float(text))
    return not digits or _FLOAT_MIN <= magnitude <= _FLOAT_MAX


def _exact_float_texts(texts: pa.ChunkedArray) -> bool:
    if len(texts) == 0:
        return True
    mantissas = pc.replace_substring_regex(texts, "[eE].*$", "")
    digits = pc.utf8_trim(pc.replace_substring_regex(mantissas, "[-.]", ""), "0")
    if not _all(pc.less_equal(pc.utf8_length(digits), _FLOAT_DIGITS)):
        return False
    try:
        magnitude = pc.abs(pc.cast(texts, pa.float64()))
    except pa.ArrowInvalid:
        return False
    in_range = pc.and_(
        pc.greater_equal(magnitude, _FLOAT_MIN), pc.less_equal(magnitude, _FLOAT_MAX)
    )
    # A zero literal ("0.0") has no significant digit and is exact.
    return _all(pc.or_(in_range, pc.equal(pc.utf8_length(digits), 0)))


def _all(mask: pa.ChunkedArray) -> bool:
    """Every non-null value is true (nulls are rows the sum does not use)."""
    return pc.all(mask, skip_nulls=True).as_py() is not False


def _any(mask: pa.ChunkedArray) -> bool:
    return pc.any(mask, skip_nulls=True).as_py() is True
