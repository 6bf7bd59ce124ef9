"""Where projections get their events: a table, a DataFrame, or `(client, stream)`.

`load_events` returns an Arrow table in replay order, cut at `at`:

- record clock (the default): ordered by stream ID (time, sequence, then stream key), cut
  at a stream ID or a time, inclusive. This is what the system knew at that moment.
- effective clock: ordered by `occurred_at` (then stream ID), cut at a time, inclusive.
  This is when things happened in the business, as far as the events say today.

A `(client, stream)` source reads from Redis only what the question needs: with the record
clock nothing after `at`; with a per-aggregate key template such as `"account:{aggregate_id}"`
only that aggregate's stream.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Any, Literal, TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import redis

from auditkit._exceptions import InvalidStreamID, MissingEffectiveTime
from auditkit._load.decode import PAYLOAD_PREFIX, empty_table
from auditkit._load.envelope import Envelope
from auditkit._load.reader import read_arrow
from auditkit._load.unify import MIXED_TYPES
from auditkit._redis.bounds import Bound, end_id, parse_time
from auditkit._redis.connection import Client, read_with_retry
from auditkit._redis.ids import StreamID

__all__ = ["AGGREGATE_PLACEHOLDER", "Clock", "load_events"]

Clock: TypeAlias = Literal["record", "effective"]
AGGREGATE_PLACEHOLDER = "{aggregate_id}"
ORDER_COLUMN = "__order"


def load_events(
    events: Any,
    *,
    at: Bound = None,
    after: StreamID | None = None,
    clock: Clock = "record",
    aggregate_id: str | None = None,
    envelope: Envelope | None = None,
) -> pa.Table:
    """The events of `events` in replay order, up to `at` (inclusive), after `after`.

    Args:
        events: an Arrow table or DataFrame from `read_arrow`/`read_pandas`, or a
            `(client, stream)` pair; `stream` may be a key, a glob, or a per-aggregate
            template with `{aggregate_id}`.
        at: the cut: a stream ID or a time (record clock), a time (effective clock).
        after: replay only events with a stream ID above this one (after a snapshot).
        clock: `"record"` (stream ID order) or `"effective"` (`occurred_at` order).
        aggregate_id: only this aggregate's events.
        envelope: how to read a `(client, stream)` source.
    """
    if clock not in ("record", "effective"):
        raise ValueError(f"clock must be `record` or `effective`, got `{clock}`.")
    cut = _cut(at, clock)
    table = _table(events, cut if clock == "record" else None, after, aggregate_id, envelope)
    if aggregate_id is not None and table.num_rows:
        table = table.filter(pc.equal(table.column("aggregate_id"), aggregate_id))
    if after is not None and table.num_rows:
        table = table.filter(_id_above(table, after))
    if clock == "record":
        if isinstance(cut, StreamID) and table.num_rows:
            table = table.filter(pc.invert(_id_above(table, cut)))
        if not _in_id_order(table):
            table = table.sort_by(
                [("ts", "ascending"), ("seq", "ascending"), ("stream", "ascending")]
            )
    else:
        table = _effective_order(table, cut)
    return table.append_column(ORDER_COLUMN, pa.array(np.arange(table.num_rows, dtype=np.int64)))


def _cut(at: Bound, clock: Clock) -> StreamID | datetime | None:
    if at is None:
        return None
    if clock == "record":
        return end_id(at)
    if isinstance(at, str):
        text = at.strip()
        if text and text.replace("-", "", 1).isdigit():
            raise InvalidStreamID(
                f"`{at}` is a stream ID, which is record time; with clock='effective' pass a "
                "time (a datetime, a pandas.Timestamp, or an ISO-8601 string).",
                value=at,
            )
        return parse_time(text)
    if isinstance(at, (datetime, date)):
        return at if isinstance(at, datetime) else datetime(at.year, at.month, at.day)
    raise InvalidStreamID(
        f"`{at!r}` is not a time; with clock='effective' `at` must be a datetime, a "
        "pandas.Timestamp or an ISO-8601 string.",
        value=at,
    )


def _table(
    events: Any,
    cut: StreamID | datetime | None,
    after: StreamID | None,
    aggregate_id: str | None,
    envelope: Envelope | None,
) -> pa.Table:
    if isinstance(events, pa.Table):
        return events
    if isinstance(events, pd.DataFrame):
        return pa.Table.from_pandas(events, preserve_index=False)
    if isinstance(events, tuple) and len(events) == 2 and isinstance(events[0], redis.Redis):
        client, stream = events
        return _read(client, stream, cut, after, aggregate_id, envelope)
    if hasattr(events, "events_table"):  # an Archive, once archives exist
        table: pa.Table = events.events_table(aggregate_id=aggregate_id)
        return table
    raise TypeError(
        f"events must be a pyarrow.Table or pandas.DataFrame from read_arrow/read_pandas, or "
        f"a (client, stream) pair; got {type(events).__name__}."
    )


def _read(
    client: Client,
    stream: str,
    cut: StreamID | datetime | None,
    after: StreamID | None,
    aggregate_id: str | None,
    envelope: Envelope | None,
) -> pa.Table:
    envelope = envelope or Envelope()
    if AGGREGATE_PLACEHOLDER in stream:
        head, _, tail = stream.partition(AGGREGATE_PLACEHOLDER)
        pattern = f"^{re.escape(head)}(?P<id>.+){re.escape(tail)}$"
        envelope = Envelope(
            event_type=envelope.event_type,
            aggregate_id=envelope.aggregate_id,
            schema_version=envelope.schema_version,
            payload=envelope.payload,
            occurred_at=envelope.occurred_at,
            aggregate_id_from_key=pattern,
        )
        if aggregate_id is not None:
            key = stream.replace(AGGREGATE_PLACEHOLDER, aggregate_id)
            exists = read_with_retry(
                client, lambda: client.exists(key), stream=key, command="EXISTS"
            )
            if not exists:
                return empty_table()
            streams: str | list[str] = [key]
        else:
            streams = stream.replace(AGGREGATE_PLACEHOLDER, "*")
    else:
        streams = stream
    start = after.next() if after is not None and after != StreamID.MAX else None
    end = cut if isinstance(cut, StreamID) else None
    # The payload's JSON text comes along, and stays where a payload field had values of
    # different types (made text in its column): there handlers need each payload as
    # written. Elsewhere the typed columns are exact and much faster to replay from.
    table = read_arrow(client, streams, start=start, end=end, envelope=envelope, keep_payload=True)
    if "payload" in table.column_names and not any(
        field.metadata and MIXED_TYPES in field.metadata
        for field in table.schema
        if field.name.startswith(PAYLOAD_PREFIX)
    ):
        table = table.drop_columns(["payload"])
    return table


def _id_above(table: pa.Table, cut: StreamID) -> pa.ChunkedArray:
    # Through timestamp[ms] first: a DataFrame may carry nanoseconds.
    ms = pc.cast(pc.cast(table.column("ts"), pa.timestamp("ms", tz="UTC")), pa.int64())
    seq = table.column("seq")
    return pc.or_(
        pc.greater(ms, cut.ms),
        pc.and_(pc.equal(ms, cut.ms), pc.greater(seq, pa.scalar(cut.seq, seq.type))),
    )


def _in_id_order(table: pa.Table) -> bool:
    """Whether rows are already in stream ID order, as read_arrow returns them.

    A check costs a few vectorised passes; a sort moves every column of every row.
    """
    if table.num_rows < 2:
        return True
    ms = pc.cast(pc.cast(table.column("ts"), pa.timestamp("ms", tz="UTC")), pa.int64())
    ms_values = ms.to_numpy()
    seq_values = table.column("seq").to_numpy()
    step = np.diff(ms_values)
    if (step < 0).any():
        return False
    same_ms = step == 0
    # Within a millisecond the sequence must grow; equal IDs (two streams) need the key order.
    return bool((seq_values[1:][same_ms] > seq_values[:-1][same_ms]).all())


def _effective_order(table: pa.Table, cut: StreamID | datetime | None) -> pa.Table:
    if "occurred_at" not in table.column_names or table.column("occurred_at").null_count:
        missing = (
            table.num_rows
            if "occurred_at" not in table.column_names
            else table.column("occurred_at").null_count
        )
        if missing:
            first = _first_id_without_time(table)
            raise MissingEffectiveTime(
                f"{missing:,} events have no `occurred_at` (the first is `{first}`), so they "
                "cannot be placed in effective time. Name the field that holds it with "
                "Envelope(occurred_at=...), or replay with clock='record'."
            )
    if isinstance(cut, datetime) and table.num_rows:
        aware = cut if cut.tzinfo is not None else cut.replace(tzinfo=UTC)
        limit = pa.scalar(aware, pa.timestamp("us", tz="UTC"))
        when = pc.cast(table.column("occurred_at"), pa.timestamp("us", tz="UTC"))
        table = table.filter(pc.less_equal(when, limit))
    return table.sort_by(
        [
            ("occurred_at", "ascending"),
            ("ts", "ascending"),
            ("seq", "ascending"),
            ("stream", "ascending"),
        ]
    )


def _first_id_without_time(table: pa.Table) -> str:
    if "occurred_at" not in table.column_names:
        return str(table.column("id")[0].as_py()) if table.num_rows else "-"
    index = pc.index(pc.is_null(table.column("occurred_at")), True).as_py()
    return str(table.column("id")[index].as_py())
