"""Durability posture: would the server keep the event store through a crash or memory pressure?"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd
import redis

from auditkit._exceptions import AuditKitError
from auditkit._findings import Findings
from auditkit._redis.connection import Client, servers
from auditkit._redis.text import text
from auditkit._redis.xinfo import stream_info

if TYPE_CHECKING:
    from auditkit._archive.archive import Archive

__all__ = ["check_durability"]

_EVICTING = ("allkeys-lru", "allkeys-lfu", "allkeys-random")


def check_durability(
    client: Client, *, streams: list[str] | None = None, archive: Archive | None = None
) -> pd.DataFrame:
    """Findings about persistence, eviction, replication and trimmed, unarchived streams.

    Works with a read-only user: what it may not read (CONFIG GET, INFO) is reported as
    `durability-unknown` with the reason, never as a failure.

    - `no-persistence` (error): neither AOF nor RDB snapshots: a restart loses every event.
    - `aof-off` (warning): RDB only: a crash loses what came after the last snapshot.
    - `appendfsync-no` (warning): the OS decides when AOF reaches the disk.
    - `evicting-policy` (error with a maxmemory set, warning without): an `allkeys-*`
      policy can evict whole streams under memory pressure.
    - `replica` (info): the server is a replica.
    - `trimmed-not-archived` (warning): a stream lost entries (Redis 7 counts them) and no
      archive holds it.

    On a Redis Cluster every primary is checked, and each finding names its node.
    """
    found = Findings()
    nodes = servers(client)
    for server in nodes:
        if len(nodes) == 1:
            _check_server(server, found)
            continue
        own = Findings()
        _check_server(server, own)
        node = server.connection_pool.connection_kwargs
        for row in own.rows:
            detail = f"{node.get('host')}:{node.get('port')}: {row['detail']}"
            found.rows.append({**row, "detail": detail})
    for stream in streams or []:
        _trimmed(client, stream, archive, found)
    return found.frame()


def _check_server(client: redis.Redis, found: Findings) -> None:
    config = _config(client, found)
    if config is not None:
        aof = config.get("appendonly") == "yes"
        rdb = bool(config.get("save", "").strip())
        if not aof and not rdb:
            found.add(
                "no-persistence",
                "error",
                "appendonly is no and save is empty: a restart or crash loses every stream",
            )
        elif not aof:
            found.add(
                "aof-off",
                "warning",
                f"appendonly is no (RDB only, save '{config.get('save')}'): a crash loses "
                "the events written since the last snapshot",
            )
        if aof and config.get("appendfsync") == "no":
            found.add(
                "appendfsync-no",
                "warning",
                "appendfsync is no: the operating system decides when appended events "
                "reach the disk (seconds of events can be lost)",
            )
        policy = config.get("maxmemory-policy", "")
        if policy in _EVICTING:
            limit = int(config.get("maxmemory") or 0)
            if limit:
                found.add(
                    "evicting-policy",
                    "error",
                    f"maxmemory-policy is {policy} with maxmemory {limit:,} bytes: under "
                    "memory pressure Redis evicts keys, whole streams included",
                )
            else:
                found.add(
                    "evicting-policy",
                    "warning",
                    f"maxmemory-policy is {policy}: it evicts streams as soon as a "
                    "maxmemory limit is set (none is, now)",
                )
    role = _info(client, "replication", found)
    if role is not None and role.get("role") not in (None, "master"):
        found.add(
            "replica",
            "info",
            f"the server is a {role.get('role')} of {role.get('master_host')}:"
            f"{role.get('master_port')}; trims and writes belong on the primary",
        )


def _config(client: redis.Redis, found: Findings) -> dict[str, str] | None:
    values: dict[str, str] = {}
    for name in ("appendonly", "appendfsync", "save", "maxmemory", "maxmemory-policy"):
        try:
            reply = client.config_get(name)
        except redis.exceptions.NoPermissionError as exc:
            found.add(
                "durability-unknown",
                "info",
                f"CONFIG GET is not allowed for this user ({exc}): persistence and "
                "eviction settings are unknown; ask an administrator or grant +config|get",
            )
            return None
        except redis.ResponseError as exc:  # CONFIG renamed or disabled (managed services)
            found.add(
                "durability-unknown",
                "info",
                f"CONFIG GET failed ({exc}): persistence and eviction settings are unknown",
            )
            return None
        values.update({str(text(k)): str(text(v)) for k, v in reply.items()})
    return values


def _info(client: redis.Redis, section: str, found: Findings) -> dict[str, Any] | None:
    try:
        info: dict[str, Any] = client.info(section)
    except (redis.exceptions.NoPermissionError, redis.ResponseError) as exc:
        found.add("durability-unknown", "info", f"INFO {section} is not allowed ({exc})")
        return None
    return info


def _trimmed(client: Client, stream: str, archive: Archive | None, found: Findings) -> None:
    try:
        info = stream_info(client, stream)
    except AuditKitError:
        return
    if info.entries_added is None:
        return  # Redis 6.2: nothing counts removed entries
    removed = info.entries_added - info.length
    archived = archive is not None and stream in archive.streams()
    if removed > 0 and not archived:
        holder = (
            "the archive given does not hold"
            if archive is not None
            else "no archive was given that holds"
        )
        found.add(
            "trimmed-not-archived",
            "warning",
            f"{removed:,} entries were removed from `{stream}` (trimmed or deleted: "
            f"entries-added minus length) and {holder} them: give the archive that does, "
            "or archive before trimming (docs/archive.md)",
            stream=stream,
        )
