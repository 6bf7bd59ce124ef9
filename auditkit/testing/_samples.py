"""Samples: a stream's entries and consumer-group state in one file, and seeding them back.

A sample is JSON Lines: a header line, then one line per entry, per group and per pending
entry (docs/testing.md, "The sample format"). Bytes that are not UTF-8 (names or values) are
written `{"base64": "..."}`, so every entry round-trips byte-exact. A Parquet sample holds
the entries as columns `id` and `fields` (the archive's layout) and the rest of the state in
the file's metadata.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import redis
from redis.cluster import RedisCluster

import auditkit as ak
from auditkit._archive.privacy import Privacy
from auditkit._redis.streams import ensure_stream

__all__ = ["Sample", "from_file", "from_frame", "read_sample", "write_sample"]

FORMAT = "auditkit-sample/1"
_METADATA = b"auditkit.sample"
_PENDING_LIMIT = 10_000
"""Pending entries sampled per group (XPENDING's COUNT), the oldest."""


@dataclass
class Sample:
    """A stream's entries and consumer-group state, as `write_sample` cuts them.

    Attributes:
        stream: the sampled stream's key.
        entries: `(id, [name, value, name, value, ...])` in ID order, values as bytes.
        groups: one dict per group: `name`, `last_delivered_id`, `entries_read` (None where
            unknown), `consumers` (names), `idle_ms` (each consumer's idle time).
        pending: one dict per pending entry: `group`, `consumer`, `id`, `deliveries`,
            `idle_ms`. An ID with no entry is a message trimmed while pending.
        counters: the stream's `last_generated_id`, `entries_added`, `max_deleted_entry_id`
            (the last two Redis 7 only), relative to the entries sampled.
    """

    stream: str
    entries: list[tuple[str, list[bytes]]] = field(default_factory=list)
    groups: list[dict[str, Any]] = field(default_factory=list)
    pending: list[dict[str, Any]] = field(default_factory=list)
    counters: dict[str, Any] = field(default_factory=dict)
    privacy: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    """What the sample cannot reproduce (not written to the file): a group whose lag is
    longer than the entries it holds past the group's position."""

    def __repr__(self) -> str:
        return (
            f"<Sample {self.stream!r}: {len(self.entries)} entries, {len(self.groups)} "
            f"group(s), {len(self.pending)} pending>"
        )


def write_sample(
    client: redis.Redis | RedisCluster,
    stream: str,
    path: str | os.PathLike[str],
    *,
    count: int = 1_000,
    drop: Sequence[str] = (),
    pseudonymize: Sequence[str] = (),
    key: bytes | str | None = None,
    envelope: ak.Envelope | str | None = None,
) -> Sample:
    """Cut a sample from a live stream into a file: its last `count` entries, every pending
    entry's message, the consumer groups and the stream's counters.

    Args:
        client: the Redis holding the stream.
        stream: the stream's key.
        path: a `.jsonl` or `.parquet` file to write.
        count: how many of the latest entries to keep (pending messages come on top).
        drop, pseudonymize, key: privacy rules, as `ak.Archive` takes them: fields (or
            `payload.` paths) left out, or replaced by a keyed HMAC. The key is never written.
        envelope: where the payload is, for `payload.` paths (default: the default envelope).

    Returns:
        The Sample written.

    Example:
        >>> write_sample(r, "orders", "orders.jsonl", count=100)
        <Sample 'orders': 6 entries, 0 group(s), 0 pending>
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be a positive integer, got `{count!r}`.")
    target = Path(path)
    if target.suffix not in (".jsonl", ".parquet"):
        raise ValueError(f"path `{target}` must end in .jsonl or .parquet.")
    shape = ak.Envelope.of(envelope) if envelope is not None else ak.Envelope()
    privacy = Privacy.of(drop, pseudonymize, key, shape.payload, shape.decoder_name)
    sample = _cut(client, stream, count)
    if privacy.active:
        sample.entries = [(i, privacy.apply(flat)) for i, flat in sample.entries]
        sample.privacy = privacy.spec()
    if target.suffix == ".parquet":
        _write_parquet(sample, target)
    else:
        target.write_text("".join(json.dumps(line) + "\n" for line in _lines(sample)), "utf-8")
    return sample


def read_sample(path: str | os.PathLike[str]) -> Sample:
    """A sample file `write_sample` (or `auditkit sample`) wrote, JSON Lines or Parquet."""
    source = Path(path)
    if source.suffix == ".parquet":
        return _read_parquet(source)
    lines = [json.loads(line) for line in source.read_text("utf-8").splitlines() if line.strip()]
    if not lines or lines[0].get("format") != FORMAT:
        raise ValueError(
            f"`{source}` is not an auditkit sample (its first line is not a `{FORMAT}` "
            "header); make one with `auditkit sample STREAM --output FILE`."
        )
    return _from_lines(lines)


# ---- cutting a sample from Redis ----------------------------------------------------------


def _cut(client: redis.Redis | RedisCluster, stream: str, count: int) -> Sample:
    ensure_stream(client, stream)  # the message names the server and `auditkit streams`
    info = client.xinfo_stream(stream)
    latest = list(client.xrevrange(stream, count=count) or [])[::-1]
    entries = {_text(i): _flat(fields) for i, fields in latest}
    groups, pending = [], []
    for group in client.xinfo_groups(stream):
        name = group["name"]
        consumers = client.xinfo_consumers(stream, name)
        groups.append(
            {
                "name": _text(name),
                "last_delivered_id": _text(group["last-delivered-id"]),
                "entries_read": group.get("entries-read"),
                "consumers": [_text(c["name"]) for c in consumers],
                "idle_ms": {_text(c["name"]): int(c["idle"]) for c in consumers},
            }
        )
        held = client.xpending_range(stream, name, min="-", max="+", count=_PENDING_LIMIT)
        for entry in held:
            pending.append(
                {
                    "group": _text(name),
                    "consumer": _text(entry["consumer"]),
                    "id": _text(entry["message_id"]),
                    "deliveries": int(entry["times_delivered"]),
                    "idle_ms": int(entry["time_since_delivered"]),
                }
            )
    # A pending message older than the latest `count` comes too: without it the poison
    # or stale finding it causes could not be reproduced.
    for entry_id in sorted({p["id"] for p in pending} - set(entries), key=ak.StreamID.parse):
        found = client.xrange(stream, min=entry_id, max=entry_id, count=1)
        if found:
            entries[entry_id] = _flat(found[0][1])
    ordered = sorted(entries.items(), key=lambda item: ak.StreamID.parse(item[0]))
    # Entries left out count as removed for Redis 7's counters; shifting entries-added and
    # each group's entries-read by them keeps lag and "trimmed" findings as they were.
    left_out = int(info["length"]) - len(ordered)
    added = info.get("entries-added")
    notes = []
    for group in groups:
        read = group["entries_read"]
        group["entries_read"] = read - left_out if read is not None and read >= left_out else None
        if read is not None and read < left_out and added is not None and added > read:
            notes.append(
                f"group `{group['name']}` has {added - read:,} entries not yet delivered, more "
                f"than the {len(ordered):,} sampled hold: seeded, its lag counts only the "
                f"sampled entries after its position. A sample of at least "
                f"{int(info['length']) - read:,} entries keeps it."
            )
    counters = {
        "last_generated_id": _text(info["last-generated-id"]),
        "entries_added": added - left_out if added is not None else None,
        "max_deleted_entry_id": _text(info.get("max-deleted-entry-id")),
    }
    return Sample(_text(stream), ordered, groups, pending, counters, notes=notes)


def _flat(fields: Any) -> list[bytes]:
    if isinstance(fields, dict):
        return [_bytes(part) for pair in fields.items() for part in pair]
    return [_bytes(part) for part in fields]


def _bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def _text(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return value


# ---- the file formats ---------------------------------------------------------------------


def _encode(value: bytes | str) -> Any:
    """Text as it is; bytes that are not UTF-8 as `{"base64": ...}`."""
    raw = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(raw).decode("ascii")}


def _decode(value: Any) -> bytes:
    if isinstance(value, dict):
        return base64.b64decode(value["base64"])
    return str(value).encode("utf-8")


def _decode_text(value: Any) -> str:
    return _decode(value).decode("utf-8", "surrogateescape")


def _state_lines(sample: Sample) -> list[dict[str, Any]]:
    header = {
        "format": FORMAT,
        "stream": _encode(sample.stream),
        "entries": len(sample.entries),
        **sample.counters,
        "sampled_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "privacy": sample.privacy,
    }
    groups = [
        {
            "group": _encode(g["name"]),
            "last_delivered_id": g["last_delivered_id"],
            "entries_read": g["entries_read"],
            "consumers": [
                {"name": _encode(c), "idle_ms": g.get("idle_ms", {}).get(c)} for c in g["consumers"]
            ],
        }
        for g in sample.groups
    ]
    pending = [
        {
            "pending": p["id"],
            "group": _encode(p["group"]),
            "consumer": _encode(p["consumer"]),
            "deliveries": p["deliveries"],
            "idle_ms": p["idle_ms"],
        }
        for p in sample.pending
    ]
    return [header, *groups, *pending]


def _lines(sample: Sample) -> list[dict[str, Any]]:
    header, *state = _state_lines(sample)
    entries = [
        {
            "id": i,
            "fields": [[_encode(n), _encode(v)] for n, v in zip(f[::2], f[1::2], strict=True)],
        }
        for i, f in sample.entries
    ]
    return [header, *entries, *state]


def _from_lines(lines: list[dict[str, Any]]) -> Sample:
    header = lines[0]
    counters = {
        k: header.get(k) for k in ("last_generated_id", "entries_added", "max_deleted_entry_id")
    }
    sample = Sample(_decode_text(header["stream"]), counters=counters)
    sample.privacy = header.get("privacy")
    for line in lines[1:]:
        if "fields" in line:
            flat = [_decode(part) for pair in line["fields"] for part in pair]
            sample.entries.append((line["id"], flat))
        elif "group" in line and "pending" not in line:
            consumers = [(_decode_text(c["name"]), c.get("idle_ms")) for c in line["consumers"]]
            sample.groups.append(
                {
                    "name": _decode_text(line["group"]),
                    "last_delivered_id": line["last_delivered_id"],
                    "entries_read": line.get("entries_read"),
                    "consumers": [name for name, _ in consumers],
                    "idle_ms": {name: idle for name, idle in consumers if idle is not None},
                }
            )
        elif "pending" in line:
            sample.pending.append(
                {
                    "group": _decode_text(line["group"]),
                    "consumer": _decode_text(line["consumer"]),
                    "id": line["pending"],
                    "deliveries": int(line["deliveries"]),
                    "idle_ms": int(line["idle_ms"]),
                }
            )
    return sample


def _write_parquet(sample: Sample, target: Path) -> None:
    table = pa.table(
        {
            "id": pa.array([i for i, _ in sample.entries], pa.string()),
            "fields": pa.array([f for _, f in sample.entries], pa.list_(pa.binary())),
        }
    )
    state = json.dumps(_state_lines(sample)).encode()
    pq.write_table(table.replace_schema_metadata({_METADATA: state}), target)


def _read_parquet(source: Path) -> Sample:
    table = pq.read_table(source)
    metadata = table.schema.metadata or {}
    if not {"id", "fields"} <= set(table.column_names):
        # Any other Parquet file: a row per entry, as a DataFrame.
        return from_frame(source.stem, table.to_pandas())
    # A sample's file, or an archive's (the same `id` and `fields`, no group state).
    if _METADATA in metadata:
        sample = _from_lines(json.loads(metadata[_METADATA]))
    else:
        sample = Sample(source.stem)
    ids = table.column("id").to_pylist()
    sample.entries = list(zip(ids, table.column("fields").to_pylist(), strict=True))
    return sample


def from_file(source: Path) -> Sample:
    """A sample file, checked to be one first."""
    if not source.is_file():
        raise FileNotFoundError(f"No sample file `{source}`; check the path.")
    if source.suffix not in (".jsonl", ".parquet"):
        raise ValueError(f"`{source}` is not a sample: pass a .jsonl or .parquet file.")
    return read_sample(source)


def from_frame(stream: str, frame: pd.DataFrame) -> Sample:
    """A row per entry: an optional `id` column, the other columns the fields."""
    columns = [c for c in frame.columns if c != "id"]
    ids = frame["id"].astype(str).tolist() if "id" in frame.columns else ["*"] * len(frame)
    entries = []
    for entry_id, row in zip(ids, frame[columns].itertuples(index=False), strict=True):
        flat: list[bytes] = []
        for name, value in zip(columns, row, strict=True):
            if value is None or (isinstance(value, float) and pd.isna(value)):
                continue
            flat += [str(name).encode(), _field_value(value)]
        entries.append((entry_id, flat))
    return Sample(stream, entries)


def _field_value(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":")).encode()
    if hasattr(value, "isoformat"):
        return str(value.isoformat()).encode()
    return str(value).encode()
