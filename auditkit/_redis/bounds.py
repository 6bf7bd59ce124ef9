"""Range bounds: what `start`, `end` and `at` accept, turned into stream IDs.

A bound is one of:

- a stream ID: `"1772323200000-0"`, or bare milliseconds `"1772323200000"` (every
  sequence of that millisecond), or a `StreamID`;
- an instant: a datetime or pandas.Timestamp, or an ISO-8601 string with a time of day
  (`"2026-03-01T12:00Z"`); naive means UTC;
- a period: a year (`"2026"`), a month (`"2026-03"`), a day (`"2026-03-01"`, `"20260301"`,
  or a `date`). A period as `start` begins at its first instant; as `end` or `at` it takes
  the whole period, up to its last instant;
- `"-"` / `"+"` / None for an open end.

Both ends are inclusive, as in XRANGE. A value that reads as a year or a date is never
taken as an ID, and forms where day and month could be swapped (`"01/03/2026"`) are
refused rather than guessed.
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, date, datetime, timedelta
from typing import Literal, TypeAlias

from auditkit._exceptions import InvalidStreamID
from auditkit._redis.ids import MAX_PART, StreamID, datetime_to_ms

__all__ = ["Bound", "end_id", "end_time", "parse_time", "start_id"]

Bound: TypeAlias = "str | bytes | int | StreamID | datetime | date | None"

_DAY_MS = 86_400_000
_YEAR = re.compile(r"(?P<year>\d{4})")
_MONTH = re.compile(r"(?P<year>\d{4})-(?P<month>\d{1,2})")
_DAY = re.compile(r"(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})")
_BASIC_DAY = re.compile(r"(?P<year>\d{4})(?P<month>\d{2})(?P<day>\d{2})")
_ID = re.compile(r"\d+(?:-\d+)?")
# 01/03/2026, 1.3.26, 01-03-2026: the day-first and month-first readings differ by locale.
_DAY_MONTH_SWAPPABLE = re.compile(r"\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}(?:$|[ T])")


def start_id(value: Bound) -> StreamID | None:
    """The smallest ID inside a range that starts at `value`; None for an open start."""
    return _resolve(value, "start")


def end_id(value: Bound) -> StreamID | None:
    """The largest ID inside a range that ends at `value`; None for an open end."""
    return _resolve(value, "end")


def end_time(text: str) -> datetime:
    """The last instant `text` names: a period's last microsecond, or the instant itself.

    For cuts in effective time (`occurred_at`), where a stream ID means nothing: one is
    refused.
    """
    text = text.strip()
    span = _period(text)
    if span is not None:
        _, following_ms = span
        return datetime.fromtimestamp(following_ms / 1000, UTC) - timedelta(microseconds=1)
    if _ID.fullmatch(text):
        raise InvalidStreamID(
            f"`{text}` is a stream ID, which is record time; with clock='effective' pass a "
            "time (a datetime, a pandas.Timestamp, or an ISO-8601 string).",
            value=text,
        )
    return parse_time(text)


def parse_time(text: str) -> datetime:
    """An ISO-8601 instant (naive means UTC); raises InvalidStreamID naming the value."""
    text = text.strip()
    if _DAY_MONTH_SWAPPABLE.match(text):
        raise InvalidStreamID(
            f"`{text}` could be read day-first or month-first; write the date as ISO-8601, "
            "year first (`2026-03-01`), or pass a datetime.",
            value=text,
        )
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    try:
        import pandas as pd

        parsed = pd.Timestamp(text)
        if pd.isna(parsed):
            raise InvalidStreamID(f"`{text}` is not a time.", value=text)
        # pandas reads `-1` as the year -1, which a datetime cannot hold.
        return parsed.to_pydatetime()
    except (ValueError, TypeError) as exc:
        if isinstance(exc, InvalidStreamID):
            raise
        raise InvalidStreamID(
            f"`{text}` is neither a stream ID (`<ms>-<seq>`, e.g. `1772323200000-0`) nor an "
            "ISO-8601 time (e.g. `2026-03-01T12:00Z`) or date (`2026-03-01`, `2026-03`, "
            "`2026`).",
            value=text,
        ) from exc


def _resolve(value: Bound, side: Literal["start", "end"]) -> StreamID | None:
    if value is None:
        return None
    if isinstance(value, StreamID):
        return value
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if isinstance(value, bool):
        raise InvalidStreamID(f"`{value}` is not a stream ID or a time.", value=value)
    if isinstance(value, int):
        # A bare integer is a millisecond time, like an ID without its sequence part.
        return StreamID(value, 0 if side == "start" else MAX_PART)
    if isinstance(value, str):
        text = value.strip()
        if text == "-":
            return None if side == "start" else StreamID.MIN
        if text == "+":
            return None if side == "end" else StreamID.MAX
        span = _period(text)
        if span is not None:
            return _period_id(span, side)
        if _ID.fullmatch(text):
            return StreamID.parse(text, seq=0 if side == "start" else MAX_PART)
        value = parse_time(text)
    if isinstance(value, datetime):
        # Entries are recorded at whole milliseconds: a start time between two milliseconds
        # begins at the next one, an end time stops at the one before.
        ms = datetime_to_ms(value, ceil=side == "start")
        return StreamID(ms, 0) if side == "start" else StreamID(ms, MAX_PART)
    if isinstance(value, date):
        first = datetime_to_ms(value)
        return _period_id((first, first + _DAY_MS), side)
    raise InvalidStreamID(
        f"`{value!r}` ({type(value).__name__}) is not a stream ID or a time; pass "
        "`'1772323200000-0'`, a datetime, or an ISO-8601 string.",
        value=value,
    )


def _period_id(span: tuple[int, int], side: Literal["start", "end"]) -> StreamID:
    first_ms, following_ms = span
    return StreamID(first_ms, 0) if side == "start" else StreamID(following_ms - 1, MAX_PART)


def _period(text: str) -> tuple[int, int] | None:
    """A year, month or day as (its first millisecond, the first one after it); else None.

    Raises InvalidStreamID for a form that reads as a period but names none (`2026-13`),
    and for `2026-3`, which could be March or the stream ID 2026-3.
    """
    if match := _YEAR.fullmatch(text):
        year = int(match["year"])
        if year < 1000:
            return None  # zero-padded milliseconds, not a year
        if year < 1970:
            raise InvalidStreamID(
                f"`{text}` reads as a year before 1970, where stream IDs start; for the "
                f"millisecond ID write `{text}-0`.",
                value=text,
            )
        return _span(date(year, 1, 1), 366 if calendar.isleap(year) else 365)
    if match := _MONTH.fullmatch(text):
        year, month = int(match["year"]), int(match["month"])
        if len(match["month"]) == 1:
            raise InvalidStreamID(
                f"`{text}` could be month {month} of {year} or the stream ID {text}; write "
                f"`{year}-{month:02d}` for the month, or `{text}` with its milliseconds in full "
                "for an ID.",
                value=text,
            )
        if not 1 <= month <= 12:
            raise InvalidStreamID(f"`{text}` is not a month: {month} is not 01 to 12.", value=text)
        return _span(date(year, month, 1), calendar.monthrange(year, month)[1])
    match = _DAY.fullmatch(text) or _BASIC_DAY.fullmatch(text)
    if match and match.re is _BASIC_DAY and int(match["year"]) < 1970:
        return None  # eight digits that are no date a stream can hold: milliseconds
    if match:
        try:
            day = date(int(match["year"]), int(match["month"]), int(match["day"]))
        except ValueError as exc:
            if _BASIC_DAY.fullmatch(text):
                return None  # eight digits that are no date: milliseconds
            raise InvalidStreamID(f"`{text}` is not a date ({exc}).", value=text) from exc
        return _span(day, 1)
    return None


def _span(first: date, days: int) -> tuple[int, int]:
    start = datetime_to_ms(first)
    return start, start + days * _DAY_MS
