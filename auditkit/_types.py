"""The aliases every room shares: a client, a range bound, a set of streams, a source of events."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol, TypeAlias, runtime_checkable

import pandas as pd
import pyarrow as pa

from auditkit._redis.bounds import Bound
from auditkit._redis.connection import Client

__all__ = ["ArchivedEvents", "Bound", "Client", "EventSource", "Streams"]

Streams: TypeAlias = str | Sequence[str]
"""A stream key, a glob pattern (`orders:*`, found with SCAN ... TYPE stream), or a list
of keys (taken literally)."""


@runtime_checkable
class ArchivedEvents(Protocol):
    """What a source of events needs of an archive; `auditkit.Archive` has it.

    A protocol rather than the class: loading sits below the archive and never imports it.
    """

    def events_table(
        self, *, stream: str | None = None, aggregate_id: str | None = None
    ) -> pa.Table: ...

    def iter_tables(
        self, *, stream: str | None = None, keep_payload: bool = False
    ) -> Iterator[pa.Table]: ...


EventSource: TypeAlias = (
    pa.Table | pd.DataFrame | ArchivedEvents | tuple[ArchivedEvents, str] | tuple[Client, Streams]
)
"""Anything that holds events: a table or DataFrame from `read_arrow`/`read_pandas`, an
Archive (every stream it holds), `(archive, stream)` for one of them, or `(client,
streams)`: `client` a `redis.Redis` or a `RedisCluster`, `streams` a key, a glob, a list of
keys, or a per-aggregate template such as `"account:{aggregate_id}"`."""
