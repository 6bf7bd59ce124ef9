"""Drift plots with matplotlib: versions over time, and which payload fields events carry.

Each takes the report's tables (`timeline`, `fields`), not the report: matplotlib is
imported only when a plot is drawn.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from auditkit._drift.collect import version_label

__all__ = ["busiest", "plot", "plot_fields", "plot_versions"]


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
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 4))
    table.plot.bar(ax=ax, stacked=True, width=0.8)
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
    table = table.reindex(columns=weights.index, fill_value=0) / weights
    if ax is None:
        _, ax = plt.subplots(figsize=(10, max(2.5, 0.35 * len(table) + 1)))
    image = ax.imshow(table.to_numpy(dtype=float), aspect="auto", cmap="viridis", vmin=0, vmax=1)
    ax.set_yticks(range(len(table.index)), table.index, fontsize="small")
    ax.set_xticks(
        range(len(table.columns)), table.columns, rotation=45, ha="right", fontsize="small"
    )
    ax.set_title(f"`{event_type}`: share of events carrying each payload field")
    ax.set_xlabel(f"{window} (record time, UTC)")
    ax.figure.colorbar(image, ax=ax, label="share of events")
    return ax


def busiest(timeline: pd.DataFrame) -> str:
    """The event type with the most events: what a plot shows when not told."""
    if timeline.empty:
        raise ValueError("The report holds no events to plot.")
    return str(timeline.groupby("event_type")["events"].sum().idxmax())
