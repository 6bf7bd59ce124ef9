"""The JSON type of a typed column's values: plain unit tests and the round-trip property
that makes sources agree (a number made text reads as the number it was)."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from auditkit._drift.collect import collect
from auditkit._drift.windows import parse_window

MIXED = {b"auditkit.mixed_types": b"1"}


def _types(values, type_=None, *, mixed=False):
    """The types one cell counts for a column `payload.x` holding `values`."""
    column = values if isinstance(values, pa.Array) else pa.array(values, type_)
    n = len(column)
    table = pa.table(
        {
            "stream": pa.array(["s"] * n),
            "ts": pa.array([0] * n, pa.timestamp("ms", tz="UTC")),
            "event_type": pa.array(["T"] * n),
            "payload.x": column,
        }
    )
    if mixed:
        table = table.cast(table.schema.set(3, table.schema.field(3).with_metadata(MIXED)))
    observed = collect([table], window=parse_window("day"), producer_field="producer")
    (cell,) = observed.cells.values()
    return dict(cell.types.get("x", {})), cell.present.get("x", 0)


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("10", "integer"),
        ("-0", "integer"),
        ("12345678901234567890123", "integer"),  # beyond 64 bits, still a whole number
        ("2.5", "number"),
        ("1e-7", "number"),
        ("1e+20", "integer"),  # how Arrow writes 1e20, a whole number
        ("1.23456789012e+11", "integer"),
        ("2.50", "string"),  # no number is written so: it was text
        ("99.0", "integer"),  # how JSON writes the float 99
        ("1e-07", "number"),  # how JSON writes 1e-7
        ("1.00", "string"),
        ("1e5", "string"),
        ("+1", "string"),
        ("01", "string"),
        (".5", "string"),
        ("true", "boolean"),
        ("false", "boolean"),
        ("True", "string"),
        ("[1, 2]", "array"),
        ("[]", "array"),
        ('{"a": 1}', "object"),
        ("ten", "string"),
        ("", "string"),
    ],
)
def test_text_in_a_mixed_column_reads_as_what_it_was(text, kind):
    assert _types([text, None], mixed=True) == ({kind: 1}, 1)
    # In a column that only ever held text, text is text.
    assert _types([text, None]) == ({"string": 1}, 1)


def test_typed_columns():
    assert _types([1, None, 3]) == ({"integer": 2}, 2)
    assert _types([10.0, 2.5, None]) == ({"integer": 1, "number": 1}, 2)
    assert _types([True, None]) == ({"boolean": 1}, 1)
    assert _types([[1], [], None]) == ({"array": 2}, 2)
    assert _types([None, None], pa.int64()) == ({}, 0)
    assert _types(["7", "x"], pa.large_string(), mixed=True) == ({"integer": 1, "string": 1}, 2)
    assert _types(pa.array(["7", "x", "7"]).dictionary_encode(), mixed=True) == (
        {"integer": 2, "string": 1},
        3,
    )
    # Bytes that are not UTF-8 are no number, whatever their first byte.
    assert _types([b"1\xff", b"2"], pa.binary(), mixed=True) == ({"string": 2}, 2)


def test_a_sliced_column_reads_its_own_values():
    column = pa.array(["x", "1", None, "true", "y"]).slice(1, 3)
    assert _types(column, mixed=True) == ({"integer": 1, "boolean": 1}, 2)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_a_float_made_text_reads_as_the_float(value):
    # The loader writes a float as Arrow does (unifying pieces) or as JSON does (within one).
    for as_text in (pc.cast(pa.array([value]), pa.string()), pa.array([json.dumps(value)])):
        assert _types(as_text, mixed=True) == _types([value])


@given(st.integers(-(2**63), 2**63 - 1) | st.booleans())
def test_an_integer_or_boolean_made_text_reads_as_itself(value):
    typed = pa.array([value])
    assert _types(pc.cast(typed, pa.string()), mixed=True) == _types(typed)
