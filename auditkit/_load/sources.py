"""Where every job gets its events: one adapter over each kind of event source.

`open_source(events)` takes anything `EventSource` names (a table, a DataFrame, an
Archive, or `(client, stream)` with a `redis.Redis` or a `RedisCluster`, `stream` a key,
a glob or a per-aggregate template such as `"account:{aggregate_id}"`) and offers two
views of the same events:

- `table(at=..., after=..., aggregate_id=...)`: one table, cut. A `(client, stream)`
  source reads from Redis only what the cut needs: nothing after `at`, nothing up to
  `after`, and with a template and an aggregate only that aggregate's stream.
- `batches(batch_size=...)`: tables of at most `batch_size` rows, in bounded memory for
  any source, each with the payload's JSON text in column `payload` where the source
  holds it (exact types, for schema drift).

`load_events` puts the table view in replay order:

- record clock (the default): ordered by stream ID (time, sequence, then stream key), cut
  at a stream ID or a time, inclusive. This is what the system knew at that moment.
- effective clock: ordered by `occurred_at` (then stream ID), cut at a time, inclusive.
  This is when things happened in the business, as far as the events say today.
"""

from __future__ import annotations

import dataclasses
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime
from typing import Any, Literal, TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import redis
from redis.cluster import RedisCluster

from auditkit._exceptions import InvalidStreamID, MissingEffectiveTime
from auditkit._load.decode import PAYLOAD_PREFIX, empty_table
from auditkit._load.envelope import Envelope, EnvelopeSpec
from auditkit._load.reader import iter_batches, read_arrow
from auditkit._load.unify import MIXED_ATTR, MIXED_TYPES
from auditkit._redis.bounds import Bound, end_id, end_time
from auditkit._redis.connection import Client, read_with_retry
from auditkit._redis.ids import StreamID
from auditkit._types import ArchivedEvents, EventSource, Streams

__all__ = [
    "AGGREGATE_PLACEHOLDER",
    "ORDER_COLUMN",
    "Clock",
    "Source",
    "load_events",
    "open_source",
]

Clock: TypeAlias = Literal["record", "effective"]
AGGREGATE_PLACEHOLDER = "{aggregate_id}"
ORDER_COLUMN = "__order"

_KINDS = (
    "a pyarrow.Table or pandas.DataFrame from read_arrow/read_pandas, an Archive (every "
    "stream it holds) or an (archive, stream) pair, or a (client, stream) pair with a "
    "redis.Redis or RedisCluster client and a stream key, glob or template such as "
    "'account:{aggregate_id}'"
)


def load_events(
    events: EventSource,
    *,
    at: Bound = None,
    after: StreamID | None = None,
    clock: Clock = "record",
    aggregate_id: str | None = None,
    envelope: EnvelopeSpec = None,
) -> pa.Table:
    """The events of `events` in replay order, up to `at` (inclusive), after `after`.

    Args:
        events: any event source (see `open_source`).
        at: the cut: a stream ID or a time (record clock), a time (effective clock).
        after: replay only events with a stream ID above this one (after a snapshot).
        clock: `"record"` (stream ID order) or `"effective"` (`occurred_at` order).
        aggregate_id: only this aggregate's events.
        envelope: how to read a `(client, stream)` source.

    Returns:
        The events, with a last column `__order` numbering them in replay order.
    """
    if clock not in ("record", "effective"):
        raise ValueError(f"clock must be `record` or `effective`, got `{clock}`.")
    source = open_source(events, envelope=envelope)
    cut = _cut(at, clock)
    table = source.table(
        at=cut if isinstance(cut, StreamID) else None, after=after, aggregate_id=aggregate_id
    )
    if clock == "record":
        if not _in_id_order(table):
            table = table.sort_by(
                [("ts", "ascending"), ("seq", "ascending"), ("stream", "ascending")]
            )
    else:
        table = _effective_order(table, cut)
    return table.append_column(ORDER_COLUMN, pa.array(np.arange(table.num_rows, dtype=np.int64)))


def open_source(events: EventSource, *, envelope: EnvelopeSpec = None) -> Source:
    """The adapter over `events`, whichever kind of event source it is.

    Args:
        events: a table or DataFrame from `read_arrow`/`read_pandas`, an Archive (anything
            with `events_table` and `iter_tables`; every stream it holds), `(archive,
            stream)` for one of its streams, or `(client, stream)`: `client` a
            `redis.Redis` or a `RedisCluster`, `stream` a key, a glob, a list of keys, or
            a template with `{aggregate_id}` for one stream per aggregate.
        envelope: how to read a `(client, stream)` source; tables and archives are
            already decoded.

    Raises:
        TypeError: `events` is none of these, naming the kinds accepted.
    """
    if isinstance(events, pa.Table):
        return TableSource(events)
    if isinstance(events, pd.DataFrame):
        return TableSource(_from_pandas(events))
    if isinstance(events, ArchivedEvents):
        return ArchiveSource(events)
    if isinstance(events, tuple) and len(events) == 2:
        client, stream = events
        if isinstance(client, ArchivedEvents) and isinstance(stream, str):
            return ArchiveSource(client, stream=stream)
        if isinstance(client, (redis.Redis, RedisCluster)) and _is_streams(stream):
            return RedisSource(client, stream, envelope=envelope)
        got = f"({type(client).__name__}, {type(stream).__name__})"
    else:
        got = type(events).__name__
    raise TypeError(f"events must be {_KINDS}; got `{got}`.")


class Source(ABC):
    """One kind of event source, seen as a cut table or as bounded batches."""

    def table(
        self,
        *,
        at: StreamID | None = None,
        after: StreamID | None = None,
        aggregate_id: str | None = None,
    ) -> pa.Table:
        """The events up to `at` (inclusive), above `after`, of one aggregate or all."""
        table = self._read(at, after, aggregate_id)
        # Sources that cannot cut while reading (a table, an archive) are cut here; for the
        # others this checks what the read already did, in a few vectorised passes.
        if aggregate_id is not None and table.num_rows:
            table = table.filter(pc.equal(table.column("aggregate_id"), aggregate_id))
        if after is not None and table.num_rows:
            table = table.filter(_id_above(table, after))
        if at is not None and table.num_rows:
            table = table.filter(pc.invert(_id_above(table, at)))
        return table

    def batches(self, *, batch_size: int = 50_000) -> Iterator[pa.Table]:
        """Every event, in tables of at most `batch_size` rows, with the payload's text if held."""
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got `{batch_size!r}`.")
        return self._batches(batch_size)

    @abstractmethod
    def _read(
        self, at: StreamID | None, after: StreamID | None, aggregate_id: str | None
    ) -> pa.Table:
        """The events as one table, cut as far as this kind can while reading."""

    @abstractmethod
    def _batches(self, batch_size: int) -> Iterator[pa.Table]:
        """The events in bounded batches."""


class TableSource(Source):
    """Events already loaded: a table, or a DataFrame converted to one."""

    def __init__(self, table: pa.Table) -> None:
        self.events = table

    def _read(
        self, at: StreamID | None, after: StreamID | None, aggregate_id: str | None
    ) -> pa.Table:
        return self.events

    def _batches(self, batch_size: int) -> Iterator[pa.Table]:
        for batch in self.events.to_batches(batch_size):
            yield pa.Table.from_batches([batch])


class ArchiveSource(Source):
    """An archive, through what `ArchivedEvents` offers: loading never imports the archive."""

    def __init__(self, archive: ArchivedEvents, *, stream: str | None = None) -> None:
        self.archive = archive
        self.stream = stream  # None: every stream the archive holds

    def _read(
        self, at: StreamID | None, after: StreamID | None, aggregate_id: str | None
    ) -> pa.Table:
        return self.archive.events_table(stream=self.stream, aggregate_id=aggregate_id)

    def _batches(self, batch_size: int) -> Iterator[pa.Table]:
        for table in self.archive.iter_tables(stream=self.stream, keep_payload=True):
            for offset in range(0, table.num_rows, batch_size):
                yield table.slice(offset, batch_size)


class RedisSource(Source):
    """`(client, stream)`: a key, a glob, a list of keys, or a per-aggregate template."""

    def __init__(self, client: Client, stream: Streams, *, envelope: EnvelopeSpec = None) -> None:
        self.client = client
        self.stream = stream
        self.envelope = Envelope.of(envelope)
        self.template = (
            stream if isinstance(stream, str) and AGGREGATE_PLACEHOLDER in stream else None
        )
        if self.template is not None:
            head, _, tail = self.template.partition(AGGREGATE_PLACEHOLDER)
            pattern = f"^{re.escape(head)}(?P<id>.+){re.escape(tail)}$"
            self.envelope = dataclasses.replace(self.envelope, aggregate_id_from_key=pattern)

    def _read(
        self, at: StreamID | None, after: StreamID | None, aggregate_id: str | None
    ) -> pa.Table:
        streams = self._every_stream() if aggregate_id is None else self._one_stream(aggregate_id)
        if streams is None:
            return empty_table()
        start = after.next() if after is not None and after != StreamID.MAX else None
        # The payload's JSON text comes along, and stays where a payload field had values of
        # different types (made text in its column): there handlers need each payload as
        # written. Elsewhere the typed columns are exact and much faster to replay from.
        table = read_arrow(
            self.client, streams, start=start, end=at, envelope=self.envelope, keep_payload=True
        )
        if "payload" in table.column_names and not any(
            field.metadata and MIXED_TYPES in field.metadata
            for field in table.schema
            if field.name.startswith(PAYLOAD_PREFIX)
        ):
            table = table.drop_columns(["payload"])
        return table

    def _batches(self, batch_size: int) -> Iterator[pa.Table]:
        for batch in iter_batches(
            self.client,
            self._every_stream(),
            batch_size=batch_size,
            envelope=self.envelope,
            keep_payload=True,
        ):
            yield pa.Table.from_batches([batch])

    def _every_stream(self) -> Streams:
        """The streams to read for every aggregate: a template becomes a glob."""
        if self.template is None:
            return self.stream
        return self.template.replace(AGGREGATE_PLACEHOLDER, "*")

    def _one_stream(self, aggregate_id: str) -> Streams | None:
        """The streams to read for one aggregate; None when its own stream does not exist."""
        if self.template is None:
            return self.stream
        key = self.template.replace(AGGREGATE_PLACEHOLDER, aggregate_id)
        client = self.client
        exists = read_with_retry(client, lambda: client.exists(key), stream=key, command="EXISTS")
        return [key] if exists else None


def _is_streams(value: Any) -> bool:
    """A key, glob or template, or a list of keys: what a `(client, stream)` pair holds."""
    if isinstance(value, str):
        return True
    return (
        isinstance(value, Sequence)
        and not isinstance(value, bytes)
        and all(isinstance(v, str) for v in value)
    )


def _cut(at: Bound, clock: Clock) -> StreamID | datetime | None:
    """`at` as a stream ID (record clock) or a time (effective clock); None for now."""
    if at is None:
        return None
    if clock == "record":
        return end_id(at)
    if isinstance(at, str):
        return end_time(at)
    if isinstance(at, (datetime, date)):
        # A date is the whole day, as in record time.
        return at if isinstance(at, datetime) else end_time(at.isoformat())
    raise InvalidStreamID(
        f"`{at!r}` is not a time; with clock='effective' `at` must be a datetime, a "
        "pandas.Timestamp or an ISO-8601 string.",
        value=at,
    )


def _id_above(table: pa.Table, cut: StreamID) -> pa.ChunkedArray:
    """Which rows have a stream ID above `cut`."""
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
    """The events that had happened by `cut`, in `occurred_at` order."""
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
    """The ID of the first event without `occurred_at`, for the error message."""
    if "occurred_at" not in table.column_names:
        return str(table.column("id")[0].as_py()) if table.num_rows else "-"
    index = pc.index(pc.is_null(table.column("occurred_at")), True).as_py()
    return str(table.column("id")[index].as_py())


def _from_pandas(frame: pd.DataFrame) -> pa.Table:
    """A DataFrame as a table, with the mixed-types marks `read_pandas` kept in its attrs."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    mixed = set(frame.attrs.get(MIXED_ATTR, ()))
    if not mixed:
        return table
    fields = [
        f.with_metadata({**(f.metadata or {}), MIXED_TYPES: b"1"}) if f.name in mixed else f
        for f in table.schema
    ]
    return table.cast(pa.schema(fields, metadata=table.schema.metadata))
