"""Drift plots with matplotlib: versions over time, and which payload fields events carry.

Each takes the report's tables (`timeline`, `fields`), not the report: matplotlib is
imported only when a plot is drawn.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from auditkit._drift.collect import version_label
from auditkit._drift.windows import parse_window

__all__ = ["busiest", "every_window", "plot", "plot_fields", "plot_versions"]

_TICKS = 24
"""At most this many window labels on an axis: a long timeline labels every k-th."""


def plot(
    timeline: pd.DataFrame, fields: pd.DataFrame, *, window: str, event_type: str | None = None
) -> Any:
    """Versions over time and field presence of one event type (the busiest by default)."""
    import matplotlib.pyplot as plt

    event_type = event_type or busiest(timeline)
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(10, 7), gridspec_kw={"height_ratios": [1, 1.4]}
    )
    plot_versions(timeline, window=window, event_type=event_type, ax=top)
    plot_fields(timeline, fields, window=window, event_type=event_type, ax=bottom)
    fig.tight_layout()
    return fig


def plot_versions(
    timeline: pd.DataFrame, *, window: str, event_type: str | None = None, ax: Any = None
) -> Any:
    """Events per window and schema version, stacked."""
    import matplotlib.pyplot as plt

    event_type = event_type or busiest(timeline)
    rows = timeline[timeline["event_type"] == event_type]
    rows = rows.assign(version=rows["schema_version"].map(version_label))  # None has one too
    table = rows.pivot_table(
        index="window", columns="version", values="events", aggfunc="sum", fill_value=0
    )
    # Every window from the first to the last, empty ones as zero: bars of 2026-03-30 and
    # 2026-11-23 side by side would hide the eight months between them.
    table = table.reindex(every_window(timeline, window, table.index), fill_value=0)
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 4))
    table.plot.bar(ax=ax, stacked=True, width=0.8)
    _thin_ticks(ax, list(table.index))
    ax.set_title(f"`{event_type}`: events per {window} by schema version")
    ax.set_xlabel(f"{window} (record time, UTC)")
    ax.set_ylabel("events")
    ax.legend(title="schema version", fontsize="small")
    ax.tick_params(axis="x", labelrotation=45)
    return ax


def plot_fields(
    timeline: pd.DataFrame,
    fields: pd.DataFrame,
    *,
    window: str,
    event_type: str | None = None,
    ax: Any = None,
) -> Any:
    """A heat map: share of events carrying each payload field, per window."""
    import matplotlib.pyplot as plt

    event_type = event_type or busiest(timeline)
    rows = fields[fields["event_type"] == event_type]
    events = timeline[timeline["event_type"] == event_type]
    weights = events.groupby("window")["events"].sum()
    merged = rows.merge(
        events[["schema_version", "window", "events"]], on=["schema_version", "window"]
    )
    merged["carrying"] = merged["present"] * merged["events"]
    table = merged.pivot_table(
        index="field", columns="window", values="carrying", aggfunc="sum", fill_value=0
    )
    # Every window, an empty one blank (no events: no share to show), not left out.
    windows = every_window(timeline, window, weights.index)
    table = table.reindex(columns=windows) / weights.reindex(windows)
    if ax is None:
        _, ax = plt.subplots(figsize=(10, max(2.5, 0.35 * len(table) + 1)))
    image = ax.imshow(table.to_numpy(dtype=float), aspect="auto", cmap="viridis", vmin=0, vmax=1)
    ax.set_yticks(range(len(table.index)), table.index, fontsize="small")
    ax.set_xticks(
        range(len(table.columns)), table.columns, rotation=45, ha="right", fontsize="small"
    )
    _thin_ticks(ax, list(table.columns))
    ax.set_title(f"`{event_type}`: share of events carrying each payload field")
    ax.set_xlabel(f"{window} (record time, UTC)")
    ax.figure.colorbar(image, ax=ax, label="share of events")
    return ax


def every_window(timeline: pd.DataFrame, window: str, labels: Any) -> list[str]:
    """The labels of every window from the first of `labels` to the last, in time order.

    Windows with no event are included; a label with no time (`(no time)`) stays last.
    """
    import pyarrow as pa

    spec = parse_window(window)
    timed = timeline[timeline["window"].isin(list(labels)) & timeline["first_ts"].notna()]
    if timed.empty:
        return list(labels)
    first_ts = pd.to_datetime(timed["first_ts"], utc=True)
    ts_type = pa.timestamp("ms", tz="UTC")
    known = spec.starts(pa.array(first_ts.astype("datetime64[ms, UTC]"), ts_type))
    first, last = min(known.to_pylist()), max(known.to_pylist())
    if spec.step_ms is not None:
        starts = range(first, last + 1, spec.step_ms)
        if len(starts) > 20_000:  # too many to draw anyway: keep the windows seen
            return list(labels)
        found = [spec.label(start) for start in starts]
    else:  # calendar periods: every day in between falls in one of them
        days = pd.date_range(
            pd.Timestamp(first, unit="ms", tz="UTC"), pd.Timestamp(last, unit="ms", tz="UTC")
        )
        day_starts = spec.starts(pa.array(days.astype("datetime64[ms, UTC]"), ts_type))
        found = [spec.label(start) for start in sorted(set(day_starts.to_pylist()))]
    rest = [label for label in labels if label not in set(found)]
    return found + rest


def _thin_ticks(ax: Any, labels: list[str]) -> None:
    """Label every k-th window when there are many, so the labels stay legible."""
    step = max(1, -(-len(labels) // _TICKS))
    if step > 1:
        ax.set_xticks(
            range(0, len(labels), step),
            labels[::step],
            rotation=45,
            ha="right",
            fontsize="small",
        )


def busiest(timeline: pd.DataFrame) -> str:
    """The event type with the most events: what a plot shows when not told."""
    if timeline.empty:
        raise ValueError("The report holds no events to plot.")
    return str(timeline.groupby("event_type")["events"].sum().idxmax())
