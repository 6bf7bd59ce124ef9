"""Finding streams, checking that a key is one, and `streams()`: what each one holds."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pandas as pd
import redis
from redis.client import NEVER_DECODE
from redis.cluster import RedisCluster

from auditkit._exceptions import StreamNotFound
from auditkit._redis.connection import (
    Client,
    address_of,
    read_with_retry,
    redis_errors,
    stream_not_found,
    wrong_key_type,
)
from auditkit._redis.ids import StreamID
from auditkit._redis.text import is_utf8, key_text, text
from auditkit._redis.xinfo import StreamInfo, parse_stream_info

__all__ = [
    "GLOB_CHARS",
    "ensure_stream",
    "resolve_streams",
    "scan_streams",
    "stream_length",
    "streams",
]

GLOB_CHARS = frozenset("*?[")
"""Characters that make a key a SCAN MATCH pattern."""

STREAMS_COLUMNS = (
    "key",
    "length",
    "first_id",
    "last_id",
    "first_ts",
    "last_ts",
    "last_generated_id",
    "groups",
    "memory_bytes",
    "entries_added",
    "max_deleted_entry_id",
    "recorded_first_entry_id",
)


def streams(client: Client, pattern: str = "*") -> pd.DataFrame:
    """One row per stream whose key matches `pattern` (a glob, as in SCAN MATCH).

    Columns: `key`, `length`, `first_id`/`last_id` and their times `first_ts`/`last_ts`
    (UTC), `last_generated_id`, `groups` (consumer groups), `memory_bytes` (MEMORY USAGE;
    null when the ACL forbids it), and on Redis 7+ `entries_added`, `max_deleted_entry_id`
    and `recorded_first_entry_id` (null on 6.2). Sorted by key. A key that is not UTF-8
    is a `str` with surrogate escapes (`"orders:\\udcff"` for `b"orders:\\xff"`), which names
    it when passed back; the column is then of Python objects.

    Example:
        >>> streams(r, "orders*")[["key", "length", "first_id"]]
                 key  length        first_id
        0     orders       6  1772323200000-0
        1  orders:eu       3  1772323200000-0
        2  orders:us       2  1772323200000-0
    """
    keys = scan_streams(client, pattern)
    rows: list[dict[str, Any]] = []
    with redis_errors(client, command="XINFO STREAM"):
        pipe = client.pipeline(transaction=False)
        for key in keys:
            # NEVER_DECODE: entries may hold bytes that a decoding client would choke on.
            pipe.execute_command("XINFO STREAM", key, **{NEVER_DECODE: True})
            pipe.memory_usage(key)
        replies = pipe.execute(raise_on_error=False) if keys else []
    for key, info, memory in zip(keys, replies[0::2], replies[1::2], strict=True):
        if isinstance(info, Exception):
            if "no such key" in str(info).lower():
                continue  # deleted between SCAN and XINFO
            raise info
        info = parse_stream_info(key, info)
        rows.append(_stream_row(info, None if isinstance(memory, Exception) else memory))
    found = [row["key"] for row in rows]
    if all(map(is_utf8, found)):
        frame = pd.DataFrame(rows, columns=list(STREAMS_COLUMNS))
    else:
        # Python str objects as text.key_text gives them, each naming its key when passed
        # back: a pandas or Arrow string cannot hold a surrogate escape.
        frame = pd.DataFrame([{**row, "key": ""} for row in rows], columns=list(STREAMS_COLUMNS))
        frame["key"] = pd.Series(found, dtype=object)
    for column in ("length", "groups", "memory_bytes", "entries_added"):
        frame[column] = frame[column].astype("Int64")
    for column in ("first_ts", "last_ts"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


def scan_streams(client: Client, pattern: str) -> list[str]:
    """Keys of type stream matching a glob pattern, sorted (SCAN ... TYPE stream, not KEYS)."""
    found = read_with_retry(
        client,
        lambda: list(client.scan_iter(match=pattern, count=1_000, _type="stream")),
        command="SCAN",
    )
    # Keys as key_text gives them: one that is not UTF-8 is listed, and names it back.
    return sorted({key_text(k) for k in found})


def resolve_streams(client: Client, streams: str | Sequence[str]) -> list[str]:
    """The stream keys to read: a pattern is scanned, named keys are checked."""
    if not isinstance(client, (redis.Redis, RedisCluster)):
        hint = (
            " For an Archive's events: archive.events_table(stream=...), or the source "
            "(archive, stream)."
            if hasattr(client, "events_table")
            else ""
        )
        raise TypeError(
            "client must be a redis.Redis or a RedisCluster (ak.connect makes one), got "
            f"{type(client).__name__}.{hint}"
        )
    if isinstance(streams, str):
        if GLOB_CHARS & set(streams):
            keys = scan_streams(client, streams)
            if not keys:
                raise StreamNotFound(
                    f"No stream matches `{streams}` on {address_of(client)}. Check the pattern "
                    "(`auditkit streams` lists the streams) and the database number in the URL.",
                    stream=streams,
                )
            return keys
        streams = [streams]
    if isinstance(streams, bytes) or not isinstance(streams, Sequence):
        raise TypeError(
            f"streams must be a key, a glob pattern, or a list of keys; got "
            f"{type(streams).__name__}."
        )
    keys = list(dict.fromkeys(streams))
    for key in keys:
        if not isinstance(key, str):
            raise TypeError(f"stream keys must be str, got {type(key).__name__} `{key!r}`.")
        ensure_stream(client, key)
    return keys


def ensure_stream(client: Client, key: str) -> None:
    """Raise StreamNotFound or WrongKeyType unless `key` holds a stream."""
    raw = read_with_retry(client, lambda: client.type(key), stream=key, command="TYPE")
    key_type = text(raw)
    if key_type == "none":
        raise stream_not_found(client, key)
    if key_type != "stream":
        raise wrong_key_type(key, key_type)


def stream_length(client: Client, key: str) -> int:
    """XLEN of a stream."""
    length: int = read_with_retry(client, lambda: client.xlen(key), stream=key, command="XLEN")
    return length


def _stream_row(info: StreamInfo, memory: int | None) -> dict[str, Any]:
    return {
        "key": info.key,
        "length": info.length,
        "first_id": _str(info.first_id),
        "last_id": _str(info.last_id),
        "first_ts": _time(info.first_id),
        "last_ts": _time(info.last_id),
        "last_generated_id": str(info.last_generated_id),
        "groups": info.groups,
        "memory_bytes": memory,
        "entries_added": info.entries_added,
        "max_deleted_entry_id": _str(info.max_deleted_entry_id),
        "recorded_first_entry_id": _str(info.recorded_first_entry_id),
    }


def _time(sid: StreamID | None) -> datetime | None:
    if sid is None:
        return None
    try:
        return sid.to_datetime()
    except OverflowError:  # an ID set by hand beyond year 9999
        return None


def _str(sid: StreamID | None) -> str | None:
    return None if sid is None else str(sid)
