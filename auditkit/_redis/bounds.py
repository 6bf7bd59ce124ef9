"""Range bounds: what `start`, `end` and `at` accept, turned into stream IDs.

A bound is a stream ID (`"ms-seq"`, `"ms"`, a StreamID), a time (datetime, date,
pandas.Timestamp, or an ISO-8601 string; naive times are UTC), or `"-"` / `"+"` / None
for an open end. Both ends are inclusive, as in XRANGE: a time as `start` begins at the
first entry recorded at or after it, a time as `end` stops after the last entry recorded
at or before it.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal, TypeAlias

from auditkit._exceptions import InvalidStreamID
from auditkit._redis.ids import MAX_PART, StreamID, datetime_to_ms

__all__ = ["Bound", "end_id", "parse_time", "start_id"]

Bound: TypeAlias = "str | bytes | int | StreamID | datetime | date | None"


def start_id(value: Bound) -> StreamID | None:
    """The smallest ID inside a range that starts at `value`; None for an open start."""
    return _resolve(value, "start")


def end_id(value: Bound) -> StreamID | None:
    """The largest ID inside a range that ends at `value`; None for an open end."""
    return _resolve(value, "end")


def parse_time(text: str) -> datetime:
    """An ISO-8601 time (naive means UTC); raises InvalidStreamID naming the value."""
    try:
        return datetime.fromisoformat(text.strip())
    except ValueError:
        pass
    try:
        import pandas as pd

        parsed = pd.Timestamp(text.strip())
    except (ValueError, TypeError) as exc:
        raise InvalidStreamID(
            f"`{text}` is neither a stream ID (`<ms>-<seq>`, e.g. `1772323200000-0`) nor an "
            "ISO-8601 time (e.g. `2026-03-01T12:00Z`).",
            value=text,
        ) from exc
    if pd.isna(parsed):
        raise InvalidStreamID(f"`{text}` is not a time.", value=text)
    return parsed.to_pydatetime()


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
        if text and text.replace("-", "", 1).isdigit() and not text.startswith("-"):
            return StreamID.parse(text, seq=0 if side == "start" else MAX_PART)
        value = parse_time(text)
    if isinstance(value, (datetime, date)):
        # Entries are recorded at whole milliseconds: a start time between two milliseconds
        # begins at the next one, an end time stops at the one before.
        ms = datetime_to_ms(value, ceil=side == "start")
        return StreamID(ms, 0) if side == "start" else StreamID(ms, MAX_PART)
    raise InvalidStreamID(
        f"`{value!r}` ({type(value).__name__}) is not a stream ID or a time; pass "
        "`'1772323200000-0'`, a datetime, or an ISO-8601 string.",
        value=value,
    )
