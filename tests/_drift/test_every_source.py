"""Schema drift reads the same events alike from every source: a table from `read_arrow`,
`(client, stream)`, an archive after export, and a DataFrame where it holds what the table
holds.

Generated streams have event types, versions, producers, and payload fields whose type
changes over time (number to text, text to number, booleans, lists), that appear and
disappear, as JSON or msgpack, with now and then a payload that does not decode. Whatever
the batches, the archive's files or the pages, the findings, timeline and field table must
be equal.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from datetime import UTC, datetime

import msgpack
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import auditkit as ak

BASE = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000)
HOUR = 3_600_000
DAY = 24 * HOUR
ABSENT = object()

VALUES = {
    "integer": st.integers(-(2**40), 2**40) | st.sampled_from([0, 7, 12, 100]),
    "float": st.floats(-1e6, 1e6, allow_nan=False, width=64) | st.sampled_from([2.5, 10.0, 1e20]),
    # Digits and the letters of `true`/`false` and exponents: text that reads like a value.
    "text": st.text(alphabet="0123456789.-eatrufls", max_size=5)
    | st.sampled_from(["12", "2.50", "true", "ten", "[1]", "-0"]),
    "boolean": st.booleans(),
    "list": st.lists(st.integers(0, 9), max_size=3) | st.lists(st.sampled_from("ab"), max_size=2),
    "null": st.none(),
    "absent": st.just(ABSENT),
}
FIELDS = ("amount", "code", "flag", "tags")


@st.composite
def streams(draw):
    """Events in record time order, each field's kind changing at most twice over time."""
    n = draw(st.integers(1, 30))
    gaps = draw(st.lists(st.integers(0, 40 * HOUR), min_size=n, max_size=n))
    kinds = st.lists(st.sampled_from(sorted(VALUES)), min_size=1, max_size=3)
    # Not a float and a boolean in one field: see test_a_boolean_after_a_float_in_one_page.
    kinds = kinds.filter(lambda k: not {"float", "boolean"} <= set(k))
    schedules = {name: draw(kinds) for name in FIELDS}
    events = []
    when = BASE
    for i, gap in enumerate(gaps):
        when += gap
        payload = {}
        for name, kinds in schedules.items():
            value = draw(VALUES[kinds[i * len(kinds) // n]])
            if value is not ABSENT:
                payload[name] = value
        if draw(st.booleans()):
            payload["meta"] = {"channel": draw(st.sampled_from(["web", "app"]))}
        events.append(
            {
                "id": f"{when}-{i}",
                "type": draw(st.sampled_from(["Placed", "Paid"])),
                "version": draw(st.sampled_from([None, 1, 2])),
                "producer": draw(st.sampled_from([None, "shop", "legacy"])),
                # Now and then a payload that is no JSON: its row stays, with payload_error.
                "payload": payload if draw(st.integers(0, 9)) else "{not json",
            }
        )
    return events


ENVELOPES = {
    # Payloads that do not decode are part of the data here: the read's check is off.
    "json": {"min_match": 0},
    "msgpack": {"decoder": "msgpack", "min_match": 0},
}


def _write(r, stream, events, payload_format="json"):
    pipe = r.pipeline(transaction=False)
    for event in events:
        payload = event["payload"]
        fields = {"type": event["type"], "payload": payload}
        if isinstance(payload, dict):
            packed = msgpack.packb(payload) if payload_format == "msgpack" else json.dumps(payload)
            fields["payload"] = packed
        if event["version"] is not None:
            fields["schema_version"] = str(event["version"])
        if event["producer"] is not None:
            fields["producer"] = event["producer"]
        pipe.xadd(stream, fields, id=event["id"])
    pipe.execute()


def _assert_same(report, expected, source):
    for part in ("findings", "timeline", "fields"):
        pd.testing.assert_frame_equal(
            getattr(report, part), getattr(expected, part), obj=f"{source} {part}"
        )


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    events=streams(),
    payload_format=st.sampled_from(sorted(ENVELOPES)),
    window=st.sampled_from(["day", "week", "month", "6h"]),
    batch_size=st.integers(1, 8),
    rows_per_file=st.integers(1, 8),
)
def test_every_source_gives_the_same_drift(
    r, events, payload_format, window, batch_size, rows_per_file
):
    envelope = ENVELOPES[payload_format]
    r.delete("s")
    _write(r, "s", events, payload_format)
    table = ak.read_arrow(r, "s", envelope=envelope)
    expected = ak.schema_drift(table, window=window)
    assert expected.timeline["events"].sum() == len(events)

    _assert_same(ak.schema_drift(table, window=window, batch_size=batch_size), expected, "table")
    from_redis = ak.schema_drift((r, "s"), window=window, batch_size=batch_size, envelope=envelope)
    _assert_same(from_redis, expected, "(client, stream)")
    with tempfile.TemporaryDirectory() as folder:
        archive = ak.Archive(folder, rows_per_file=rows_per_file, envelope=envelope)
        archive.export(r, "s")
        _assert_same(ak.schema_drift(archive, window=window), expected, "archive")
        _assert_same(ak.schema_drift((archive, "s"), window=window), expected, "(archive, s)")

    # pandas keeps no field metadata: a DataFrame holds what the table holds only where no
    # field had values of several types (see test_a_dataframe_gives_the_same_drift).
    marked = [f.name for f in table.schema if f.metadata and b"auditkit.mixed_types" in f.metadata]
    if not marked:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # text that looks like numbers
            frame = ak.read_pandas(r, "s", envelope=envelope)
            frame_report = ak.schema_drift(frame, window=window)
        _assert_same(frame_report, expected, "frame")


# ---- the cases the property is about, spelled out ------------------------------------------


def _add(r, stream, day, payload, *, version=1, event_type="Paid", seq=0):
    fields = {"type": event_type, "schema_version": str(version), "payload": json.dumps(payload)}
    r.xadd(stream, fields, id=f"{BASE + day * 24 * HOUR}-{seq}")


def _details(report):
    return list(report.findings["detail"])


@pytest.fixture
def amount_turns_to_text(r):
    """`amount` is a number in January and text in February, with no version bump."""
    for day in range(0, 28, 3):
        _add(r, "shop", day, {"amount": 10, "currency": "EUR"})
    for day in range(31, 59, 3):
        _add(r, "shop", day, {"amount": "10.50", "currency": "EUR"})
    return r


def test_a_loaded_table_finds_a_number_turned_text(amount_turns_to_text, tmp_path):
    r = amount_turns_to_text
    change = (
        "`Paid` v1: field `amount` changes type from integer to string in 2026-02 with no new "
        "schema version"
    )
    from_redis = ak.schema_drift((r, "shop"))
    assert change in _details(from_redis)
    archive = ak.Archive(tmp_path, rows_per_file=2)
    archive.export(r, "shop")
    for source in (ak.read_arrow(r, "shop"), ak.read_arrow(r, "shop", keep_payload=True), archive):
        report = ak.schema_drift(source)
        assert change in _details(report)
        _assert_same(report, from_redis, type(source).__name__)
    amount = from_redis.fields[from_redis.fields["field"] == "amount"]
    assert amount.set_index("window")["types"].to_dict() == {
        "2026-01": "integer",
        "2026-02": "string",
    }


def test_text_that_looks_like_numbers_stays_text(r):
    # `code` was always text: "12" is a string here, not an integer turned text.
    for day, code in enumerate(["12", "AB", "7", "x-1", "0012", "true"]):
        _add(r, "codes", day * 10, {"code": code})
    for source in ((r, "codes"), ak.read_arrow(r, "codes")):
        report = ak.schema_drift(source)
        assert report.findings.empty, report.findings
        assert set(report.fields["types"]) == {"string"}


def test_numbers_written_as_the_same_text_are_a_hidden_drift(r, tmp_path):
    # 40 then "15": the loaded table holds "40" and "15", which read alike. The report says
    # a field was written with several types that it cannot tell apart, not "no drift".
    _add(r, "orders", 0, {"amount": 40}, event_type="Placed")
    _add(r, "orders", 10, {"amount": "15"})
    archive = ak.Archive(tmp_path)
    archive.export(r, "orders")
    expected = ak.schema_drift((r, "orders"))
    assert list(expected.findings["check"]) == ["hidden-types"]
    assert _details(expected) == [
        "field `amount` was written with values of several types, which the loader made text, "
        'yet every value reads as integer: the events that wrote another type (`"15"` for `15`, '
        "say) cannot be told apart (event types: `Paid`, `Placed`)"
    ]
    for source in (ak.read_arrow(r, "orders"), archive):
        _assert_same(ak.schema_drift(source), expected, type(source).__name__)


def test_text_in_one_page_and_numbers_in_the_next_read_alike(r):
    # The first page of 5,000 holds only text ("7"): read alone, nothing marks it mixed; the
    # numbers of the second page do, and the text is then read as a table of both reads it.
    pipe = r.pipeline(transaction=False)
    for i in range(6_000):
        amount = "7" if i < 5_000 else 7
        fields = {"type": "Paid", "payload": json.dumps({"amount": amount, "n": i})}
        pipe.xadd("pages", fields, id=f"{BASE + i * 60_000}-0")
    pipe.execute()
    expected = ak.schema_drift(ak.read_arrow(r, "pages"), window="day")
    assert list(expected.findings["check"]) == ["hidden-types"]
    _assert_same(ak.schema_drift((r, "pages"), window="day", batch_size=5_000), expected, "redis")


def test_an_archive_and_one_of_its_streams(amount_turns_to_text, tmp_path):
    r = amount_turns_to_text
    _add(r, "other", 0, {"note": "x"}, event_type="Noted")
    archive = ak.Archive(tmp_path)
    for stream in ("shop", "other"):
        archive.export(r, stream)
    assert set(ak.schema_drift(archive).timeline["event_type"]) == {"Noted", "Paid"}
    _assert_same(ak.schema_drift((archive, "shop")), ak.schema_drift((r, "shop")), "archive")


def test_a_dataframe_says_when_it_cannot_know_a_type(amount_turns_to_text):
    # read_pandas names the mixed columns in the frame's attrs; a frame that lost them (a
    # CSV read back, some pandas operations) cannot tell a number made text from text.
    frame = ak.read_pandas(amount_turns_to_text, "shop")
    frame.attrs.clear()
    with pytest.warns(UserWarning, match=r"`amount` hold text that reads as numbers"):
        report = ak.schema_drift(frame)
    assert report.timeline["events"].sum() == 20


def test_a_dataframe_gives_the_same_drift(amount_turns_to_text):
    r = amount_turns_to_text
    report = ak.schema_drift(ak.read_pandas(r, "shop"))
    _assert_same(report, ak.schema_drift(ak.read_arrow(r, "shop")), "frame")


def test_a_boolean_after_a_float_in_one_page(r, tmp_path):
    _add(r, "flags", 0, {"x": 2.5, "y": "a"})
    _add(r, "flags", 1, {"x": True, "y": 1})  # `y` conflicts: the page is read in Python
    archive = ak.Archive(tmp_path)  # a file per day: `x` a float, then a boolean
    archive.export(r, "flags")
    expected = ak.schema_drift(archive, window="day")
    assert "`x` has several types" not in " ".join(expected.findings["detail"])
    assert set(expected.fields[expected.fields["field"] == "x"]["types"]) == {"number", "boolean"}
    _assert_same(ak.schema_drift(ak.read_arrow(r, "flags"), window="day"), expected, "table")


def _flat_scans(r):
    """Flat fields: `code` is digits on the first day, digits and letters on the second."""
    for i in range(10):
        r.xadd("scans", {"type": "Scan", "code": "12", "n": str(i)}, id=f"{BASE + i}-0")
    for i in range(10):
        code = "AB" if i % 2 else "12"
        r.xadd("scans", {"type": "Scan", "code": code, "n": str(i)}, id=f"{BASE + DAY + i}-0")


def test_a_flat_stream_reads_alike_as_a_table_and_from_redis(r):
    _flat_scans(r)
    expected = ak.schema_drift(ak.read_arrow(r, "scans", envelope="flat"), window="day")
    assert set(expected.fields["field"]) == {"code", "n"}
    _assert_same(
        ak.schema_drift((r, "scans"), envelope="flat", window="day", batch_size=3),
        expected,
        "(client, stream)",
    )


def test_a_flat_stream_reads_alike_from_an_archive(r, tmp_path):
    # One page of both days makes `code` text, the archive's first file (the first day's
    # ten entries) integers: text of numbers and letters carries the mixed-types mark, so
    # both reads count each value's own type.
    _flat_scans(r)
    archive = ak.Archive(tmp_path, envelope="flat", rows_per_file=10)
    archive.export(r, "scans")
    expected = ak.schema_drift(ak.read_arrow(r, "scans", envelope="flat"), window="day")
    _assert_same(ak.schema_drift(archive, window="day"), expected, "archive")
