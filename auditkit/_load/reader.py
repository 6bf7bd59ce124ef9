"""Loading stream ranges: `read_arrow`, `read_pandas`, `iter_batches`.

Redis -> raw pages (prefetching thread, hiredis) -> per-page Arrow tables (payload JSON
parsed in bulk on a worker thread) -> one table, or record batches in bounded memory.
"""

from __future__ import annotations

import importlib
from collections import deque
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pyarrow as pa

from auditkit._exceptions import AuditKitError
from auditkit._load.decode import Prepared, empty_table, extract, finish, prepare
from auditkit._load.envelope import Envelope, EnvelopeSpec
from auditkit._load.match import MatchCheck
from auditkit._load.pipeline import pipelined
from auditkit._load.unify import MIXED_ATTR, MIXED_TYPES, unify_tables
from auditkit._progress import progress_bar
from auditkit._redis.bounds import Bound, end_id, start_id
from auditkit._redis.connection import Client
from auditkit._redis.ids import StreamID
from auditkit._redis.pages import iter_pages
from auditkit._redis.streams import resolve_streams, stream_length
from auditkit._types import Streams

__all__ = [
    "iter_batches",
    "read_arrow",
    "read_pandas",
    "read_polars",
    "stream_tables",
    "to_pandas",
]

_WORKERS = 2  # page conversions at once: Arrow releases the GIL, so they use a second core
_IN_FLIGHT = 6  # pages converting or waiting: bounds memory, keeps the workers busy


def read_arrow(
    client: Client,
    streams: Streams,
    *,
    start: Bound = None,
    end: Bound = None,
    count: int | None = None,
    reverse: bool = False,
    envelope: EnvelopeSpec = None,
    keep_payload: bool = False,
    progress: bool | None = None,
) -> pa.Table:
    """Load a range of one or more streams into an Arrow table.

    Args:
        client: a `redis.Redis` (see `connect`).
        streams: a key, a glob pattern such as `"orders:*"`, or a list of keys. Several
            streams merge into one table ordered by ID (time, then sequence).
        start: first ID or time to include: `"1772323200000-0"`, `"1772323200000"`, a
            datetime, a pandas.Timestamp, an ISO-8601 string (naive means UTC), a period
            (`"2026"`, `"2026-03"`, `"2026-03-01"`, a date: from its first instant), or
            None/"-".
        end: last ID or time to include (inclusive, like XRANGE; a period up to its last
            instant); None/"+" for the newest.
        count: at most this many entries (the first ones; the latest ones with `reverse`).
        reverse: newest first, as XREVRANGE; with `count`, reads the latest `count` entries.
        envelope: which fields carry the event type, aggregate id, version, payload, time.
        keep_payload: also keep the payload's JSON text, in column `payload` (exact, where
            the typed columns may have had to unify a field's types across events).
        progress: show a progress bar (default: only on a terminal).

    Returns:
        A table with `stream`, `id`, `ts` (record time, UTC), `seq`, `event_type`,
        `aggregate_id`, `schema_version`, `occurred_at`, the other fields under their own
        names, `payload_error`, and the payload as typed `payload.<path>` columns.

    Raises:
        StreamNotFound: a named stream does not exist, or a pattern matches none.
        WrongKeyType: a named key is not a stream.
        InvalidStreamID: a bound is neither an ID nor a time.

    Example:
        >>> tbl = read_arrow(r, "orders", start="2026-03-01", end="2026-03-01T23:59Z")
        >>> tbl.column("event_type").to_pylist()
        ['OrderPlaced', 'OrderPlaced', 'OrderPaid']
    """
    # Arguments first: a wrong bound or count fails before any command reaches Redis.
    low, high = start_id(start), end_id(end)
    _check_count(count)
    envelope = Envelope.of(envelope)
    keys = resolve_streams(client, streams)
    tables = [
        t
        for key in keys
        for t in stream_tables(
            client,
            key,
            start=low,
            end=high,
            count=count,
            reverse=reverse,
            envelope=envelope,
            keep_payload=keep_payload,
            progress=progress,
        )
    ]
    table = unify_tables(tables) if tables else empty_table()
    if not table.num_columns:
        table = empty_table()
    if len(keys) > 1:
        order = "descending" if reverse else "ascending"
        table = table.sort_by([("ts", order), ("seq", order), ("stream", order)])
        if count is not None:
            table = table.slice(0, count)
    return table


def read_pandas(
    client: Client,
    streams: Streams,
    *,
    start: Bound = None,
    end: Bound = None,
    count: int | None = None,
    reverse: bool = False,
    envelope: EnvelopeSpec = None,
    keep_payload: bool = False,
    progress: bool | None = None,
) -> pd.DataFrame:
    """`read_arrow`, as a pandas DataFrame (integers stay integers, with nulls as <NA>).

    Example:
        >>> df = read_pandas(r, ["orders", "payments"])
        >>> df.groupby("stream").size().to_dict()
        {'orders': 6, 'payments': 3}
    """
    table = read_arrow(
        client,
        streams,
        start=start,
        end=end,
        count=count,
        reverse=reverse,
        envelope=envelope,
        keep_payload=keep_payload,
        progress=progress,
    )
    return to_pandas(table)


def read_polars(
    client: Client,
    streams: Streams,
    *,
    start: Bound = None,
    end: Bound = None,
    count: int | None = None,
    reverse: bool = False,
    envelope: EnvelopeSpec = None,
    keep_payload: bool = False,
    progress: bool | None = None,
) -> Any:
    """`read_arrow`, as a polars DataFrame (needs `pip install 'auditkit[polars]'`).

    The table passes to polars without a copy where Arrow and polars share a layout.

    Raises:
        AuditKitError: polars is not installed (before anything is read).

    Example:
        >>> df = read_polars(r, "orders")
        >>> df.group_by("event_type").len().sort("event_type").rows()
        [('OrderClosed', 1), ('OrderPaid', 2), ('OrderPlaced', 2), ('OrderRefunded', 1)]
    """
    polars = _polars()
    table = read_arrow(
        client,
        streams,
        start=start,
        end=end,
        count=count,
        reverse=reverse,
        envelope=envelope,
        keep_payload=keep_payload,
        progress=progress,
    )
    return polars.from_arrow(table)


def iter_batches(
    client: Client,
    streams: Streams,
    *,
    start: Bound = None,
    end: Bound = None,
    batch_size: int = 50_000,
    envelope: EnvelopeSpec = None,
    keep_payload: bool = False,
    progress: bool | None = None,
) -> Iterator[pa.RecordBatch]:
    """Stream a range as Arrow record batches, in bounded memory for any stream length.

    Batches hold one stream each, streams in key order, entries in ID order. A batch has
    at most `batch_size` rows; its schema may differ from the previous batch's when the
    stream's fields change (`unify_tables`-style promotion happens within a batch).

    Example:
        >>> for batch in iter_batches(r, "orders:*", batch_size=2):
        ...     print(batch.column("stream")[0], batch.num_rows)
        orders:eu 2
        orders:eu 1
        orders:us 2
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got `{batch_size}`.")
    low, high = start_id(start), end_id(end)
    envelope = Envelope.of(envelope)
    keys = resolve_streams(client, streams)
    for key in keys:
        pending: list[pa.Table] = []
        rows = 0
        tables = stream_tables(
            client,
            key,
            start=low,
            end=high,
            envelope=envelope,
            keep_payload=keep_payload,
            progress=progress,
        )
        for table in tables:
            pending.append(table)
            rows += table.num_rows
            if rows >= batch_size:
                merged = unify_tables(pending)
                full = (rows // batch_size) * batch_size
                yield from merged.slice(0, full).combine_chunks().to_batches(batch_size)
                pending, rows = [merged.slice(full)], rows - full
        if rows:
            yield from unify_tables(pending).combine_chunks().to_batches(batch_size)


def to_pandas(table: pa.Table) -> pd.DataFrame:
    """A DataFrame view of a frame table: nullable integers and booleans, UTC timestamps."""
    mapping = {
        pa.int8(): pd.Int8Dtype(),
        pa.int16(): pd.Int16Dtype(),
        pa.int32(): pd.Int32Dtype(),
        pa.int64(): pd.Int64Dtype(),
        pa.uint8(): pd.UInt8Dtype(),
        pa.uint16(): pd.UInt16Dtype(),
        pa.uint32(): pd.UInt32Dtype(),
        pa.uint64(): pd.UInt64Dtype(),
        pa.bool_(): pd.BooleanDtype(),
    }
    frame: pd.DataFrame = table.to_pandas(types_mapper=mapping.get, split_blocks=True)
    # pandas keeps no field metadata: the columns whose values had several types (made
    # text) are named here, where a source made from the frame finds them again.
    mixed = [f.name for f in table.schema if f.metadata and MIXED_TYPES in f.metadata]
    if mixed:
        frame.attrs[MIXED_ATTR] = mixed
    return frame


def stream_tables(
    client: Client,
    key: str,
    *,
    start: StreamID | None = None,
    end: StreamID | None = None,
    count: int | None = None,
    reverse: bool = False,
    envelope: EnvelopeSpec = None,
    keep_payload: bool = False,
    keep_fields: bool = False,
    progress: bool | None = None,
) -> Iterator[pa.Table]:
    """One stream's range as frame tables, page by page, in order (bounded memory).

    Raises `EnvelopeMismatch` as soon as the envelope is seen not to fit (after a first
    sample, and at the end over everything read).
    """
    low, high = start, end
    envelope = Envelope.of(envelope)
    total = count if count is not None else None
    if total is None and low is None and high is None:
        total = stream_length(client, key)
    pages = iter_pages(client, key, start=low, end=high, count=count, reverse=reverse)
    check = MatchCheck(envelope, key)
    seen: deque[tuple[int, tuple[str, ...], int]] = deque()
    with progress_bar(total=total, desc=key, enabled=progress) as bar:

        def prepared() -> Iterator[Prepared]:
            for page in pages:
                bar.update(len(page))
                piece = prepare(
                    extract(page, key), envelope, keep_payload=keep_payload, keep_fields=keep_fields
                )
                seen.append((piece.present, piece.names, piece.extras))
                yield piece

        for table in pipelined(prepared(), finish, workers=_WORKERS, in_flight=_IN_FLIGHT):
            check.feed(table, *seen.popleft())
            yield table
        check.close()


def _polars() -> Any:
    """The polars module, or the install line when it is missing."""
    try:
        return importlib.import_module("polars")
    except ImportError:
        raise AuditKitError(
            "read_polars needs the polars package: pip install 'auditkit[polars]' "
            "(or read_arrow, then polars.from_arrow)."
        ) from None


def _check_count(count: int | None) -> None:
    if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 0):
        raise ValueError(f"count must be a non-negative integer or None, got `{count!r}`.")
