"""The time windows of a drift timeline: `day`, `week` (Monday to Sunday) or `month` of
record time (UTC).

A window is computed with Arrow compute on whole columns, so that every event falls in
exactly one window whichever batch it arrives in: days with `floor_temporal`, weeks and
months (pandas periods) once per distinct day of a batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["Window", "parse_window"]

_MS = {"day": 86_400_000, "hour": 3_600_000, "minute": 60_000, "second": 1_000, "millisecond": 1}
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
    """A window from its name: `day`, `week` or `month`."""
    windows = {
        "day": Window("day", step_ms=_MS["day"]),
        "week": Window("week", period="W-SUN"),
        "month": Window("month", period="M"),
    }
    if not isinstance(value, str) or value not in windows:
        raise ValueError(f"window must be `day`, `week` or `month`, got `{value}`.")
    return windows[value]
