"""The time windows of a drift timeline: a name (`"day"`) or any pandas offset alias.

A window tiles record time (UTC) into equal steps or calendar periods, so that every event
falls in exactly one window whichever batch it arrives in:

- fixed steps (`"h"`, `"15min"`, `"2D"`) count from the Unix epoch, as `Timestamp.floor`
  does: `"2D"` windows start on even days since 1970-01-01;
- calendar periods (`"W-MON"`, `"M"`/`"ME"`/`"MS"`, `"Q"`, `"Y"`) are pandas periods; a
  multiple (`"2M"`) groups consecutive periods counted from the epoch's.

Business calendars (`"B"`, `"BME"`, `"SME"`, `"bh"`) do not tile time evenly and are
refused. A window is computed with Arrow compute on whole columns: fixed steps with
`floor_temporal`, periods once per distinct day of a batch.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pandas.tseries.frequencies import to_offset
from pandas.tseries.offsets import BaseOffset

__all__ = ["NAMES", "Window", "parse_window"]

NAMES = {
    "hour": "h",
    "day": "D",
    "week": "W-SUN",  # Monday to Sunday
    "month": "M",
}
"""The window names kept for readability, and the pandas alias each stands for."""

_EXAMPLES = (
    "`hour`, `day`, `week`, `month`, or a pandas offset alias such as `15min`, `6h`, `2D`, "
    "`W-MON`, `MS`, `QE`, `YE`"
)
_MS = {"day": 86_400_000, "hour": 3_600_000, "minute": 60_000, "second": 1_000, "millisecond": 1}
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_MS_TYPE = pa.timestamp("ms", tz="UTC")


@dataclass(frozen=True, slots=True)
class Window:
    """How record time is cut into windows: a fixed step, or `n` calendar periods."""

    name: str
    step_ms: int | None = None  # fixed steps
    period: str | None = None  # calendar periods: a pandas period frequency, n = 1
    n: int = 1

    def starts(self, ts: pa.ChunkedArray | pa.Array) -> pa.Array | pa.ChunkedArray:
        """Each timestamp's window, as its first instant in epoch milliseconds (int64)."""
        # Naive UTC: flooring a time zone aware timestamp costs ten times more, for nothing.
        ms = pc.cast(pc.cast(pc.cast(ts, _MS_TYPE, safe=False), pa.int64()), pa.timestamp("ms"))
        if self.step_ms is not None:
            unit, size = next((u, s) for u, s in _MS.items() if self.step_ms % s == 0)
            floored = pc.floor_temporal(ms, multiple=self.step_ms // size, unit=unit)
            return pc.cast(floored, pa.int64())
        # A period depends on the day only: map each distinct day once, then spread back.
        days = pc.cast(pc.floor_temporal(ms, unit="day"), pa.int64())
        distinct = pc.unique(days).drop_null()
        if not len(distinct):
            return days
        return pa.array(self._period_starts(distinct.to_numpy()), pa.int64()).take(
            pc.index_in(days, distinct)
        )

    def label(self, start: int | None) -> str:
        """A window's name in reports: `2026-03` for a month, its first day for a week."""
        if start is None:
            return "(no time)"
        when = pd.Timestamp(start, unit="ms")
        if self.step_ms is not None:
            if self.step_ms % _MS["day"] == 0:
                return f"{when:%Y-%m-%d}"
            if self.step_ms % _MS["minute"] == 0:
                return f"{when:%Y-%m-%d %H:%M}"
            if self.step_ms % _MS["second"] == 0:
                return f"{when:%Y-%m-%d %H:%M:%S}"
            return f"{when:%Y-%m-%d %H:%M:%S.%f}"[:-3]
        assert self.period is not None
        if self.period.startswith("W"):
            return f"{when:%Y-%m-%d}"
        if self.n == 1 and self.period == "Q-DEC":
            return f"{when.year}Q{when.quarter}"
        if self.n == 1 and self.period == "Y-DEC":
            return f"{when.year}"
        return f"{when:%Y-%m}"

    def _period_starts(self, days_ms: np.ndarray) -> np.ndarray:
        periods = pd.DatetimeIndex(pd.to_datetime(days_ms, unit="ms")).to_period(self.period)
        # `n` periods together, counted from the epoch's period: the group's first one.
        grouped = pd.PeriodIndex(periods - (periods.asi8 % self.n))
        return np.asarray(grouped.start_time.as_unit("ms").asi8, dtype=np.int64)


def parse_window(value: object) -> Window:
    """A window from its name or a pandas offset or period alias.

    Raises:
        ValueError: `value` is neither, in one line naming it and giving examples.
    """
    if isinstance(value, Window):
        return value
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"window `{value!r}` is not a window; use {_EXAMPLES}.")
    alias = NAMES.get(value.strip().lower(), value.strip())
    offset = _offset(alias)
    if offset is None:
        raise ValueError(f"window `{value}` is not a window; use {_EXAMPLES}.")
    if offset.n < 1:
        raise ValueError(f"window `{value}` must step forward in time; use {_EXAMPLES}.")
    window = _from_offset(value, offset)
    if window is None:
        raise ValueError(
            f"window `{value}` is a pandas offset that does not tile time evenly (business "
            f"days, semi-months, ...); use {_EXAMPLES}."
        )
    return window


def _offset(alias: str) -> BaseOffset | None:
    """The offset an alias names, as an offset alias (`ME`) or a period alias (`M`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated aliases still name a window
        try:
            return to_offset(alias)
        except (ValueError, TypeError):
            pass
        try:
            freq: BaseOffset = pd.Period("2000-01-01", freq=alias).freq
        except (ValueError, TypeError):
            return None
        return freq


def _from_offset(name: str, offset: BaseOffset) -> Window | None:
    n = offset.n
    offsets = pd.offsets
    if isinstance(offset, (offsets.Tick, offsets.Day)):
        nanos = pd.Timedelta(days=n).value if isinstance(offset, offsets.Day) else offset.nanos
        if nanos % 1_000_000:
            raise ValueError(
                f"window `{name}` is not a whole number of milliseconds (stream IDs count "
                f"milliseconds); use {_EXAMPLES}."
            )
        return Window(name, step_ms=nanos // 1_000_000)
    # The anchor (a weekday or a month) as the offset's own rule code names it: `W-MON`.
    anchor = offset.rule_code.partition("-")[2]
    if isinstance(offset, offsets.Week):
        if not anchor:
            return Window(name, step_ms=7 * n * _MS["day"])
        return Window(name, period=f"W-{anchor}", n=n)
    if isinstance(offset, (offsets.MonthEnd, offsets.MonthBegin)):
        return Window(name, period="M", n=n)
    if isinstance(offset, offsets.QuarterEnd):
        return Window(name, period=f"Q-{anchor}", n=n)
    if isinstance(offset, offsets.QuarterBegin):
        # Quarters starting in January are the quarters ending in December.
        return Window(name, period=f"Q-{_month_before(anchor)}", n=n)
    if isinstance(offset, offsets.YearEnd):
        return Window(name, period=f"Y-{anchor}", n=n)
    if isinstance(offset, offsets.YearBegin):
        return Window(name, period=f"Y-{_month_before(anchor)}", n=n)
    return None


def _month_before(month: str) -> str:
    """`JAN` -> `DEC`."""
    return _MONTHS[_MONTHS.index(month) - 1]
