"""Range bounds at their edges: periods, instants, IDs, and the forms refused."""

from __future__ import annotations

import calendar
import json
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

import auditkit as ak
from auditkit._redis.bounds import end_id, end_time, start_id
from auditkit._redis.ids import MAX_PART

MARCH_1 = 1772323200000  # 2026-03-01T00:00:00Z
DAY = 86_400_000


def _ms(*parts: int) -> int:
    return int(datetime(*parts, tzinfo=UTC).timestamp() * 1000)


@pytest.mark.parametrize(
    ("text", "first", "following"),
    [
        ("2026", _ms(2026, 1, 1), _ms(2027, 1, 1)),
        ("2024", _ms(2024, 1, 1), _ms(2025, 1, 1)),  # leap year: 366 days
        ("2026-03", _ms(2026, 3, 1), _ms(2026, 4, 1)),
        ("2024-02", _ms(2024, 2, 1), _ms(2024, 3, 1)),  # 29 days
        ("2026-12", _ms(2026, 12, 1), _ms(2027, 1, 1)),
        ("2026-03-01", MARCH_1, MARCH_1 + DAY),
        ("20260301", MARCH_1, MARCH_1 + DAY),
        (" 2026-03-31 ", _ms(2026, 3, 31), _ms(2026, 4, 1)),
    ],
)
def test_a_period_starts_at_its_first_instant_and_ends_at_its_last(text, first, following):
    assert start_id(text) == ak.StreamID(first, 0)
    assert end_id(text) == ak.StreamID(following - 1, MAX_PART)
    last = datetime.fromtimestamp(following / 1000, UTC) - timedelta(microseconds=1)
    assert end_time(text) == last


def test_a_date_object_is_the_whole_day():
    assert start_id(date(2026, 3, 1)) == ak.StreamID(MARCH_1, 0)
    assert end_id(date(2026, 3, 1)) == ak.StreamID(MARCH_1 + DAY - 1, MAX_PART)


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("1772323200000", (MARCH_1, 0), (MARCH_1, MAX_PART)),
        ("1772323200000-5", (MARCH_1, 5), (MARCH_1, 5)),
        ("0", (0, 0), (0, MAX_PART)),
        ("0-0", (0, 0), (0, 0)),
        ("123", (123, 0), (123, MAX_PART)),
        ("0999", (999, 0), (999, MAX_PART)),  # zero-padded, not a year
        ("12345678", (12345678, 0), (12345678, MAX_PART)),  # eight digits, no date
        ("2026-03-01T12:00Z", (MARCH_1 + DAY // 2, 0), (MARCH_1 + DAY // 2, MAX_PART)),
    ],
)
def test_ids_and_instants_are_not_periods(text, start, end):
    assert start_id(text) == ak.StreamID(*start)
    assert end_id(text) == ak.StreamID(*end)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("2026-3", "`2026-03`"),  # March, or the ID 2026-3?
        ("2026-13", "not a month"),
        ("2026-00", "not a month"),
        ("2026-02-30", "not a date"),
        ("1969", "before 1970"),
        ("01/03/2026", "day-first or month-first"),
        ("1.3.2026", "day-first or month-first"),
        ("01-03-2026", "day-first or month-first"),
        ("03/01/26 12:00", "day-first or month-first"),
        ("next tuesday", "neither a stream ID"),
        ("-1", "neither a stream ID"),  # pandas reads the year -1, no datetime holds it
        ("-1000-01-01", "neither a stream ID"),
    ],
)
def test_ambiguous_or_impossible_forms_are_refused(text, says):
    for side in (start_id, end_id, end_time):
        with pytest.raises(ak.InvalidStreamID, match=says) as caught:
            side(text)
        assert f"`{text}`" in str(caught.value)
        assert caught.value.value == text


def test_an_id_is_no_effective_time():
    with pytest.raises(ak.InvalidStreamID, match="record time"):
        end_time("1772323200000-0")


@given(st.dates(min_value=date(1970, 1, 1), max_value=date(9998, 12, 31)))
def test_every_day_month_and_year_covers_exactly_its_days(day):
    first = _ms(day.year, day.month, day.day)
    assert start_id(day.isoformat()) == ak.StreamID(first, 0)
    assert end_id(day.isoformat()) == ak.StreamID(first + DAY - 1, MAX_PART)
    month = f"{day.year:04d}-{day.month:02d}"
    days = calendar.monthrange(day.year, day.month)[1]
    assert start_id(month) <= start_id(day.isoformat())
    assert end_id(month).ms - start_id(month).ms + 1 == days * DAY
    year = f"{day.year:04d}"
    assert start_id(year) <= start_id(month) and end_id(month) <= end_id(year)


def test_a_period_bound_reads_the_whole_period(r):
    for entry_id in (
        f"{_ms(2026, 3, 1) - 1}-0",  # the last millisecond of February
        f"{_ms(2026, 3, 1)}-0",
        f"{_ms(2026, 4, 1) - 1}-7",  # the last millisecond of March
        f"{_ms(2026, 4, 1)}-0",
    ):
        r.xadd("b", {"type": "T"}, id=entry_id)
    march = ak.read_arrow(r, "b", start="2026-03", end="2026-03", progress=False)
    assert march.column("id").to_pylist() == [f"{_ms(2026, 3, 1)}-0", f"{_ms(2026, 4, 1) - 1}-7"]
    by_day = ak.read_arrow(r, "b", start="2026-03-31", end="2026-03-31", progress=False)
    assert by_day.column("id").to_pylist() == [f"{_ms(2026, 4, 1) - 1}-7"]
    year = ak.read_arrow(r, "b", start="2026", end="2026", progress=False)
    assert year.num_rows == 4


def test_at_a_period_in_effective_time_takes_the_whole_period(r):
    for n, when in enumerate(
        ["2026-03-31T23:59:59.999999Z", "2026-04-01T00:00:00Z", "2026-02-01T00:00:00Z"]
    ):
        fields = {
            "type": "Deposited",
            "aggregate_id": "a",
            "occurred_at": when,
            "payload": json.dumps({"amount": 10**n}),
        }
        r.xadd("acct", fields)
    total = ak.Projection(0, {"Deposited": lambda s, e: s + e["payload"]["amount"]})
    assert total.state_at((r, "acct"), "a", at="2026-03", clock="effective") == 1 + 100
    assert total.state_at((r, "acct"), "a", at=date(2026, 3, 31), clock="effective") == 101
