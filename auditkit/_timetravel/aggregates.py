"""One aggregate among the events: its id as they hold it, and the error when it has none.

Ids are text, or bytes where a producer wrote an id that is not UTF-8: the loader then
keeps the whole `aggregate_id` column binary, so every id in it is bytes. An id asked for
as text or as bytes matches either way: `"acct-7"` finds the aggregate loaded as
`b"acct-7"`, and `b"acct-7"` the one loaded as text.

An aggregate with no event at all is most often a misspelled id: saying so, with the
nearest ids the events do hold, beats answering with an initial state that looks real.
An aggregate whose first event comes after the moment asked about did exist, later: that
answer is its initial state, and no error.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from auditkit._exceptions import AggregateNotFound, AuditKitError
from auditkit._load.envelope import Envelope
from auditkit._load.sources import AGGREGATE_PLACEHOLDER, Clock, open_source
from auditkit._redis.bounds import Bound, end_id
from auditkit._redis.streams import scan_streams
from auditkit._types import EventSource

__all__ = [
    "ABSENT",
    "aggregate_key",
    "conform_keys",
    "find_state",
    "missing_aggregate",
    "uniform_keys",
]

ABSENT: Any = object()
"""What `find_state` returns for an aggregate the states do not hold."""
CLOSE_MATCHES = 3
_CUTOFF = 0.6
_SCORE_ALL = 50_000
"""Up to this many ids each is scored; beyond, only the neighbours of the id asked for."""
_NEIGHBOURS = 500


def aggregate_key(value: Any, events: EventSource | None = None) -> Any:
    """The id to look for: UTF-8 bytes as text (it matches text and binary columns alike)."""
    if isinstance(value, (bytearray, memoryview)):
        value = bytes(value)
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            if events is not None and _template(events) is not None:
                raise TypeError(
                    f"The aggregate id `{value!r}` is not UTF-8, so it cannot name a stream "
                    f"of `{_template(events)}`. Read the streams as a table (read_arrow) and "
                    "pass that instead."
                ) from None
            return value
    return value


def find_state(states: Mapping[Any, Any], key: Any) -> Any:
    """The state of `key` (as text or as its UTF-8 bytes), or ABSENT."""
    for spelling in _spellings(key):
        if spelling in states:
            return states[spelling]
    return ABSENT


def conform_keys(mapping: Mapping[Any, Any], table: pa.Table) -> dict[Any, Any]:
    """`mapping` keyed like the table's ids: bytes where its column is binary, else text.

    A snapshot made while every id was text still applies once a non-UTF-8 id made the
    column binary, and the other way round.
    """
    if "aggregate_id" not in table.column_names:
        return dict(mapping)
    kind = table.schema.field("aggregate_id").type
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return {k.encode() if isinstance(k, str) else k: v for k, v in mapping.items()}
    return {aggregate_key(k): v for k, v in mapping.items()}


def uniform_keys(mapping: dict[Any, Any]) -> dict[Any, Any]:
    """Every id as bytes when any is bytes, else `mapping` as it is."""
    if not any(isinstance(k, bytes) for k in mapping):
        return mapping
    return {k.encode() if isinstance(k, str) else k: v for k, v in mapping.items()}


def missing_aggregate(
    events: EventSource,
    key: Any,
    *,
    at: Bound,
    clock: Clock,
    envelope: Envelope | None,
    searched: bool = True,
) -> AggregateNotFound | None:
    """Why `key` has no event up to `at`: None if it has others, else the error to raise.

    `searched` says every event up to `at` was looked at (not only those after a
    snapshot). Only called when no event of the aggregate was found, so what it reads
    (the events after `at`, then the ids the source holds) costs nothing on the usual path.
    """
    source = open_source(events, envelope=envelope)
    if at is not None or not searched:
        # Record time: only what comes after the cut; effective time, or after a snapshot:
        # all of the aggregate's events.
        after = end_id(at) if clock == "record" and at is not None and searched else None
        if source.table(after=after, aggregate_id=key).num_rows:
            return None
    try:
        known = _known_ids(events, source)
        listed = True
    except AuditKitError:
        # Listing the ids is a courtesy: a user allowed to read one stream only still
        # deserves the error about the id, not one about permissions.
        known, listed = [], False
    close = _close_matches(key, known)
    shown = _shown(key)
    message = f"No event of aggregate `{shown}` in {_where(events)}, at any time. "
    if close:
        message += "The closest ids: " + ", ".join(f"`{_shown(c)}`" for c in close) + ". "
    elif listed and known:
        message += f"No id there is close to it ({_count(len(known), 'aggregate')}). "
    elif listed:
        message += "It holds no aggregate at all. "
    message += (
        "Check the id and the source, or pass missing='initial' to get the initial state "
        "of an aggregate without events."
    )
    return AggregateNotFound(message, aggregate_id=key, close_matches=close)


def _spellings(key: Any) -> tuple[Any, ...]:
    if isinstance(key, str):
        return (key, key.encode("utf-8", "surrogateescape"))
    return (key,)


def _known_ids(events: EventSource, source: Any) -> list[Any]:
    """Every aggregate id the source holds; for one stream per aggregate, from the keys."""
    template = _template(events)
    if template is not None and isinstance(events, tuple):
        head, _, tail = template.partition(AGGREGATE_PLACEHOLDER)
        keys = scan_streams(events[0], template.replace(AGGREGATE_PLACEHOLDER, "*"))
        return [k[len(head) : len(k) - len(tail)] for k in keys if len(k) > len(head) + len(tail)]
    table = source.table()
    if "aggregate_id" not in table.column_names:
        return []
    ids = pc.unique(table.column("aggregate_id")).to_pylist()
    return [i for i in ids if i is not None]


def _close_matches(key: Any, known: list[Any]) -> list[Any]:
    """The ids most like `key` (difflib's ratio of at least 0.6), best first, ties by id."""
    # Compared without case: `ACCT-7` for `acct-7` is among the likeliest slips.
    target = _shown(key).casefold()
    shown = [_shown(value) for value in known]
    folded = [text.casefold() for text in shown]
    candidates: Iterable[int] = range(len(known))
    if len(known) > _SCORE_ALL:
        candidates = _neighbours(target, folded)
    matcher = difflib.SequenceMatcher()
    matcher.set_seq2(target)
    scored = []
    for index in candidates:
        matcher.set_seq1(folded[index])
        # The cheap upper bounds first, as difflib.get_close_matches does.
        if matcher.real_quick_ratio() >= _CUTOFF and matcher.quick_ratio() >= _CUTOFF:
            ratio = matcher.ratio()
            if ratio >= _CUTOFF:
                scored.append((-ratio, shown[index], known[index]))
    return [value for _, _, value in sorted(scored, key=lambda s: s[:2])[:CLOSE_MATCHES]]


def _neighbours(target: str, folded: list[str]) -> set[int]:
    """The ids next to `target` in sorted order, and in the order of their reversed spelling.

    Scoring a million ids costs seconds; a slip at the end of an id leaves it next to the
    target in sorted order, a slip at its start next to it in reversed order.
    """
    values = pa.array(folded, pa.string())
    found: set[int] = set()
    for spelled, probe in ((values, target), (pc.utf8_reverse(values), target[::-1])):
        order = pc.sort_indices(spelled)
        position = pc.sum(pc.less(spelled, probe)).as_py() or 0
        low = max(position - _NEIGHBOURS, 0)
        found.update(order[low : position + _NEIGHBOURS].to_pylist())
    return found


def _shown(value: Any) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return repr(value)
    return str(value)


def _template(events: EventSource) -> str | None:
    if isinstance(events, tuple) and len(events) == 2 and isinstance(events[1], str):
        return events[1] if AGGREGATE_PLACEHOLDER in events[1] else None
    return None


def _where(events: EventSource) -> str:
    if isinstance(events, tuple) and len(events) == 2:
        stream = events[1]
        return f"`{stream}`" if isinstance(stream, str) else ", ".join(f"`{s}`" for s in stream)
    if isinstance(events, pa.Table):
        return f"the {_count(events.num_rows, 'event')} given"
    if isinstance(events, pd.DataFrame):
        return f"the {_count(len(events), 'event')} given"
    return "the archive"


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"
