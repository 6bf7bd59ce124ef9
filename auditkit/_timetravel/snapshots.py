"""Projection snapshots: states at a cut, in Parquet, tied to the code that made them.

A snapshot is `<folder>/<fingerprint>/<cut ID>.parquet` with one row per aggregate (its
state as JSON, last event ID and time, events applied) and the cut and fingerprint in the
file's metadata. The fingerprint hashes the handlers', initial state's and upcasters' code,
so a snapshot made by other code is never used: stale snapshots are a known trap.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from auditkit._exceptions import ProjectionError
from auditkit._files import atomic_write
from auditkit._logging import logger
from auditkit._redis.ids import StreamID

__all__ = ["Snapshot", "fingerprint", "latest_snapshot", "write_snapshot"]

_log = logger(__name__)
_META_KEY = b"auditkit.snapshot"
_FORMAT = 1


@dataclass(frozen=True, slots=True)
class Snapshot:
    """States of every aggregate after the events up to `cut` (record clock)."""

    cut: StreamID
    states: dict[Any, Any]
    last_id: dict[Any, str]
    last_ts: dict[Any, Any]
    applied: dict[Any, int]


def fingerprint(
    initial: Any,
    handlers: Mapping[str, Callable[..., Any]],
    upcasters: Mapping[tuple[str, int], Callable[..., Any]],
) -> str:
    """A hash of what decides a projection's states: its code and its initial state."""
    digest = hashlib.sha256()
    digest.update(b"initial:" + _describe(initial))
    for name in sorted(handlers):
        digest.update(f"handler:{name}:".encode() + _describe(handlers[name]))
    for key in sorted(upcasters, key=repr):
        digest.update(f"upcaster:{key!r}:".encode() + _describe(upcasters[key]))
    return digest.hexdigest()


def write_snapshot(folder: str | os.PathLike[str], print_: str, snapshot: Snapshot) -> Path:
    """Write a snapshot atomically (temp file, fsync, rename); returns its path."""
    bad = _first_not_json_safe(snapshot.states)
    if bad is not None:
        raise ProjectionError(
            f"The state of aggregate `{bad}` does not survive a JSON round trip, so it cannot "
            "be snapshotted faithfully. Keep states to dicts, lists, str, int, float, bool "
            "and None, or replay without snapshots."
        )
    keys = list(snapshot.states)
    table = pa.table(
        {
            "aggregate_id": _ids(keys),
            "state": pa.array([json.dumps(snapshot.states[k]) for k in keys], pa.string()),
            "last_id": pa.array([snapshot.last_id[k] for k in keys], pa.string()),
            "last_ts": pa.array([snapshot.last_ts[k] for k in keys], pa.timestamp("ms", "UTC")),
            "events": pa.array([snapshot.applied[k] for k in keys], pa.int64()),
        }
    )
    meta = {"cut": str(snapshot.cut), "fingerprint": print_, "format": _FORMAT}
    table = table.replace_schema_metadata({_META_KEY: json.dumps(meta).encode()})
    target = Path(folder) / print_[:16] / f"{snapshot.cut}.parquet"
    buffer = pa.BufferOutputStream()
    pq.write_table(table, buffer, compression="zstd")
    atomic_write(target, buffer.getvalue().to_pybytes())
    return target


def latest_snapshot(
    folder: str | os.PathLike[str],
    print_: str,
    *,
    at: StreamID | None,
    aggregate_id: Any = None,
) -> Snapshot | None:
    """The newest snapshot made by this code with a cut at or before `at`, or None."""
    directory = Path(folder) / print_[:16]
    if not directory.is_dir():
        _note_stale(folder, print_)
        return None
    cuts = []
    for path in directory.glob("*.parquet"):
        with contextlib.suppress(Exception):
            cuts.append((StreamID.parse(path.stem), path))
    for cut, path in sorted(cuts, reverse=True):
        if at is not None and cut > at:
            continue
        meta = json.loads(pq.read_schema(path).metadata[_META_KEY])
        if meta.get("fingerprint") != print_ or meta.get("format") != _FORMAT:
            continue
        table = pq.read_table(path)
        if aggregate_id is not None:
            # Text and bytes ids match each other (ids that are not UTF-8 are kept as bytes).
            table = table.filter(pc.equal(table.column("aggregate_id"), aggregate_id))
        rows = table.to_pylist()
        return Snapshot(
            cut=cut,
            states={r["aggregate_id"]: json.loads(r["state"]) for r in rows},
            last_id={r["aggregate_id"]: r["last_id"] for r in rows},
            last_ts={r["aggregate_id"]: r["last_ts"] for r in rows},
            applied={r["aggregate_id"]: r["events"] for r in rows},
        )
    return None


def _ids(keys: list[Any]) -> pa.Array:
    """The aggregate ids as text, or as bytes when any is bytes (an id that is not UTF-8)."""
    if any(isinstance(k, bytes) for k in keys):
        return pa.array([k.encode() if isinstance(k, str) else k for k in keys], pa.binary())
    return pa.array([None if k is None else str(k) for k in keys], pa.string())


def _note_stale(folder: str | os.PathLike[str], print_: str) -> None:
    root = Path(folder)
    if root.is_dir() and any(p.is_dir() for p in root.iterdir()):
        _log.info(
            "snapshots in %s were made by other projection code (fingerprint %s differs); "
            "replaying from the first event",
            root,
            print_[:16],
        )


def _describe(value: Any, seen: set[int] | None = None) -> bytes:
    seen = set() if seen is None else seen
    if id(value) in seen:
        return b"seen"
    seen.add(id(value))
    if isinstance(value, functools.partial):
        args = repr((value.args, value.keywords)).encode()
        return b"partial:" + _describe(value.func, seen) + args
    code = getattr(value, "__code__", None)
    if isinstance(code, types.CodeType):
        closure = b"".join(
            _describe(cell.cell_contents, seen)
            for cell in (getattr(value, "__closure__", None) or ())
        )
        defaults = repr(getattr(value, "__defaults__", None)).encode()
        return _code_bytes(code) + defaults + closure + _globals_used(value, code, seen)
    if isinstance(value, type) or callable(value):
        module = getattr(value, "__module__", "")
        return f"callable:{module}.{getattr(value, '__qualname__', repr(value))}".encode()
    return b"value:" + repr(value).encode()


def _globals_used(function: Any, code: types.CodeType, seen: set[int]) -> bytes:
    # A handler that calls a helper, or reads a module constant, depends on them too:
    # changing the helper or the constant must change the fingerprint.
    namespace = getattr(function, "__globals__", {})
    parts = []
    for name in sorted(_names(code)):
        if name not in namespace:
            continue
        value = namespace[name]
        if isinstance(value, types.FunctionType):
            parts.append(name.encode() + b"=" + _describe(value, seen))
        elif isinstance(value, (int, float, str, bytes, bool, tuple, frozenset)):
            parts.append(f"{name}={value!r}".encode())
    return b"|".join(parts)


def _names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


def _code_bytes(code: types.CodeType) -> bytes:
    # The bytecode, constants and names, not the file name or line numbers: moving a
    # function in its file keeps its snapshots; changing what it does drops them.
    parts = [code.co_code, repr(code.co_names).encode(), repr(code.co_varnames).encode()]
    for const in code.co_consts:
        parts.append(
            _code_bytes(const) if isinstance(const, types.CodeType) else repr(const).encode()
        )
    return b"|".join(parts)


def _first_not_json_safe(states: dict[Any, Any]) -> Any | None:
    for key, state in states.items():
        try:
            if json.loads(json.dumps(state)) != state:
                return key
        except (TypeError, ValueError):
            return key
    return None
