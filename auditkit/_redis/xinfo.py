"""XINFO STREAM and XINFO GROUPS, read and decoded in one place."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.client import NEVER_DECODE

from auditkit._redis.connection import Client, read_with_retry, redis_errors
from auditkit._redis.ids import StreamID
from auditkit._redis.text import text

__all__ = [
    "StreamInfo",
    "consumer_infos",
    "group_infos",
    "parse_stream_info",
    "stream_info",
]


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """What XINFO STREAM says about a stream, decoded.

    The counters `entries_added`, `max_deleted_entry_id` and `recorded_first_entry_id`
    exist from Redis 7.0 on; they are None on 6.2.
    """

    key: str
    length: int
    groups: int
    first_id: StreamID | None
    last_id: StreamID | None
    last_generated_id: StreamID
    entries_added: int | None = None
    max_deleted_entry_id: StreamID | None = None
    recorded_first_entry_id: StreamID | None = None


def stream_info(client: Client, key: str) -> StreamInfo:
    """XINFO STREAM of `key`, retried on connection failures."""
    reply: dict[str, Any] = read_with_retry(
        client,
        # NEVER_DECODE: the first and last entries may hold bytes a decoding client would
        # choke on.
        lambda: client.execute_command("XINFO STREAM", key, **{NEVER_DECODE: True}),  # type: ignore[no-untyped-call]
        stream=key,
        command="XINFO STREAM",
    )
    return parse_stream_info(key, reply)


def parse_stream_info(key: str, reply: dict[str, Any]) -> StreamInfo:
    """A StreamInfo from redis-py's parsed XINFO STREAM reply (for pipelined reads)."""
    first, last = reply.get("first-entry"), reply.get("last-entry")
    added = reply.get("entries-added")
    return StreamInfo(
        key=key,
        length=int(reply["length"]),
        groups=int(reply.get("groups") or 0),
        first_id=StreamID.parse(first[0]) if first else None,
        last_id=StreamID.parse(last[0]) if last else None,
        last_generated_id=StreamID.parse(reply["last-generated-id"]),
        entries_added=added if isinstance(added, int) else None,
        max_deleted_entry_id=_id_or_none(reply.get("max-deleted-entry-id")),
        recorded_first_entry_id=_id_or_none(reply.get("recorded-first-entry-id")),
    )


def group_infos(client: Client, key: str) -> list[dict[str, Any]]:
    """XINFO GROUPS of `key`: one dict per group, its `name` and `last-delivered-id` as text.

    `raw_name` is the name as Redis returned it: commands about the group take that one,
    since a name that is not UTF-8 has no text form Redis would recognise.
    """
    with redis_errors(client, stream=key, command="XINFO GROUPS"):
        groups: list[dict[str, Any]] = client.xinfo_groups(key)
    return [
        {
            **group,
            "name": text(group["name"]),
            "raw_name": group["name"],
            "last-delivered-id": text(group.get("last-delivered-id")),
        }
        for group in groups
    ]


def consumer_infos(client: Client, key: str, group: str | bytes) -> list[dict[str, Any]]:
    """XINFO CONSUMERS of a group: one dict per consumer, its `name` as text."""
    with redis_errors(client, stream=key, command="XINFO CONSUMERS"):
        consumers: list[dict[str, Any]] = client.xinfo_consumers(key, group)
    return [{**c, "name": text(c["name"])} for c in consumers]


def _id_or_none(value: Any) -> StreamID | None:
    return None if value is None else StreamID.parse(value)
