"""The archive's chain of records: one per Parquet file, plus the loss ledger, hash-chained.

A stream's manifest is a JSON Lines file: a header line (`kind = "head"`: the writer's
epoch, the chain's size and head, and what the last export saw of the stream), then the
chain. Each record of the chain names its position `n`, its `kind` and the previous record's
hash, and its own `hash` covers all of that, so a record changed, inserted, removed or
reordered breaks the chain. Kinds:

- `file`: a Parquet file, its ID range, rows, size and SHA-256 (`ManifestEntry`);
- `loss`: entries that left the stream before they could be archived, with the range they
  lie in and their count (`LedgerRecord`);
- `acknowledged`: an operator's acknowledgement of a loss, with a reason;
- `rebuilt`: the chain was rebuilt from the files (`auditkit repair`), and why.

docs/archive-format.md specifies it for readers without auditkit.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "FORMAT",
    "GENESIS",
    "Chain",
    "ChainRecord",
    "Header",
    "LedgerRecord",
    "ManifestEntry",
    "append_record",
    "chain_hash",
    "encode_key",
    "parse_manifest",
    "render_manifest",
]

FORMAT = 2
GENESIS = "0" * 64


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """One archived file: where it is, what it holds, and its place in the chain."""

    n: int
    file: str  # relative to the archive root, POSIX separators
    stream: str
    first_id: str
    last_id: str
    prev_last_id: str | None  # the last ID archived before this file (None for the first)
    rows: int
    bytes: int
    sha256: str
    prev: str  # the previous record's hash (GENESIS for the first)
    hash: str = ""
    epoch: int = 0
    """The writer that published the file (see storage.py, leases)."""
    # The envelope the file was decoded with (`Envelope.to_dict(full=True)`).
    envelope: dict[str, Any] | None = None
    # The drop/pseudonymize rules applied (`Privacy.spec()`: rules and the key's
    # fingerprint, never the key); None when none were.
    privacy: dict[str, Any] | None = None
    kind: str = "file"

    def body(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("hash")
        return {k: v for k, v in data.items() if v is not None or k == "prev_last_id"}

    def sealed(self) -> ManifestEntry:
        """This entry with its hash filled in."""
        return dataclasses.replace(self, hash=chain_hash(self.body()))


@dataclass(frozen=True, slots=True)
class LedgerRecord:
    """A record of the chain that is not a file: a loss, its acknowledgement, a rebuild."""

    n: int
    kind: str  # "loss" | "acknowledged" | "rebuilt"
    stream: str
    detail: dict[str, Any]
    prev: str
    hash: str = ""
    epoch: int = 0

    def body(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("hash")
        return data

    def sealed(self) -> LedgerRecord:
        return dataclasses.replace(self, hash=chain_hash(self.body()))


ChainRecord = ManifestEntry | LedgerRecord


@dataclass(frozen=True, slots=True)
class Header:
    """The manifest's first line: who wrote this version, and what it saw of the stream."""

    stream: str
    epoch: int
    size: int  # records in the chain
    head: str  # the last record's hash (GENESIS when the chain is empty)
    written_at: str
    state: dict[str, Any] = field(default_factory=dict)
    """What the last export saw: `entries_added`, `last_generated_id`,
    `max_deleted_entry_id`, `horizon`, `exported_at` (counters are None on Redis < 7)."""
    format: int = FORMAT
    kind: str = "head"


@dataclass
class Chain:
    """A manifest as read: its header, records, and what could not be read."""

    header: Header | None
    records: list[ChainRecord]
    unreadable: list[int] = field(default_factory=list)  # 1-based line numbers

    @property
    def files(self) -> list[ManifestEntry]:
        return [r for r in self.records if isinstance(r, ManifestEntry)]

    @property
    def ledger(self) -> list[LedgerRecord]:
        return [r for r in self.records if isinstance(r, LedgerRecord)]

    @property
    def head(self) -> str:
        return self.records[-1].hash if self.records else GENESIS

    def broken_at(self) -> ChainRecord | None:
        """The first record whose hash or link is wrong, or None when the chain is whole."""
        previous = GENESIS
        for position, record in enumerate(self.records):
            if record.n != position or record.prev != previous or record.sealed() != record:
                return record
            previous = record.hash
        return None


def append_record(
    records: list[ChainRecord], kind: str, stream: str, detail: dict[str, Any], epoch: int
) -> LedgerRecord:
    """A ledger record chained after `records`."""
    return LedgerRecord(
        n=len(records),
        kind=kind,
        stream=stream,
        detail=detail,
        prev=records[-1].hash if records else GENESIS,
        epoch=epoch,
    ).sealed()


def chain_hash(body: dict[str, Any]) -> str:
    """SHA-256 of a record's canonical JSON (which includes the previous record's hash)."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


_KEEP = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-.:@+,")
_MAX_SEGMENT = 120
_SUFFIX = 17  # "~" and 16 hex digits


def encode_key(key: str) -> str:
    """A stream key as a path segment that is safe everywhere it goes.

    Lowercase letters, digits and `_-.:@+,` stay readable; every other byte (glob and SQL
    metacharacters such as `*?[]{}'"`, `/`, `%`, `=`, `~`, spaces, control characters, a
    leading or trailing dot, and bytes that are not UTF-8, carried in `key` as surrogate
    escapes) is percent-encoded as `%XX`. Uppercase letters stay readable too, but a key
    that has one, a key whose encoding is longer than 120 characters, and the empty key
    end with `~` and 16 hex digits of the key's SHA-256 (after a readable prefix of its
    encoding, cut to fit 120). So any key fits a file name, and two keys that differ only
    in case (`Orders`, `orders`) never share a folder on a file system that ignores case
    (macOS, Windows): percent-encoding uppercase letters would make the same guarantee at
    the cost of names such as `%4Frder%43reated`.

    Names are distinct for distinct keys: a name without `~` is the percent-encoding of
    its key, which it gives back; a name with `~` is told apart by the hash.
    """
    raw = key.encode("utf-8", "surrogateescape")
    last = len(raw) - 1
    parts = []
    hashed = not raw
    for i, byte in enumerate(raw):
        char = chr(byte)
        if char in _KEEP and not (char == "." and i in (0, last)):
            parts.append(char)
        elif "A" <= char <= "Z":
            parts.append(char)
            hashed = True
        else:
            parts.append(f"%{byte:02X}")
    encoded = "".join(parts)
    if not hashed and len(encoded) <= _MAX_SEGMENT:
        return encoded
    prefix, length = [], 0
    for part in parts:
        if length + len(part) > _MAX_SEGMENT - _SUFFIX:
            break
        prefix.append(part)
        length += len(part)
    return "".join(prefix) + "~" + hashlib.sha256(raw).hexdigest()[:16]


def parse_manifest(data: bytes) -> Chain:
    """A manifest's bytes as a Chain (unchecked: see `Chain.broken_at`)."""
    header: Header | None = None
    records: list[ChainRecord] = []
    unreadable: list[int] = []
    for number, line in enumerate(data.decode(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
            kind = value.get("kind")
            if kind == "head" and number == 1:
                header = Header(**value)
            elif kind == "file":
                records.append(ManifestEntry(**value))
            elif kind in ("loss", "acknowledged", "rebuilt"):
                records.append(LedgerRecord(**value))
            else:
                unreadable.append(number)
        except (ValueError, TypeError, AttributeError):
            unreadable.append(number)
    return Chain(header, records, unreadable)


def render_manifest(header: Header, records: list[ChainRecord]) -> bytes:
    """A manifest's bytes: the header line, then one line per record."""
    lines = [json.dumps(asdict(header), sort_keys=True)]
    for record in records:
        data = record.body()
        data["hash"] = record.hash
        lines.append(json.dumps(data, sort_keys=True))
    return ("\n".join(lines) + "\n").encode()
