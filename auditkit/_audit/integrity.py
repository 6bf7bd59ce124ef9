"""Integrity of the events themselves: order, uniqueness, completeness, and the two clocks."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import pandas as pd
import pyarrow as pa

from auditkit._findings import Findings
from auditkit._load.envelope import Envelope, EnvelopeSpec

__all__ = ["check_integrity"]


def check_integrity(
    events: pa.Table | pd.DataFrame,
    *,
    version_field: str | None = None,
    idempotency_field: str | None = None,
    terminal_types: Iterable[str] = (),
    known_types: Iterable[str] | None = None,
    skew: timedelta = timedelta(minutes=5),
    envelope: EnvelopeSpec = None,
) -> pd.DataFrame:
    """Findings about the events of a table or DataFrame from `read_arrow`/`read_pandas`.

    Args:
        version_field: a column holding each aggregate's own sequence (e.g.
            `"payload.version"`): gaps and duplicates per aggregate are errors.
        idempotency_field: a column holding an idempotency key: duplicates are warnings.
        terminal_types: event types after which an aggregate takes no more events.
        known_types: the event types a projection handles; others are warnings.
        skew: record time (`ts`) and effective time (`occurred_at`) further apart than this
            are warnings, as is effective time running backwards within an aggregate.
        envelope: the envelope the events were read with: an event lacking a concept it
            marks `required = false` is no finding.

    An event without a type or an aggregate id is an error, one finding each, where other
    events of the stream have one. A stream none of whose events has an aggregate id gets
    one `info` finding instead: it has no aggregates, which is no fault of each event.
    """
    frame = events.to_pandas() if isinstance(events, pa.Table) else events
    if frame.empty:
        return Findings().frame()
    frame = frame.sort_values(["ts", "seq"], kind="stable")
    found = Findings()
    _missing_envelope(frame, found, Envelope.of(envelope))
    if known_types is not None:
        _unknown_types(frame, set(known_types), found)
    if version_field is not None:
        _versions(frame, version_field, found)
    if idempotency_field is not None:
        _idempotency(frame, idempotency_field, found)
    terminal = set(terminal_types)
    if terminal:
        _after_terminal(frame, terminal, found)
    if "occurred_at" in frame and frame["occurred_at"].notna().any():
        _clocks(frame, skew, found)
    return found.frame()


_WORDS = {"event_type": "an event_type", "aggregate_id": "an aggregate_id"}


def _missing_envelope(frame: pd.DataFrame, found: Findings, envelope: Envelope) -> None:
    for column in ("event_type", "aggregate_id"):
        concept = envelope.concepts[column]
        if concept.may_lack or not concept.sources:  # the envelope says entries lack it
            continue
        missing = frame[frame[column].isna()]
        if len(missing) == len(frame):
            found.add(
                "missing-envelope",
                "info",
                f"no event has {_WORDS[column]} (the envelope reads it from "
                f"{concept.describe()}): checks per {column} treat the stream as one group",
                stream=frame["stream"].iloc[0],
            )
            continue
        _each(
            found,
            missing,
            "missing-envelope",
            "error",
            lambda row, column=column: f"event {row['id']} has no {column}",
        )


def _unknown_types(frame: pd.DataFrame, known: set[str], found: Findings) -> None:
    unknown = frame[frame["event_type"].notna() & ~frame["event_type"].isin(known)]
    for event_type, group in unknown.groupby("event_type"):
        found.add(
            "unknown-event-type",
            "warning",
            f"{len(group):,} events of type `{event_type}`, which no handler knows "
            f"(first {group['id'].iloc[0]})",
            id=group["id"].iloc[0],
            stream=group["stream"].iloc[0],
        )


def _versions(frame: pd.DataFrame, column: str, found: Findings) -> None:
    if column not in frame:
        found.add(
            "version-field-missing",
            "warning",
            f"no column `{column}`: per-aggregate versions cannot be checked",
        )
        return
    data = frame[frame["aggregate_id"].notna() & frame[column].notna()].copy()
    data["_v"] = pd.to_numeric(data[column], errors="coerce")
    previous = data.groupby("aggregate_id")["_v"].shift()
    duplicate = data[data["_v"] == previous]
    gap = data[previous.notna() & (data["_v"] > previous + 1)]
    backwards = data[previous.notna() & (data["_v"] < previous)]
    _each(
        found,
        duplicate,
        "version-duplicate",
        "error",
        lambda row: (
            f"{row['aggregate_id']}: version {row['_v']:g} appears twice (again at {row['id']})"
        ),
    )
    prev_of = previous.to_dict()
    _each(
        found,
        gap,
        "version-gap",
        "error",
        lambda row: (
            f"{row['aggregate_id']}: version jumps from {prev_of[row.name]:g} to "
            f"{row['_v']:g} at {row['id']} (events missing)"
        ),
    )
    _each(
        found,
        backwards,
        "version-regression",
        "error",
        lambda row: (
            f"{row['aggregate_id']}: version goes back from {prev_of[row.name]:g} to "
            f"{row['_v']:g} at {row['id']}"
        ),
    )


def _idempotency(frame: pd.DataFrame, column: str, found: Findings) -> None:
    if column not in frame:
        found.add(
            "idempotency-field-missing",
            "warning",
            f"no column `{column}`: idempotency keys cannot be checked",
        )
        return
    keys = frame[frame[column].notna()]
    repeated = keys[keys.duplicated(column, keep="first")]
    first = keys.drop_duplicates(column).set_index(column)["id"].to_dict()
    _each(
        found,
        repeated,
        "duplicate-idempotency-key",
        "warning",
        lambda row: (
            f"idempotency key `{row[column]}` again at {row['id']} (first at "
            f"{first[row[column]]}): the event was probably processed twice"
        ),
    )


def _after_terminal(frame: pd.DataFrame, terminal: set[str], found: Findings) -> None:
    data = frame[frame["aggregate_id"].notna()]
    ended = data["event_type"].isin(terminal).astype(int).groupby(data["aggregate_id"]).cumsum()
    # An event is "after" when a terminal event came before it (not counting itself).
    before = ended - data["event_type"].isin(terminal).astype(int)
    after = data[before > 0]
    _each(
        found,
        after,
        "event-after-terminal",
        "error",
        lambda row: (
            f"{row['aggregate_id']}: `{row['event_type']}` at {row['id']} comes after "
            f"the aggregate ended ({', '.join(sorted(terminal))})"
        ),
    )


def _clocks(frame: pd.DataFrame, skew: timedelta, found: Findings) -> None:
    data = frame[frame["occurred_at"].notna()].copy()
    recorded = pd.to_datetime(data["ts"], utc=True)
    occurred = pd.to_datetime(data["occurred_at"], utc=True)
    data["_gap"] = recorded - occurred
    late = data[data["_gap"] > pd.Timedelta(skew)]
    early = data[data["_gap"] < -pd.Timedelta(skew)]
    _each(
        found,
        late,
        "clock-skew",
        "warning",
        lambda row: (
            f"{row['id']} was recorded {_human(row['_gap'])} after it occurred "
            f"(tolerance {_human(pd.Timedelta(skew))})"
        ),
    )
    _each(
        found,
        early,
        "clock-skew",
        "warning",
        lambda row: (
            f"{row['id']} occurred {_human(-row['_gap'])} after it was recorded: a "
            "producer clock runs ahead"
        ),
    )
    data["_occurred"] = occurred
    previous = data[data["aggregate_id"].notna()].groupby("aggregate_id")["_occurred"].shift()
    regress = data.loc[previous.index][
        previous.notna() & (data.loc[previous.index, "_occurred"] < previous)
    ]
    prev_of = previous.to_dict()
    _each(
        found,
        regress,
        "clock-regression",
        "warning",
        lambda row: (
            f"{row['aggregate_id']}: occurred_at goes back from "
            f"{prev_of[row.name]:%Y-%m-%d %H:%M:%S} to {row['_occurred']:%Y-%m-%d %H:%M:%S} "
            f"at {row['id']}"
        ),
    )


def _each(found: Findings, rows: pd.DataFrame, check: str, severity: str, detail: Any) -> None:
    """A finding per row: every one, however many (a display may show fewer, saying so)."""
    for _, row in rows.iterrows():
        found.add(
            check,
            severity,
            detail(row),
            id=row["id"],
            aggregate_id=row.get("aggregate_id"),
            stream=row.get("stream"),
        )


def _human(delta: pd.Timedelta) -> str:
    seconds = delta.total_seconds()
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
