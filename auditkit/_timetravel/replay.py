"""Replaying an ordered events table through handlers: the `Event` mapping and the fold.

Columns become Python lists only when a handler first reads them, and a payload dict is
built only when a handler reads `event["payload"]`, so a replay costs about a microsecond
per event with plain Python handlers.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from auditkit._exceptions import HandlerFailed, MissingUpcaster, UnknownEventType
from auditkit._load.decode import PAYLOAD_PREFIX
from auditkit._load.sources import ORDER_COLUMN

__all__ = [
    "WILDCARD",
    "Batch",
    "Event",
    "Handler",
    "Payload",
    "Upcaster",
    "fold",
    "initial_factory",
    "value_of",
]

Handler = Callable[[Any, "Event"], Any]
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
WILDCARD = "*"
"""The event type that stands for every type: a handler for it handles types without their own."""


class Batch:
    """An ordered events table, read column by column on demand."""

    def __init__(self, table: pa.Table, upcasters: Mapping[tuple[str, int], Upcaster]) -> None:
        self.table = table
        self.size = table.num_rows
        self.upcasters = upcasters
        self._lists: dict[str, list[Any]] = {}
        names = table.column_names
        self.keys = tuple(
            n
            for n in names
            if not n.startswith(PAYLOAD_PREFIX)
            and n not in ("payload", "payload_error", ORDER_COLUMN)
        )
        self._payload_columns = [n for n in names if n.startswith(PAYLOAD_PREFIX)]
        self._raw = "payload" in names
        self._trees: dict[Any, dict[str, Any]] | None = None
        self._errors: frozenset[int] | None = None

    def column(self, name: str) -> list[Any]:
        values = self._lists.get(name)
        if values is None:
            if name not in self.table.column_names:
                values = [None] * self.size
            else:
                values = self.table.column(name).to_pylist()
            self._lists[name] = values
        return values

    def codes(self, name: str) -> tuple[list[int], list[Any]]:
        """A column as integer codes and the values they stand for (null is the last code)."""
        if self.size == 0 or name not in self.table.column_names:
            return [0] * self.size, [None]
        encoded = pc.dictionary_encode(self.table.column(name).combine_chunks())
        values = encoded.dictionary.to_pylist()
        codes = pc.fill_null(encoded.indices, len(values)).to_pylist()
        return codes, [*values, None]

    def payload(self, index: int, event_type: Any) -> Mapping[str, Any]:
        """The decoded payload of one event, read-only.

        From its JSON text when the table kept it (`keep_payload`: exact types, nulls kept);
        else a lazy view of its non-null `payload.*` values, nested again, which converts
        only the fields a handler reads.
        """
        if self._errors is None:
            self._errors = self._error_rows()
        if index in self._errors:
            error = self.table.column("payload_error")[index].as_py()
            raise ValueError(f"the event's payload cannot be used: {error}")
        if self._raw:
            text = self.column("payload")[index]
            return MappingProxyType(json.loads(text) if text is not None else {})
        if self._trees is None:
            self._trees = self._payload_trees()
        return Payload(self, index, self._trees.get(event_type, {}))

    def _error_rows(self) -> frozenset[int]:
        if "payload_error" not in self.table.column_names:
            return frozenset()
        errors = self.table.column("payload_error")
        if errors.null_count == len(errors):
            return frozenset()
        return frozenset(pc.indices_nonzero(pc.is_valid(errors)).to_pylist())

    def _payload_trees(self) -> dict[Any, dict[str, Any]]:
        # One grouped pass: which payload columns hold values for which event type, so a
        # payload looks only at the handful of columns its type uses, not at all of them.
        if not self._payload_columns or self.size == 0:
            return {}
        counts = self.table.group_by("event_type").aggregate(
            [(name, "count") for name in self._payload_columns]
        )
        trees: dict[Any, dict[str, Any]] = {}
        for row in counts.to_pylist():
            tree: dict[str, Any] = {}
            for name in self._payload_columns:
                if not row[f"{name}_count"]:
                    continue
                *parents, leaf = name[len(PAYLOAD_PREFIX) :].split(".")
                node = tree
                for part in parents:
                    child = node.get(part)
                    if not isinstance(child, dict):
                        child = node[part] = {}
                    node = child
                node[leaf] = name
            trees[row["event_type"]] = tree
        return trees


class Payload(Mapping[str, Any]):
    """A read-only view of one event's payload over the table's `payload.*` columns.

    A key whose value is null (or absent) in this event is not in the mapping; nested
    objects are views too. `to_dict()` makes a plain, mutable copy.
    """

    __slots__ = ("_batch", "_index", "_tree")

    def __init__(self, batch: Batch, index: int, tree: dict[str, Any]) -> None:
        self._batch = batch
        self._index = index
        self._tree = tree

    def __getitem__(self, key: str) -> Any:
        node = self._tree[key]
        if isinstance(node, str):
            value = self._batch.column(node)[self._index]
            if value is None:
                raise KeyError(key)
            return value
        child = Payload(self._batch, self._index, node)
        if not any(True for _ in child):
            raise KeyError(key)
        return child

    def __iter__(self) -> Iterator[str]:
        for key in self._tree:
            try:
                self[key]
            except KeyError:
                continue
            yield key

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return repr(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        return {k: v.to_dict() if isinstance(v, Payload) else v for k, v in self.items()}


class Event(Mapping[str, Any]):
    """One event as a handler sees it: a read-only mapping.

    Keys: `stream`, `id`, `ts`, `seq`, `event_type`, `aggregate_id`, `schema_version`
    (after upcasting), `occurred_at`, the stream's other fields, and `payload`, the
    decoded payload (after upcasting) as a read-only dict.
    """

    __slots__ = ("_batch", "_index", "_payload", "_type", "_version")

    def __init__(self, batch: Batch, index: int, event_type: Any) -> None:
        self._batch = batch
        self._index = index
        self._type = event_type
        self._payload: Mapping[str, Any] | None = None
        self._version: Any = _UNSET

    def __getitem__(self, key: str) -> Any:
        if key == "payload":
            payload = self._payload
            if payload is None:
                if self._batch.upcasters:
                    self._upcast()
                    payload = self._payload
                else:
                    payload = self._payload = self._batch.payload(self._index, self._type)
            return payload
        if key == "schema_version" and self._batch.upcasters:
            if self._version is _UNSET:
                self._upcast()
            return self._version
        if key == "event_type":
            return self._type
        if key not in self._batch.keys:
            raise KeyError(key)
        return self._batch.column(key)[self._index]

    def __iter__(self) -> Iterator[str]:
        yield from self._batch.keys
        yield "payload"

    def __len__(self) -> int:
        return len(self._batch.keys) + 1

    def __repr__(self) -> str:
        return f"<Event {self['event_type']} id={self['id']} aggregate_id={self['aggregate_id']}>"

    def _upcast(self) -> None:
        batch, index, event_type = self._batch, self._index, self._type
        version = batch.column("schema_version")[index]
        payload = batch.payload(index, event_type)
        upcast = batch.upcasters.get((event_type, version)) if batch.upcasters else None
        if upcast is not None:
            # Upcasters get (and return) a plain dict of their own to reshape.
            current = payload.to_dict() if isinstance(payload, Payload) else dict(payload)
            while upcast is not None:
                current = upcast(current)
                if not isinstance(current, dict):
                    raise TypeError(
                        f"the upcaster for ({event_type!r}, {version}) returned "
                        f"{type(current).__name__}, not a dict"
                    )
                version += 1
                upcast = batch.upcasters.get((event_type, version))
            payload = MappingProxyType(current)
        self._version = version
        self._payload = payload


_UNSET = object()


def initial_factory(initial: Any) -> Callable[[], Any]:
    """A function returning a fresh initial state: `initial()` if callable, else a deep copy."""
    if callable(initial):
        return initial  # type: ignore[no-any-return]
    if isinstance(initial, dict) and all(isinstance(v, _IMMUTABLE) for v in initial.values()):
        return initial.copy  # a flat dict of scalars: a shallow copy is a full one, 20x faster
    return lambda: copy.deepcopy(initial)


_IMMUTABLE = (int, float, str, bytes, bool, type(None), tuple, frozenset)


def check_events(
    batch: Batch,
    handlers: Mapping[str, Handler],
    upcasters: Mapping[tuple[str, int], Upcaster],
    *,
    unknown: str,
) -> None:
    """Refuse, before any handler runs, unknown types (when asked) and unreachable versions."""
    table = batch.table
    if table.num_rows == 0:
        return
    pairs = table.group_by(["event_type", "schema_version"]).aggregate([("id", "min")])
    for row in pairs.to_pylist():
        event_type, version, first = row["event_type"], row["schema_version"], row["id_min"]
        if unknown == "raise" and event_type not in handlers and WILDCARD not in handlers:
            raise UnknownEventType(
                f"No handler for event type `{event_type}` (first at `{first}`). Add one to "
                "`handlers`, or pass unknown='ignore' to skip such events.",
                event_type=event_type,
                event_id=first,
            )
        target = _current_version(upcasters, event_type)
        if target is None or not isinstance(version, int):
            continue
        step = version
        while step < target and (event_type, step) in upcasters:
            step += 1
        if step < target:
            raise MissingUpcaster(
                f"Events `{event_type}` v{version} occur (first at `{first}`), but no upcaster "
                f"takes ({event_type!r}, {step}) towards v{target}. Add one to `upcasters`.",
                event_type=event_type,
                version=step,
                event_id=first,
            )


def _current_version(upcasters: Mapping[tuple[str, int], Upcaster], event_type: Any) -> int | None:
    versions = [v for (t, v) in upcasters if t == event_type]
    return max(versions) + 1 if versions else None


def fold(
    batch: Batch,
    handlers: Mapping[str, Handler],
    new_state: Callable[[], Any],
    *,
    states: dict[Any, Any] | None = None,
    on_applied: Callable[[Any, int, Any], None] | None = None,
) -> tuple[dict[Any, Any], dict[Any, int], dict[Any, int]]:
    """Apply every event in order; returns (state, index of the last event, count) per aggregate.

    `states` holds states to start from (a snapshot); `on_applied(aggregate, index, state)`
    sees each new state (history).
    """
    # Integer codes for types and aggregates: the loop then indexes lists and hashes small
    # ints instead of hashing a fresh string per event.
    type_codes, type_names = batch.codes("event_type")
    aggregate_codes, aggregate_names = batch.codes("aggregate_id")
    wildcard = handlers.get(WILDCARD)
    by_code = [
        handlers.get(name, wildcard) if name is not None else wildcard for name in type_names
    ]
    position = {name: code for code, name in enumerate(aggregate_names)}
    carried = dict(states or {})
    coded: dict[int, Any] = {position[k]: carried.pop(k) for k in list(carried) if k in position}
    last_coded: dict[int, int] = {}
    applied_coded: dict[int, int] = {}
    missing = _UNSET
    for index in range(batch.size):
        type_code = type_codes[index]
        handler = by_code[type_code]
        if handler is None:
            continue
        aggregate = aggregate_codes[index]
        state = coded.get(aggregate, missing)
        if state is missing:
            state = new_state()
        event = Event(batch, index, type_names[type_code])
        try:
            state = handler(state, event)
        except Exception as exc:
            event_id = batch.column("id")[index]
            raise HandlerFailed(
                f"The handler for `{type_names[type_code]}` failed on event `{event_id}` of "
                f"aggregate `{aggregate_names[aggregate]}`: {type(exc).__name__}: {exc}",
                event_id=event_id,
                event_type=type_names[type_code],
            ) from exc
        coded[aggregate] = state
        last_coded[aggregate] = index
        applied_coded[aggregate] = applied_coded.get(aggregate, 0) + 1
        if on_applied is not None:
            on_applied(aggregate_names[aggregate], index, state)
    states = carried
    states.update((aggregate_names[code], state) for code, state in coded.items())
    last = {aggregate_names[code]: index for code, index in last_coded.items()}
    applied = {aggregate_names[code]: count for code, count in applied_coded.items()}
    return states, last, applied


def value_of(event: Event, column: str) -> Any:
    """The value of a frame column in an event: `payload.a.b` walks the payload."""
    if column.startswith("payload."):
        node: Any = event["payload"]
        for part in column[len("payload.") :].split("."):
            if not isinstance(node, Mapping):
                return None
            node = node.get(part)
        return node
    return event.get(column)
