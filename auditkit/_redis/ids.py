"""Stream IDs: `ms-seq`, their arithmetic, and their mapping to UTC time.

A Redis stream ID is two unsigned 64-bit integers: the millisecond Unix time at which the
entry was recorded and a sequence number within that millisecond. IDs order as the pair.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import ClassVar

from auditkit._exceptions import InvalidStreamID

__all__ = ["MAX_PART", "StreamID", "utc_now"]

MAX_PART = 2**64 - 1
"""The largest value of either half of a stream ID."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
_ID_PATTERN = re.compile(r"(?P<ms>\d{1,20})(?:-(?P<seq>\d{1,20}))?")


@dataclass(frozen=True, order=True, slots=True)
class StreamID:
    """A stream entry ID, `ms-seq`, ordered and hashable.

    Example:
        >>> sid = StreamID.parse("1700000000000-3")
        >>> str(sid.next()), sid.to_datetime().isoformat()
        ('1700000000000-4', '2023-11-14T22:13:20+00:00')
    """

    ms: int
    seq: int = 0

    MIN: ClassVar[StreamID]
    MAX: ClassVar[StreamID]

    def __post_init__(self) -> None:
        for name, part in (("ms", self.ms), ("seq", self.seq)):
            if not isinstance(part, int) or isinstance(part, bool) or not 0 <= part <= MAX_PART:
                raise InvalidStreamID(
                    f"Stream ID part `{name}` must be an integer in 0..2**64-1, got `{part!r}`.",
                    value=part,
                )

    @classmethod
    def parse(cls, value: str | bytes | StreamID, *, seq: int = 0) -> StreamID:
        """Parse `ms-seq` (or `ms` alone, which takes `seq`) from text or bytes.

        Args:
            value: `"1700000000000-3"`, `b"1700000000000-3"`, `"1700000000000"`, or a StreamID.
            seq: the sequence used when `value` has only the millisecond part.

        Raises:
            InvalidStreamID: `value` is not an ID, or a part exceeds 2**64-1.
        """
        if isinstance(value, StreamID):
            return value
        text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
        if not isinstance(text, str):
            raise InvalidStreamID(
                f"Expected a stream ID like `1700000000000-0`, got {type(value).__name__} "
                f"`{value!r}`.",
                value=value,
            )
        match = _ID_PATTERN.fullmatch(text.strip())
        if match is None:
            raise InvalidStreamID(
                f"`{text}` is not a stream ID; expected `<ms>-<seq>` or `<ms>`, "
                "for example `1700000000000-0`.",
                value=value,
            )
        ms = int(match["ms"])
        part_seq = int(match["seq"]) if match["seq"] is not None else seq
        if ms > MAX_PART or part_seq > MAX_PART:
            raise InvalidStreamID(
                f"`{text}` is out of range: both parts of a stream ID must be at most 2**64-1.",
                value=value,
            )
        return cls(ms, part_seq)

    @classmethod
    def from_datetime(cls, when: datetime | date, *, seq: int = 0) -> StreamID:
        """The ID at the millisecond holding `when` (naive datetimes are UTC).

        Sub-millisecond parts are truncated: the result is the millisecond that contains
        `when`. A `date` means its midnight, UTC.
        """
        return cls(datetime_to_ms(when), seq)

    def to_datetime(self) -> datetime:
        """The record time of this ID: a UTC datetime with millisecond precision."""
        return _EPOCH + self.ms * _ONE_MS

    def next(self) -> StreamID:
        """The smallest ID greater than this one (rolls the sequence over into the next ms)."""
        if self.seq < MAX_PART:
            return StreamID(self.ms, self.seq + 1)
        if self.ms < MAX_PART:
            return StreamID(self.ms + 1, 0)
        raise InvalidStreamID(f"`{self}` is the largest stream ID; it has no successor.")

    def prev(self) -> StreamID:
        """The largest ID smaller than this one (rolls back into the previous ms)."""
        if self.seq > 0:
            return StreamID(self.ms, self.seq - 1)
        if self.ms > 0:
            return StreamID(self.ms - 1, MAX_PART)
        raise InvalidStreamID("`0-0` is the smallest stream ID; it has no predecessor.")

    def __str__(self) -> str:
        return f"{self.ms}-{self.seq}"

    def __repr__(self) -> str:
        return f"StreamID('{self.ms}-{self.seq}')"


StreamID.MIN = StreamID(0, 0)
StreamID.MAX = StreamID(MAX_PART, MAX_PART)


def datetime_to_ms(when: datetime | date, *, ceil: bool = False) -> int:
    """Milliseconds since the Unix epoch (naive datetimes are UTC); floor unless `ceil`."""
    if not isinstance(when, datetime):
        if isinstance(when, date):
            when = datetime(when.year, when.month, when.day)
        else:
            raise InvalidStreamID(
                f"Expected a datetime, got {type(when).__name__} `{when!r}`.", value=when
            )
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = when - _EPOCH
    # Integer arithmetic: float seconds lose the last digit of microseconds after 2**53.
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    nanos = getattr(when, "nanosecond", 0)  # pandas.Timestamp carries nanoseconds
    ms, rest = divmod(micros, 1000)
    if ceil and (rest or nanos):
        ms += 1
    if ms < 0:
        raise InvalidStreamID(
            f"`{when.isoformat()}` is before 1970-01-01T00:00:00Z; stream IDs start there.",
            value=when,
        )
    return ms


def utc_now() -> str:
    """Now, in the one format auditkit writes instants in: `2026-03-01T12:00:00Z`."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
