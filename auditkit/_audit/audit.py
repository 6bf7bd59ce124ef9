"""`ak.audit`: every check that applies to a stream, in one findings table."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import TYPE_CHECKING

import pandas as pd

from auditkit._audit.durability import check_durability
from auditkit._audit.groups import check_groups
from auditkit._audit.integrity import check_integrity
from auditkit._audit.readmodel import check_read_model
from auditkit._findings import FINDING_COLUMNS, sort_findings
from auditkit._load.envelope import EnvelopeSpec
from auditkit._load.sources import open_source
from auditkit._redis.connection import Client
from auditkit._redis.streams import resolve_streams
from auditkit._timetravel.replay import WILDCARD

if TYPE_CHECKING:
    from auditkit._archive.archive import Archive
    from auditkit._timetravel.projection import Projection

__all__ = ["audit"]


def audit(
    client: Client,
    stream: str,
    *,
    projection: Projection | None = None,
    read_model: pd.DataFrame | tuple[Client, str] | None = None,
    archive: Archive | None = None,
    envelope: EnvelopeSpec = None,
    version_field: str | None = None,
    idempotency_field: str | None = None,
    terminal_types: Iterable[str] = (),
    skew: timedelta = timedelta(minutes=5),
    poison_after: int = 5,
    stale_after: timedelta = timedelta(minutes=15),
    idle_after: timedelta = timedelta(hours=1),
) -> pd.DataFrame:
    """Audit a stream: integrity, consumer groups, durability, and what else is given.

    Args:
        client: the Redis holding the stream.
        stream: a key or a glob pattern; each stream is audited.
        projection: its handlers define the known event types; with `read_model`, the
            states it rebuilds are compared with the read model.
        read_model: a DataFrame indexed by aggregate id, or `(client, "key:{aggregate_id}")`
            for one Redis hash per aggregate.
        archive: an Archive: its verification joins the findings, and trimmed streams it
            holds are not reported as lost.
        version_field, idempotency_field, terminal_types, skew: see `check_integrity`.
        poison_after, stale_after, idle_after: see `check_groups`.

    Returns:
        One findings DataFrame (`check`, `severity`, `stream`, `id`, `aggregate_id`,
        `detail`), worst first. No row means no finding.

    Example:
        >>> findings = audit(r, "orders", terminal_types=["OrderClosed"])
        >>> findings[["check", "severity", "aggregate_id"]]
                          check severity aggregate_id
        0  event-after-terminal    error      order-1
        1        no-persistence    error         None
    """
    keys = resolve_streams(client, stream)
    known = None
    if projection is not None and WILDCARD not in projection.handlers:
        known = set(projection.handlers)
    parts = []
    for key in keys:
        events = open_source((client, key), envelope=envelope).table()
        integrity = check_integrity(
            events,
            version_field=version_field,
            idempotency_field=idempotency_field,
            terminal_types=terminal_types,
            known_types=known,
            skew=skew,
            envelope=envelope,
        )
        parts.append(integrity.assign(stream=integrity["stream"].fillna(key)))
        parts.append(
            check_groups(
                client,
                key,
                poison_after=poison_after,
                stale_after=stale_after,
                idle_after=idle_after,
                envelope=envelope,
            )
        )
        if projection is not None and read_model is not None:
            parts.append(check_read_model(projection, events, read_model, stream=key))
        if archive is not None and key in archive.streams():
            parts.append(archive.verify(client, key).findings)
    parts.append(check_durability(client, streams=keys, archive=archive))
    parts = [p for p in parts if not p.empty]
    if not parts:
        return pd.DataFrame(columns=FINDING_COLUMNS)
    return sort_findings(pd.concat(parts, ignore_index=True))
