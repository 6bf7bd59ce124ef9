"""Time travel: the state of one aggregate, or of all of them, at any past moment."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from auditkit._display import card_html
from auditkit._exceptions import HandlerFailed
from auditkit._load.envelope import Envelope, EnvelopeSpec
from auditkit._load.sources import Clock, load_events
from auditkit._redis.bounds import Bound, end_id
from auditkit._redis.ids import StreamID
from auditkit._timetravel.aggregates import (
    ABSENT,
    aggregate_key,
    conform_keys,
    find_state,
    missing_aggregate,
    uniform_keys,
)
from auditkit._timetravel.declarative import (
    Spec,
    check_columns,
    handler_for,
    initial_for,
    states_vectorised,
)
from auditkit._timetravel.numeric import NotANumber
from auditkit._timetravel.replay import (
    WILDCARD,
    Batch,
    Handler,
    Upcaster,
    check_events,
    fold,
    initial_factory,
)
from auditkit._timetravel.snapshots import Snapshot, fingerprint, latest_snapshot, write_snapshot
from auditkit._timetravel.sums import check_sums, mismatch
from auditkit._types import EventSource

__all__ = ["Projection"]

META_COLUMNS = ("last_id", "last_ts", "events")
Missing = Literal["raise", "initial"]


class Projection:
    """Rebuilds aggregate state from events, as of any moment.

    Args:
        initial: the state before the first event: a value (copied for each aggregate) or a
            factory such as `dict`.
        handlers: event type -> `handler(state, event) -> new_state`, plain functions.
            The key `"*"` handles every type without a handler of its own.
        upcasters: `(event_type, from_version) -> upcast(payload) -> payload`, chained
            v1 -> v2 -> v3 during replay, so handlers see the current shape only.
        unknown: `"ignore"` (default) skips events without a handler; `"raise"` refuses
            them, naming the type and the first event ID.
        envelope: how to read `(client, stream)` sources.

    Example:
        >>> def deposited(state, event):
        ...     return {**state, "balance": state["balance"] + event["payload"]["amount"]}
        >>> acct = Projection(initial={"balance": 0.0}, handlers={"Deposited": deposited})
        >>> acct.state_at(events, "acct-7", at="2026-03-01T12:00Z")
        {'balance': 125.5}
    """

    def __init__(
        self,
        initial: Any,
        handlers: Mapping[str, Handler],
        *,
        upcasters: Mapping[tuple[str, int], Upcaster] | None = None,
        unknown: Literal["ignore", "raise"] = "ignore",
        envelope: EnvelopeSpec = None,
    ) -> None:
        if not isinstance(handlers, Mapping) or not handlers:
            raise TypeError("handlers must be a non-empty mapping of event type -> function.")
        for name, handler in handlers.items():
            if not callable(handler):
                raise TypeError(
                    f"The handler for `{name}` is {type(handler).__name__}, not a function."
                )
        if unknown not in ("ignore", "raise"):
            raise ValueError(f"unknown must be `ignore` or `raise`, got `{unknown}`.")
        for key, upcast in (upcasters or {}).items():
            if (
                not isinstance(key, tuple)
                or len(key) != 2
                or not isinstance(key[1], int)
                or not callable(upcast)
            ):
                raise TypeError(
                    f"upcasters maps (event_type, from_version) to a function; got key `{key!r}`."
                )
        self.initial = initial
        self.handlers = dict(handlers)
        self.upcasters = dict(upcasters or {})
        self.unknown = unknown
        # Checked now, before any read: a bad preset or file fails at construction.
        self.envelope = Envelope.of(envelope) if envelope is not None else None
        self._new_state = initial_factory(initial)
        self._spec: Spec | None = None
        self.fingerprint = fingerprint(initial, self.handlers, self.upcasters)

    @classmethod
    def declarative(
        cls,
        *,
        last: Mapping[str, str] | None = None,
        count: Mapping[str, str | Sequence[str]] | None = None,
        sum: Mapping[str, Mapping[str, str]] | None = None,
        upcasters: Mapping[tuple[str, int], Upcaster] | None = None,
        envelope: EnvelopeSpec = None,
    ) -> Projection:
        """A projection described, not coded: last values, counts and sums per aggregate.

        Its `states_at` runs vectorised in DuckDB (millions of events in a second or two);
        `state_at`, `history`, `diff` and snapshots run the equivalent Python handler.

        A sum adds numbers, and text that spells a number exactly (`"12.50"`, as a field
        loaded as text because its type changed between versions holds); ints beside
        floats are added as floats when exact. Other values raise `FieldTypeMismatch`,
        naming each kind of value and the event types and versions where it occurs.

        Args:
            last: state field -> column: the last non-null value, e.g.
                `{"owner": "payload.owner"}`.
            count: state field -> an event type, a list of them, or `"*"` for all.
            sum: state field -> {event type: column}; a column written `"-payload.amount"`
                is subtracted, e.g. `{"balance": {"Deposited": "payload.amount",
                "Withdrawn": "-payload.amount"}}`.
            upcasters: as for `Projection`: payloads of old versions reshaped before they
                are read. Upcasters are Python, so `states_at` then replays in Python too.
            envelope: how to read `(client, stream)` sources.

        Example:
            >>> accounts = Projection.declarative(
            ...     last={"owner": "payload.owner"},
            ...     count={"deposits": "Deposited"},
            ...     sum={"balance": {"Deposited": "payload.amount",
            ...                      "Withdrawn": "-payload.amount"}},
            ... )
        """
        spec = Spec(last, count, sum)
        projection = cls(
            initial_for(spec),
            {WILDCARD: handler_for(spec)},
            upcasters=upcasters,
            envelope=envelope,
        )
        projection._spec = spec
        return projection

    def __repr__(self) -> str:
        types = ", ".join(sorted(self.handlers))
        return f"<Projection handlers=[{types}] upcasters={len(self.upcasters)}>"

    def _repr_html_(self) -> str:
        handlers = [
            (str(event_type), getattr(handler, "__qualname__", type(handler).__name__))
            for event_type, handler in sorted(self.handlers.items(), key=lambda kv: str(kv[0]))
        ]
        upcasters = [
            (f"upcaster {event_type} v{version}", getattr(f, "__qualname__", type(f).__name__))
            for (event_type, version), f in sorted(self.upcasters.items(), key=str)
        ]
        facts = [*handlers, *upcasters, ("unknown event types", self.unknown)]
        if self.envelope is not None:
            facts.append(("envelope", repr(self.envelope)))
        return card_html("Projection", facts=facts)

    def state_at(
        self,
        events: EventSource,
        aggregate_id: str | bytes,
        at: Bound = None,
        *,
        clock: Clock = "record",
        snapshots: str | os.PathLike[str] | None = None,
        missing: Missing = "raise",
    ) -> Any:
        """The state of one aggregate after every event up to `at` (inclusive).

        Args:
            events: a table or DataFrame from `read_arrow`/`read_pandas`, an Archive, or
                `(client, stream)` with a `redis.Redis` or a `RedisCluster`; `stream` may
                be `"account:{aggregate_id}"` for one stream per aggregate, and then only
                that stream is read.
            aggregate_id: the aggregate, as text or bytes (ids that are not UTF-8 load as
                bytes; `"acct-7"` and `b"acct-7"` find the same aggregate).
            at: a stream ID (an exact cut), a time, or a period (`"2026-03"`: up to its
                last instant); None for now. Record time unless `clock="effective"`.
            clock: `"record"` (what the system knew then, stream ID order) or
                `"effective"` (what had happened by then, `occurred_at` order).
            snapshots: a folder of snapshots (`snapshot()`): replay starts from the newest
                one made by this code at or before `at` (record clock only).
            missing: `"raise"` (default) refuses an aggregate with no event at all;
                `"initial"` answers the initial state for it instead.

        Returns:
            The state. An aggregate whose events all come after `at` existed later: its
            state at `at` is the initial state.

        Raises:
            AggregateNotFound: the events hold no event of `aggregate_id` at any time
                (unless `missing="initial"`); the message names the closest ids.
        """
        _check_missing(missing)
        key = aggregate_key(aggregate_id, events)
        start = self._snapshot(snapshots, at, clock, key)
        table = load_events(
            events,
            at=at,
            after=start.cut if start else None,
            clock=clock,
            aggregate_id=key,
            envelope=self.envelope,
        )
        batch = self._batch(table)
        states = conform_keys(start.states, table) if start else {}
        states = self._fold(batch, states=states)[0]
        state = find_state(states, key)
        if state is not ABSENT:
            return state
        if not table.num_rows and missing == "raise":
            error = missing_aggregate(
                events, key, at=at, clock=clock, envelope=self.envelope, searched=start is None
            )
            if error is not None:
                raise error
        return self._new_state()

    def states_at(
        self,
        events: EventSource,
        at: Bound = None,
        *,
        clock: Clock = "record",
        snapshots: str | os.PathLike[str] | None = None,
    ) -> pd.DataFrame:
        """Every aggregate's state after the events up to `at`: one row per aggregate.

        Dict states become columns (one per key); other states sit in a `state` column.
        `last_id` and `last_ts` name the last event applied, `events` counts them. The
        frame's `attrs` record the clock and the cut. Events without an aggregate id
        (queue-wide events, say) belong to no aggregate and are left out; when no event
        has one, a ValueError says so (the envelope's aggregate_id is then wrong).
        """
        start = self._snapshot(snapshots, at, clock, None)
        table = load_events(
            events, at=at, after=start.cut if start else None, clock=clock, envelope=self.envelope
        )
        if table.num_rows and "aggregate_id" in table.column_names:
            ids = table.column("aggregate_id")
            if ids.null_count:
                if ids.null_count == table.num_rows:
                    raise ValueError(
                        f"None of the {table.num_rows:,} events has an aggregate id, so there "
                        "is no aggregate to give a state of. Name where the id is with the "
                        "envelope's aggregate_id (ak.inspect proposes one)."
                    )
                table = table.filter(pc.is_valid(ids))
        if self._spec is not None and start is None and not self.upcasters:
            check_columns(self._spec, table)
            frame = states_vectorised(self._spec, table)
            engine = "duckdb"
        else:
            frame = _frame(*self._fold_all(table, start))
            engine = "python"
        frame.attrs.update(clock=clock, at=None if at is None else str(at), engine=engine)
        return frame

    def history(
        self,
        events: EventSource,
        aggregate_id: str | bytes,
        *,
        at: Bound = None,
        clock: Clock = "record",
        missing: Missing = "raise",
    ) -> pd.DataFrame:
        """The state of one aggregate after each of its events, one row per event.

        Columns: `id`, `ts`, `occurred_at`, `event_type`, then the state (dict keys as
        columns, else `state`). With `at`, only the events up to it (as in `state_at`):
        none, for an aggregate whose events all come later.

        Raises:
            AggregateNotFound: the events hold no event of `aggregate_id` at any time;
                with `missing="initial"` the history is empty instead.
        """
        _check_missing(missing)
        key = aggregate_key(aggregate_id, events)
        table = load_events(events, at=at, clock=clock, aggregate_id=key, envelope=self.envelope)
        if not table.num_rows and missing == "raise":
            error = missing_aggregate(events, key, at=at, clock=clock, envelope=self.envelope)
            if error is not None:
                raise error
        batch = self._batch(table)
        rows: list[dict[str, Any]] = []
        ids, ts = batch.column("id"), batch.column("ts")
        occurred, types = batch.column("occurred_at"), batch.column("event_type")

        def record(aggregate: Any, index: int, state: Any) -> None:
            # A copy: handlers that change state in place would rewrite earlier rows.
            row = {
                "id": ids[index],
                "ts": ts[index],
                "occurred_at": occurred[index],
                "event_type": types[index],
            }
            row.update(_state_columns(copy.deepcopy(state)))
            rows.append(row)

        self._fold(batch, on_applied=record)
        frame = pd.DataFrame(
            rows, columns=None if rows else ["id", "ts", "occurred_at", "event_type"]
        )
        frame.attrs.update(clock=clock, aggregate_id=aggregate_id)
        return frame

    def diff(
        self, events: EventSource, before: Bound, after: Bound, *, clock: Clock = "record"
    ) -> pd.DataFrame:
        """What changed between two moments: one row per aggregate and changed field.

        Columns: `aggregate_id`, `field` (a dict key, or None for a whole non-dict state),
        `before`, `after` (None where the aggregate or field did not exist yet).
        """
        first = self._states(events, before, clock)
        second = self._states(events, after, clock)
        rows = []
        for aggregate in sorted(set(first) | set(second), key=lambda a: (a is None, str(a))):
            old, new = first.get(aggregate, ABSENT), second.get(aggregate, ABSENT)
            if isinstance(old, Mapping) or isinstance(new, Mapping):
                old_map = old if isinstance(old, Mapping) else {}
                new_map = new if isinstance(new, Mapping) else {}
                for field in sorted(set(old_map) | set(new_map), key=str):
                    a, b = old_map.get(field), new_map.get(field)
                    if a != b:
                        rows.append(
                            {"aggregate_id": aggregate, "field": field, "before": a, "after": b}
                        )
            elif old != new:
                rows.append(
                    {
                        "aggregate_id": aggregate,
                        "field": None,
                        "before": None if old is ABSENT else old,
                        "after": None if new is ABSENT else new,
                    }
                )
        columns = ["aggregate_id", "field", "before", "after"]
        # object columns: a value that did not exist yet stays None, not NaN
        frame = pd.DataFrame(
            {c: pd.Series([row[c] for row in rows], dtype=object) for c in columns}
        )
        frame.attrs.update(clock=clock, before=str(before), after=str(after))
        return frame

    def snapshot(
        self, events: EventSource, at: Bound = None, *, path: str | os.PathLike[str]
    ) -> os.PathLike[str]:
        """Store every aggregate's state at `at` (record clock) under `path`; returns the file.

        Later `state_at`/`states_at(..., snapshots=path)` start from the newest snapshot at
        or before their `at` that this same code made, instead of the first event.
        """
        table = load_events(events, at=at, envelope=self.envelope)
        states, last_id, last_ts, applied = self._fold_all(table, None)
        # The cut is the last event replayed, not `at`: an `at` beyond the stream's end
        # could still receive events, which a later replay must not skip.
        last = table.column("id")[table.num_rows - 1].as_py() if table.num_rows else None
        cut = StreamID.parse(last) if last is not None else StreamID.MIN
        return write_snapshot(
            path, self.fingerprint, Snapshot(cut, states, last_id, last_ts, applied)
        )

    def _states(self, events: EventSource, at: Bound, clock: Clock) -> dict[Any, Any]:
        table = load_events(events, at=at, clock=clock, envelope=self.envelope)
        return self._fold_all(table, None)[0]

    def _fold_all(
        self, table: Any, start: Snapshot | None
    ) -> tuple[dict[Any, Any], dict[Any, str], dict[Any, Any], dict[Any, int]]:
        batch = self._batch(table)
        states = conform_keys(start.states, table) if start else {}
        states, last, applied = self._fold(batch, states=states)
        last_id = conform_keys(start.last_id, table) if start else {}
        last_ts = conform_keys(start.last_ts, table) if start else {}
        counts = conform_keys(start.applied, table) if start else {}
        # Only the last event of each aggregate: taking those rows beats converting columns.
        aggregates = list(last)
        rows = table.select(["id", "ts"]).take(pa.array([last[a] for a in aggregates], pa.int64()))
        for aggregate, event_id, ts in zip(
            aggregates, rows.column("id").to_pylist(), rows.column("ts").to_pylist(), strict=True
        ):
            last_id[aggregate] = event_id
            last_ts[aggregate] = ts
            counts[aggregate] = counts.get(aggregate, 0) + applied[aggregate]
        if start is None:
            return states, last_id, last_ts, counts
        # The events after a snapshot may all have text ids while the snapshot holds one
        # that is not UTF-8: then every id is bytes, as one read of all the events gives.
        return (
            uniform_keys(states),
            uniform_keys(last_id),
            uniform_keys(last_ts),
            uniform_keys(counts),
        )

    def _batch(self, table: pa.Table) -> Batch:
        """The events, checked before any handler runs: types, versions, and sums."""
        batch = Batch(table, self.upcasters)
        check_events(batch, self.handlers, self.upcasters, unknown=self.unknown)
        if self._spec is not None:
            check_columns(self._spec, table)
        if self._spec is not None and not self.upcasters:
            # The same vectorised rules as states_at's query: both paths refuse alike.
            check_sums(self._spec.sum, table)
        return batch

    def _fold(
        self,
        batch: Batch,
        *,
        states: dict[Any, Any] | None = None,
        on_applied: Callable[[Any, int, Any], None] | None = None,
    ) -> tuple[dict[Any, Any], dict[Any, int], dict[Any, int]]:
        try:
            return fold(batch, self.handlers, self._new_state, states=states, on_applied=on_applied)
        except HandlerFailed as exc:
            cause = exc.__cause__
            if self._spec is None or not isinstance(cause, NotANumber):
                raise
            # Only a value an upcaster made gets here (check_sums saw the others before
            # replay): describe every value of that sum, not just this one.
            raise mismatch(self._spec.sum, cause.field, batch) from exc

    def _snapshot(
        self,
        folder: str | os.PathLike[str] | None,
        at: Bound,
        clock: Clock,
        aggregate_id: Any,
    ) -> Snapshot | None:
        if folder is None:
            return None
        if clock != "record":
            raise ValueError(
                "Snapshots hold states at a stream ID cut (record time); replay with "
                "clock='effective' cannot start from them. Leave out `snapshots`."
            )
        return latest_snapshot(folder, self.fingerprint, at=end_id(at), aggregate_id=aggregate_id)


def _check_missing(missing: str) -> None:
    if missing not in ("raise", "initial"):
        raise ValueError(f"missing must be `raise` or `initial`, got `{missing}`.")


def _state_columns(state: Any) -> dict[str, Any]:
    if isinstance(state, Mapping):
        return {str(k) if k not in META_COLUMNS else f"state.{k}": v for k, v in state.items()}
    return {"state": state}


def _frame(
    states: dict[Any, Any],
    last_id: dict[Any, str],
    last_ts: dict[Any, Any],
    applied: dict[Any, int],
) -> pd.DataFrame:
    rows = []
    for aggregate, state in states.items():
        row: dict[str, Any] = {"aggregate_id": aggregate}
        row.update(_state_columns(state))
        row.update(
            last_id=last_id.get(aggregate),
            last_ts=last_ts.get(aggregate),
            events=applied.get(aggregate, 0),
        )
        rows.append(row)
    if not rows:
        return pd.DataFrame(columns=["aggregate_id", *META_COLUMNS])
    frame = pd.DataFrame(rows)
    ordered = [
        "aggregate_id",
        *(c for c in frame.columns if c not in ("aggregate_id", *META_COLUMNS)),
        *META_COLUMNS,
    ]
    frame = frame[ordered].sort_values("aggregate_id", kind="stable", na_position="last")
    frame["last_ts"] = pd.to_datetime(frame["last_ts"], utc=True)
    return frame.reset_index(drop=True)
