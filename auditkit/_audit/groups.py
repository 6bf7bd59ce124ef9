"""Consumer groups: lag, pending work, crashed consumers, poison messages, and why they fail."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pandas as pd

from auditkit._display import ShownFrame
from auditkit._findings import Findings
from auditkit._load.decode import extract, finish, prepare
from auditkit._load.envelope import Envelope, EnvelopeSpec
from auditkit._load.match import MatchCheck
from auditkit._redis.connection import Client, redis_errors
from auditkit._redis.ids import StreamID
from auditkit._redis.pages import iter_pages
from auditkit._redis.text import text
from auditkit._redis.xinfo import consumer_infos, group_infos

__all__ = ["LAG_WARNING", "PENDING_COUNT", "check_groups", "consumer_groups", "pending_entries"]

PENDING_COUNT = 10_000
"""Pending entries inspected one by one per group (deliveries, existence, forensics)."""
LAG_WARNING = 10_000
"""Entries not yet delivered above which a group's lag is a warning."""
_LAG_LIMIT = 1_000_000
"""Entries counted when Redis does not report a group's lag; beyond it, `>=` is reported."""


def consumer_groups(client: Client, stream: str) -> pd.DataFrame:
    """One row per consumer group of `stream`.

    Columns: `group`, `consumers`, `pending`, `last_delivered_id`, `entries_read` (Redis 7),
    `lag` and `lag_source` (`redis`, or `computed` from IDs when Redis reports null, as on
    6.2 or after deletions), `oldest_pending_id`, `oldest_pending_idle_ms`,
    `max_deliveries`.
    """
    rows = []
    for info in group_infos(client, stream):
        name = info["name"]
        lag, source = _lag(client, stream, info)
        pending = pending_entries(
            client, stream, group=info["raw_name"], count=PENDING_COUNT, forensics=False
        )
        oldest = pending.iloc[0] if len(pending) else None
        rows.append(
            {
                "group": name,
                "consumers": info.get("consumers"),
                "pending": info.get("pending"),
                "last_delivered_id": info.get("last-delivered-id"),
                "entries_read": info.get("entries-read"),
                "lag": lag,
                "lag_source": source,
                "oldest_pending_id": None if oldest is None else oldest["id"],
                "oldest_pending_idle_ms": None if oldest is None else int(oldest["idle_ms"]),
                "max_deliveries": int(pending["deliveries"].max()) if len(pending) else None,
            }
        )
    columns = [
        "group",
        "consumers",
        "pending",
        "last_delivered_id",
        "entries_read",
        "lag",
        "lag_source",
        "oldest_pending_id",
        "oldest_pending_idle_ms",
        "max_deliveries",
    ]
    frame = ShownFrame(rows, columns=columns)
    for column in (
        "consumers",
        "pending",
        "entries_read",
        "lag",
        "oldest_pending_idle_ms",
        "max_deliveries",
    ):
        frame[column] = frame[column].astype("Int64")
    return frame


def pending_entries(
    client: Client,
    stream: str,
    *,
    group: str | bytes | None = None,
    count: int = PENDING_COUNT,
    forensics: bool = True,
    envelope: EnvelopeSpec = None,
) -> pd.DataFrame:
    """Pending entries with their consumer, idle time and delivery count, oldest first.

    At most `count` entries per group (XPENDING's COUNT), the oldest.

    With `forensics`, each row also carries its event's envelope (`event_type`,
    `schema_version`, `aggregate_id`, `producer`) and `exists` (False when the message was
    trimmed or deleted), so "every poison message is a v1 `Withdrawn`" is one groupby away.
    """
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ValueError(f"count must be a positive integer, got `{count!r}`.")
    names = [group] if group is not None else [g["raw_name"] for g in group_infos(client, stream)]
    rows: list[dict[str, Any]] = []
    for name in names:
        with redis_errors(client, stream=stream, command="XPENDING"):
            entries = client.xpending_range(stream, name, min="-", max="+", count=count)
        for entry in entries:
            rows.append(
                {
                    "group": text(name),
                    "consumer": text(entry["consumer"]),
                    "id": text(entry["message_id"]),
                    "idle_ms": int(entry["time_since_delivered"]),
                    "deliveries": int(entry["times_delivered"]),
                }
            )
    frame: pd.DataFrame = ShownFrame(
        rows, columns=["group", "consumer", "id", "idle_ms", "deliveries"]
    )
    if forensics:
        frame = _with_events(client, stream, frame, Envelope.of(envelope))
    return frame


def check_groups(
    client: Client,
    stream: str,
    *,
    poison_after: int = 5,
    stale_after: timedelta = timedelta(minutes=15),
    idle_after: timedelta = timedelta(hours=1),
    lag_warning: int = LAG_WARNING,
    pending_count: int = PENDING_COUNT,
    envelope: EnvelopeSpec = None,
) -> pd.DataFrame:
    """Findings about the consumer groups of `stream`.

    - `poison-message` (error): delivered more than `poison_after` times; the detail says
      what the event is (type, version, producer).
    - `pending-trimmed` (error): pending, but the message no longer exists.
    - `pending-stale` (warning): pending for longer than `stale_after` (a consumer that
      crashed mid-work leaves these).
    - `consumer-idle` (warning with pending entries, info without): not seen for
      `idle_after`.
    - `group-lag` (warning above `lag_warning`, else info): entries not yet delivered,
      computed from IDs when Redis reports null.

    The oldest `pending_count` pending entries of each group are inspected one by one.
    """
    found = Findings(stream)
    stale_ms = stale_after.total_seconds() * 1000
    for info in group_infos(client, stream):
        name = info["name"]
        lag, source = _lag(client, stream, info)
        if lag:
            how = (
                " (Redis reports no lag for this group; counted from its last delivered ID)"
                if source == "computed"
                else ""
            )
            severity = "warning" if lag > lag_warning else "info"
            found.add(
                "group-lag",
                severity,
                f"group `{name}` has {lag:,} entries not yet delivered{how}",
                id=info.get("last-delivered-id"),
            )
        pending = pending_entries(
            client, stream, group=info["raw_name"], count=pending_count, envelope=envelope
        )
        for row in pending.to_dict("records"):
            what = _describe(row)
            if not row["exists"]:
                found.add(
                    "pending-trimmed",
                    "error",
                    f"group `{name}`: pending entry {row['id']} (consumer `{row['consumer']}`, "
                    f"delivered {row['deliveries']} times) no longer exists in the stream: it "
                    "was trimmed or deleted before being acknowledged, and can never be "
                    "processed",
                    id=row["id"],
                )
            # A poison message is one still when its entry is gone: the deliveries say so.
            if row["deliveries"] > poison_after:
                found.add(
                    "poison-message",
                    "error",
                    f"group `{name}`: {row['id']} was delivered {row['deliveries']} times "
                    f"and never acknowledged ({what if row['exists'] else 'its entry is gone'})",
                    id=row["id"],
                    aggregate_id=row["aggregate_id"],
                )
            elif row["exists"] and row["idle_ms"] > stale_ms:
                found.add(
                    "pending-stale",
                    "warning",
                    f"group `{name}`: {row['id']} pending at consumer `{row['consumer']}` "
                    f"for {_duration(row['idle_ms'])} ({what})",
                    id=row["id"],
                    aggregate_id=row["aggregate_id"],
                )
        for consumer in consumer_infos(client, stream, info["raw_name"]):
            idle = int(consumer.get("idle", 0))
            if idle <= idle_after.total_seconds() * 1000:
                continue
            holding = int(consumer.get("pending", 0))
            severity = "warning" if holding else "info"
            detail = f"group `{name}`: consumer `{consumer['name']}` idle for {_duration(idle)}"
            detail += f", holding {holding:,} pending entries" if holding else ", holding nothing"
            found.add("consumer-idle", severity, detail)
    return found.frame()


def _lag(client: Client, stream: str, info: dict[str, Any]) -> tuple[int | None, str]:
    lag = info.get("lag")
    if isinstance(lag, int):
        return lag, "redis"
    # Redis 6.2 has no lag; Redis 7 reports null after deletions or for a group created at
    # an arbitrary ID. Count what lies after the last delivered ID (up to a bound).
    last = StreamID.parse(info.get("last-delivered-id") or "0-0")
    if last == StreamID.MAX:
        return 0, "computed"
    counted = 0
    for page in iter_pages(client, stream, start=last.next(), count=_LAG_LIMIT):
        counted += len(page)
    return counted, "computed"


def _with_events(
    client: Client, stream: str, frame: pd.DataFrame, envelope: Envelope
) -> pd.DataFrame:
    ids = frame["id"].tolist()
    with redis_errors(client, stream=stream, command="XRANGE"):
        pipe = client.pipeline(transaction=False)
        for entry_id in ids:
            pipe.xrange(stream, min=entry_id, max=entry_id, count=1)
        replies = pipe.execute() if ids else []
    # The pending entries still in the stream, decoded as any read decodes them.
    page = [(raw[0][0], _flat(raw[0][1])) for raw in replies if raw]
    columns = ("event_type", "schema_version", "aggregate_id", "producer")
    values: dict[str, dict[str, Any]] = {}
    if page:
        prepared = prepare(extract(page, stream), envelope)
        table = finish(prepared)
        # The pending entries are a sample of the stream: an envelope that does not fit
        # them says so, rather than describe each as "no envelope fields".
        check = MatchCheck(envelope, stream)
        check.feed(table, prepared.present, prepared.names, prepared.extras)
        check.close()
        names = table.column_names
        rows = table.select([c for c in ("id", *columns) if c in names]).to_pylist()
        values = {row["id"]: row for row in rows}
    frame = frame.copy()
    frame["exists"] = [entry_id in values for entry_id in ids]
    for column in columns:
        frame[column] = [values.get(entry_id, {}).get(column) for entry_id in ids]
    return frame


def _flat(fields: Any) -> list[bytes]:
    # redis-py returns an entry's fields as a dict; a page holds them as [f1, v1, f2, ...].
    if isinstance(fields, dict):
        return [part for pair in fields.items() for part in pair]
    return list(fields)


def _describe(row: Any) -> str:
    parts = []
    if row.get("event_type"):
        parts.append(f"a `{row['event_type']}`")
    if row.get("schema_version"):
        parts.append(f"v{row['schema_version']}")
    if row.get("producer"):
        parts.append(f"from `{row['producer']}`")
    if row.get("aggregate_id"):
        parts.append(f"of `{row['aggregate_id']}`")
    return " ".join(parts) or "no envelope fields"


def _duration(ms: float) -> str:
    seconds = int(ms // 1000)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds / 3600:.1f} h"
