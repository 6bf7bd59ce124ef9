"""`ak.audit`: every check that applies to a stream, in one findings table."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa

from auditkit._audit.durability import check_durability
from auditkit._audit.groups import LAG_WARNING, PENDING_COUNT, check_groups
from auditkit._audit.integrity import check_integrity
from auditkit._audit.readmodel import check_read_model
from auditkit._audit.selection import CHECKS, apply_baseline, choose, load_baseline
from auditkit._exceptions import ArchiveError
from auditkit._findings import Findings, sort_findings
from auditkit._load.envelope import EnvelopeSpec
from auditkit._load.sources import open_source
from auditkit._redis.connection import Client
from auditkit._redis.streams import resolve_streams
from auditkit._redis.text import shown
from auditkit._timetravel.replay import WILDCARD

if TYPE_CHECKING:
    from auditkit._archive.archive import Archive
    from auditkit._timetravel.projection import Projection

__all__ = ["audit", "stream_history"]


def audit(
    client: Client,
    stream: str | Sequence[str],
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
    select: str | Iterable[str] | None = None,
    ignore: str | Iterable[str] | None = None,
    thresholds: Mapping[str, Any] | None = None,
    baseline: str | os.PathLike[str] | Iterable[Mapping[str, Any]] | None = None,
) -> pd.DataFrame:
    """Audit a stream: integrity, consumer groups, durability, and what else is given.

    Args:
        client: the Redis holding the stream.
        stream: a key, a glob pattern, or a list of keys; each stream is audited, and the
            server's durability once.
        projection: its handlers define the known event types; with `read_model`, the
            states it rebuilds are compared with the read model.
        read_model: a DataFrame indexed by aggregate id, or `(client, "key:{aggregate_id}")`
            for one Redis hash per aggregate.
        archive: an Archive: the streams it holds are audited over their whole history
            (archived events, then live ones, read with the archive's envelope), its
            verification joins the findings, and trimmed streams it holds are not reported
            as lost. An archive holding none of the streams (one that does not exist, say)
            raises ArchiveError rather than be left out silently.
        version_field, idempotency_field, terminal_types, skew: see `check_integrity`.
        poison_after, stale_after, idle_after: see `check_groups`.
        select: the checks to run: names (`"poison-message"`), prefixes (`"pending"`) or
            families (`"integrity"`, `"groups"`, `"durability"`, `"read-model"`,
            `"archive"`); default all. An unknown name raises ValueError listing them.
        ignore: checks left out, named the same way.
        thresholds: limits by name, over the arguments above: `skew`, `stale_after`,
            `idle_after` (a timedelta, or milliseconds), `poison_after` (deliveries),
            `lag_warning` (entries not yet delivered before `group-lag` is a warning),
            `pending_count` (pending entries inspected per group).
        baseline: accepted findings: a TOML or JSON file (see `write_baseline`) or a list
            of dicts with `check`, `reason` and optionally `stream`, `id`, `aggregate_id`.
            Findings it matches get `accepted` True and the entry's `reason`; an entry
            matching nothing adds a `baseline-stale` finding (info).

    Returns:
        One findings DataFrame (`check`, `severity`, `stream`, `id`, `aggregate_id`,
        `detail`; with a baseline also `accepted` and `reason`), worst first. No row means
        no finding.

    Example:
        >>> findings = audit(r, "orders", terminal_types=["OrderClosed"])
        >>> findings[["check", "severity", "aggregate_id"]]
                          check severity aggregate_id
        0  event-after-terminal    error      order-1
        1        no-persistence    error         None
    """
    chosen = choose(select, ignore)  # arguments first: a wrong name fails before any I/O
    limits = _limits(
        thresholds,
        skew=skew,
        poison_after=poison_after,
        stale_after=stale_after,
        idle_after=idle_after,
    )
    accepted = load_baseline(baseline) if baseline is not None else None
    runs = {family: bool(chosen & set(names)) for family, names in CHECKS.items()}
    keys = resolve_streams(client, stream)
    # `archived`: the keys the archive holds or has files of; `chained`: those with a
    # manifest, whose events and envelope can be read (a lost manifest's files cannot).
    archived: set[str] = set()
    chained: set[str] = set()
    if archive is not None and (runs["archive"] or runs["durability"] or runs["integrity"]):
        archived, chained = _archived(archive, keys)
    known = None
    if projection is not None and WILDCARD not in projection.handlers:
        known = set(projection.handlers)
    parts = []
    models = runs["read-model"] and projection is not None and read_model is not None
    for key in keys:
        events = None
        if runs["integrity"] or models:
            # A stream the archive holds is audited over its whole history: the archived
            # events, then the live ones (an event after a terminal one archived is found).
            if archive is not None and key in chained:
                events = stream_history(archive, client, key)
            if events is None:
                events = open_source((client, key), envelope=envelope).table()
        if events is not None and runs["integrity"]:
            integrity = check_integrity(
                events,
                version_field=version_field,
                idempotency_field=idempotency_field,
                terminal_types=terminal_types,
                known_types=known,
                skew=limits["skew"],
                envelope=envelope,
            )
            parts.append(integrity.assign(stream=integrity["stream"].fillna(key)))
        if runs["groups"]:
            parts.append(
                check_groups(
                    client,
                    key,
                    poison_after=limits["poison_after"],
                    stale_after=limits["stale_after"],
                    idle_after=limits["idle_after"],
                    lag_warning=limits["lag_warning"],
                    pending_count=limits["pending_count"],
                    envelope=envelope,
                )
            )
        if events is not None and models:
            assert projection is not None and read_model is not None
            parts.append(check_read_model(projection, events, read_model, stream=key))
        if runs["archive"] and archive is not None and key in archived:
            parts.append(archive.verify(client, key).findings)
    if runs["durability"]:
        parts.append(check_durability(client, streams=keys, archive=archive))
    parts = [p for p in parts if not p.empty]
    found = pd.concat(parts, ignore_index=True) if parts else Findings().frame()
    found = found[found["check"].isin(chosen)]
    if accepted is not None:
        found = apply_baseline(found, accepted, ran=chosen)
    return sort_findings(found)


def stream_history(archive: Archive, client: Client, key: str) -> pa.Table | None:
    """The stream's archived events, then its live ones; None when a file cannot be read
    (the archive's verification, part of the audit, reports it as damage)."""
    try:
        return archive.events_table(stream=key, live=client)
    except (OSError, pa.ArrowInvalid, ArchiveError):
        return None


def _archived(archive: Archive, keys: list[str]) -> tuple[set[str], set[str]]:
    """The streams of `keys` the archive holds or has files of (a lost manifest, which
    verify reports), and those it holds with a manifest; raises ArchiveError when it holds
    none of them."""
    held = set(archive.streams())
    found = {k for k in keys if k in held or archive.layout.stream_files(k)}
    if not found:
        audited = ", ".join(f"`{shown(k)}`" for k in keys[:5]) + (", ..." if len(keys) > 5 else "")
        if held:
            holds = ", ".join(f"`{shown(k)}`" for k in sorted(held)[:5])
            why = f"holds none of the streams audited ({audited}); it holds {holds}"
        else:
            why = (
                "holds no stream (it does not exist, or nothing was exported to it), so it "
                f"cannot join the audit of {audited}"
            )
        raise ArchiveError(
            f"The archive `{archive.root}` {why}: pass the archive they were exported to, or "
            "audit without one.",
            stream=keys[0] if len(keys) == 1 else None,
        )
    return found, found & held


_DURATIONS = ("skew", "stale_after", "idle_after")
_COUNTS = ("poison_after", "lag_warning", "pending_count")


def _limits(thresholds: Mapping[str, Any] | None, **given: Any) -> dict[str, Any]:
    """The thresholds by name: the defaults, the keyword arguments, then `thresholds`."""
    limits = {"lag_warning": LAG_WARNING, "pending_count": PENDING_COUNT, **given}
    for name, value in (thresholds or {}).items():
        if name in _DURATIONS:
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
                value = timedelta(milliseconds=value)
            if not isinstance(value, timedelta):
                raise ValueError(
                    f"threshold `{name}` must be a timedelta or milliseconds, got `{value!r}`."
                )
        elif name in _COUNTS:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(
                    f"threshold `{name}` must be a non-negative integer, got `{value!r}`."
                )
        else:
            known = ", ".join((*_DURATIONS, *_COUNTS))
            raise ValueError(f"threshold `{name}` is unknown; the thresholds are {known}.")
        limits[name] = value
    return limits
