"""The report's plots, drawn on a continuous time axis: a bucket with no event shows as zero.

Bars stand at their bucket's date, so a quiet eight months stay eight months wide (a bar
chart of labels would draw 2026-03-30 next to 2026-11-23). matplotlib is imported only here.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa

__all__ = ["Plot", "draw", "events_per_bucket"]

_TYPES_SHOWN = 6
_BUCKETS = (("hour", "h", pd.Timedelta(days=3)), ("day", "D", pd.Timedelta(days=90)))


@dataclass(frozen=True)
class Plot:
    """One figure: its title, a sentence saying what it shows, and the PNG as a data URL."""

    title: str
    caption: str
    src: str


def draw(tables: dict[str, pa.Table]) -> list[Plot]:
    """Events per bucket and stream; per busy event type, events by schema version."""
    frames = [_times(key, table) for key, table in tables.items() if table.num_rows]
    if not frames:
        return []
    events = pd.concat(frames, ignore_index=True)
    unit, freq = bucket(events["ts"].min(), events["ts"].max())
    plots = [
        _figure(
            events_per_bucket(events, "stream", freq),
            f"Events per {unit} and stream (record time, UTC)",
            f"{unit}s with no event are drawn as zero; the axis is continuous time.",
            unit,
            "stream",
        )
    ]
    typed = events[events["event_type"].notna()]
    busiest = typed["event_type"].value_counts().index[:_TYPES_SHOWN]
    for event_type in busiest:
        rows = typed[typed["event_type"] == event_type]
        counts = events_per_bucket(rows, "schema_version", freq, start=events["ts"].min())
        plots.append(
            _figure(
                counts,
                f"`{event_type}`: events per {unit} by schema version",
                "stacked by schema version, over the whole report's time range",
                unit,
                "schema version",
            )
        )
    if typed["event_type"].nunique() > _TYPES_SHOWN:
        plots[-1] = Plot(
            plots[-1].title,
            plots[-1].caption
            + f" (the {_TYPES_SHOWN} busiest of {typed['event_type'].nunique()} event types)",
            plots[-1].src,
        )
    return plots


def bucket(first: pd.Timestamp, last: pd.Timestamp) -> tuple[str, str]:
    """The bucket for a time range: hours for a few days, days for a season, else weeks."""
    for unit, freq, span in _BUCKETS:
        if last - first <= span:
            return unit, freq
    return "week", "W-MON"


def events_per_bucket(
    events: pd.DataFrame, by: str, freq: str, *, start: pd.Timestamp | None = None
) -> pd.DataFrame:
    """Counts per bucket (rows, every bucket from first to last, zero when empty) and `by`."""
    ts = events["ts"]
    floor = _floor(ts, freq)
    counts = (
        events.assign(_bucket=floor, _by=events[by].astype("string").fillna("(none)"))
        .groupby(["_bucket", "_by"])
        .size()
        .unstack(fill_value=0)
    )
    first = _floor(pd.Series([start if start is not None else ts.min()]), freq).iloc[0]
    every = pd.date_range(first, floor.max(), freq="7D" if freq == "W-MON" else freq)
    return counts.reindex(every, fill_value=0)


def _floor(ts: pd.Series, freq: str) -> pd.Series:
    if freq == "W-MON":  # weeks start on Monday (ISO), as the drift windows do
        days = ts.dt.floor("D")
        monday: pd.Series = days - pd.to_timedelta(days.dt.day_of_week, unit="D")
        return monday
    floored: pd.Series = ts.dt.floor(freq)
    return floored


def _times(key: str, table: pa.Table) -> pd.DataFrame:
    columns = [c for c in ("ts", "event_type", "schema_version") if c in table.column_names]
    frame: pd.DataFrame = table.select(columns).to_pandas()
    for column in ("event_type", "schema_version"):
        if column not in frame:
            frame[column] = None
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    return frame.assign(stream=key)


def _figure(counts: pd.DataFrame, title: str, caption: str, unit: str, legend: str) -> Plot:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(10, 3.2))
    width = {"hour": 1 / 24, "day": 1.0, "week": 7.0}[unit] * 0.85
    index = pd.DatetimeIndex(counts.index)
    x = index.tz_convert(None) if index.tz is not None else index
    bottom = pd.Series(0, index=counts.index)
    for column in counts.columns:
        axis.bar(x, counts[column], width=width, bottom=bottom, align="edge", label=str(column))
        bottom = bottom + counts[column]
    locator = mdates.AutoDateLocator()  # type: ignore[no-untyped-call]
    axis.xaxis.set_major_locator(locator)
    axis.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
    # The axis spans the buckets exactly: first to the end of the last, with no padding.
    end = x.max() + pd.Timedelta(days=width / 0.85)
    axis.set_xlim(_days(x.min()), _days(end))
    axis.set_title(title.replace("`", ""))
    axis.set_xlabel(f"{unit} (record time, UTC)")
    axis.set_ylabel(f"events per {unit}")
    if len(counts.columns) > 1 or str(counts.columns[0]) != "(none)":
        axis.legend(title=legend, fontsize="small", ncol=min(4, len(counts.columns)))
    axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    return Plot(title, caption, _data_url(figure, plt))


def _days(when: pd.Timestamp) -> float:
    """A time as matplotlib's date number: days since 1970-01-01 (its default epoch)."""
    return (when - pd.Timestamp(0)) / pd.Timedelta(days=1)


def _data_url(figure: Any, plt: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
