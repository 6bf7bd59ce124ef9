"""`seed`: events and consumer-group state written into a new stream of a test server.

Entries go in with their IDs; each group is created, its consumers too, and each pending
entry delivered to its consumer (the group's position set just before it, one XREADGROUP)
and given its delivery count and idle time (XCLAIM ... IDLE RETRYCOUNT). Pending messages
that were trimmed are added for the delivery and trimmed again. Then each group's last
delivered ID, the stream's counters (Redis 7) and the consumers' idle times are set.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import redis

import auditkit as ak
from auditkit.testing._idle import set_consumer_idle
from auditkit.testing._samples import Sample, from_file, from_frame

__all__ = ["seed"]

Source = pd.DataFrame | str | os.PathLike[str] | ak.Archive | tuple[ak.Archive, str]
_BATCH = 1_000


def seed(client: redis.Redis, stream: str, source: Source | Sample) -> int:
    """Write events, and consumer-group state where the source has it, into a new stream.

    Args:
        client: the Redis to seed (a test server: the stream must not exist yet).
        stream: the key to write.
        source: a DataFrame (a row per entry: an optional `id` column with the stream ID,
            the other columns the entry's fields; a null leaves the field out), a sample
            file (`.jsonl` or `.parquet`, see `write_sample`; an archive's Parquet file
            gives its entries, any other Parquet file is read as a DataFrame), a Sample,
            or an `ak.Archive` (its archived stream of the same name, or
            `(archive, "archived-stream")`).

    Returns:
        How many entries were written.

    Example:
        >>> seed(r, "orders:copy", pd.DataFrame({"type": ["Placed"], "amount": [5]}))
        1
    """
    if client.exists(stream):
        raise ak.TargetExists(
            f"seed writes a new stream, and `{stream}` exists: seed another key, or flush "
            "the test database first (the auditkit_redis fixture does, per test).",
            stream=stream,
        )
    if isinstance(source, (tuple, ak.Archive)):
        archive, name = source if isinstance(source, tuple) else (source, stream)
        return archive.restore(client, name, stream, progress=False)
    if isinstance(source, pd.DataFrame):
        sample = from_frame(stream, source)
    elif isinstance(source, Sample):
        sample = source
    else:
        sample = from_file(Path(source))
    return _seed(client, stream, sample)


def _seed(client: redis.Redis, stream: str, sample: Sample) -> int:
    version = _version(client)
    ids = {i for i, _ in sample.entries}
    # A pending message that was trimmed: added for the delivery, then deleted again.
    gone = sorted({p["id"] for p in sample.pending} - ids, key=ak.StreamID.parse)
    placeholders = [(i, [b"auditkit.trimmed", b""]) for i in gone]
    rows = list(sample.entries) + placeholders
    if any(i != "*" for i, _ in rows):
        rows.sort(key=lambda row: ak.StreamID.parse(row[0]) if row[0] != "*" else ak.StreamID.MAX)
    for chunk in _chunks(rows):
        pipe = client.pipeline(transaction=False)
        for entry_id, flat in chunk:
            if not flat:
                raise ValueError(f"entry `{entry_id}` has no field; Redis needs at least one.")
            _run(pipe, "XADD", stream, entry_id, *flat)
        pipe.execute()
    for group in sample.groups:
        held = [p for p in sample.pending if p["group"] == group["name"]]
        _seed_group(client, stream, group, held, version)
    # Below the first entry they were trimmed: trim them again (XDEL would record them as
    # deleted in Redis 7's max-deleted-entry-id); between entries they were deleted.
    first = min((ak.StreamID.parse(i) for i in ids if i != "*"), default=None)
    below = [i for i in gone if first is None or ak.StreamID.parse(i) < first]
    if below:
        cut = str(first) if first is not None else str(ak.StreamID.parse(below[-1]).next())
        client.xtrim(stream, minid=cut, approximate=False)
    if deleted := [i for i in gone if i not in below]:
        client.xdel(stream, *deleted)
    _restore_counters(client, stream, sample, version)
    set_consumer_idle(client, stream, {g["name"]: g.get("idle_ms", {}) for g in sample.groups})
    return len(sample.entries)


def _seed_group(
    client: redis.Redis,
    stream: str,
    group: dict[str, Any],
    pending: list[dict[str, Any]],
    version: tuple[int, int],
) -> None:
    name = group["name"].encode("utf-8", "surrogateescape")
    client.xgroup_create(stream, name, id="0", mkstream=True)
    for consumer in group["consumers"]:
        client.xgroup_createconsumer(stream, name, consumer.encode("utf-8", "surrogateescape"))
    pending = sorted(pending, key=lambda p: ak.StreamID.parse(p["id"]))
    for chunk in _chunks(pending):
        pipe = client.pipeline(transaction=False)
        for entry in chunk:
            # Deliver exactly this entry to its consumer: the group's position just before
            # it, one XREADGROUP; then XCLAIM sets its idle time and delivery count.
            consumer = entry["consumer"].encode("utf-8", "surrogateescape")
            pipe.xgroup_setid(stream, name, str(ak.StreamID.parse(entry["id"]).prev()))
            pipe.xreadgroup(name, consumer, {stream: ">"}, count=1)
            pipe.xclaim(
                stream,
                name,
                consumer,
                0,
                [entry["id"]],
                idle=entry["idle_ms"],
                retrycount=entry["deliveries"],
                justid=True,
            )
        replies = pipe.execute()
        for entry, claimed in zip(chunk, replies[2::3], strict=True):
            if [_id(c) for c in claimed] != [entry["id"]]:
                raise ak.AuditKitError(
                    f"Seeding pending entry {entry['id']} of group `{group['name']}` failed "
                    f"(XCLAIM answered {claimed!r}); the sample may be damaged."
                )
    args: list[Any] = ["XGROUP", "SETID", stream, name, group["last_delivered_id"]]
    if group.get("entries_read") is not None and version >= (7, 0):
        args += ["ENTRIESREAD", group["entries_read"]]
    _run(client, *args)


def _restore_counters(
    client: redis.Redis, stream: str, sample: Sample, version: tuple[int, int]
) -> None:
    last = sample.counters.get("last_generated_id")
    if not last or (not sample.entries and not sample.pending):
        return
    args: list[Any] = ["XSETID", stream, last]
    added = sample.counters.get("entries_added")
    if version >= (7, 0) and added is not None:
        args += ["ENTRIESADDED", max(added, client.xlen(stream))]
        args += ["MAXDELETEDID", sample.counters.get("max_deleted_entry_id") or "0-0"]
    _run(client, *args)


def _run(client: Any, *args: Any) -> Any:
    """A raw command, for what redis-py's methods lack: XADD of fields in their order with
    names that repeat or are not text, XGROUP SETID's ENTRIESREAD, XSETID's counters."""
    return client.execute_command(*args)


def _version(client: redis.Redis) -> tuple[int, int]:
    text = str(client.info("server")["redis_version"])
    major, minor = text.split(".")[:2]
    return int(major), int(minor)


def _chunks(rows: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(rows), _BATCH):
        yield rows[start : start + _BATCH]


def _id(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
