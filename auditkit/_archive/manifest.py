"""The archive's bookkeeping: the hash-chained manifest, checkpoints, the lease, atomic files.

Per stream, under the archive root:

    _manifest/<stream>.jsonl   one entry per Parquet file, in ID order, each chained to the
                               previous entry's hash (written last, after the file)
    _state/<stream>.json       the checkpoint: the stream's counters at the last export
    _state/<stream>.verified.json   the horizon verify() proved, and the manifest it saw
    _lease/<stream>.lock       held by the one exporter or trimmer at work (flock; on
                               object storage a lease object, see storage.py)

How files appear complete and bookkeeping is replaced atomically, on a local folder and on
object storage, is in storage.py.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

from auditkit._archive.storage import Storage

__all__ = [
    "ManifestEntry",
    "chain_hash",
    "encode_key",
    "read_manifest",
    "write_manifest",
]

GENESIS = "0" * 64


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """One archived file: where it is, what it holds, and its place in the chain."""

    n: int
    file: str  # relative to the archive root, POSIX separators
    stream: str
    first_id: str
    last_id: str
    prev_last_id: str | None  # the entry before `first_id` in the stream when exported
    rows: int
    bytes: int
    sha256: str
    prev: str  # the previous entry's hash (GENESIS for the first)
    hash: str = ""
    # The envelope the file was decoded with (`Envelope.to_dict(full=True)`), in the
    # chain like the rest; absent in entries written before archives recorded it.
    envelope: dict[str, Any] | None = None

    def body(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("hash")
        if data["envelope"] is None:
            data.pop("envelope")  # so entries from before keep their hashes
        return data

    def sealed(self) -> ManifestEntry:
        """This entry with its hash filled in."""
        values = self.body()
        return ManifestEntry(**values, hash=chain_hash(values))


def chain_hash(body: dict[str, Any]) -> str:
    """SHA-256 of an entry's canonical JSON (which includes the previous entry's hash)."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def encode_key(key: str) -> str:
    """A stream key as a path segment: `%`, `/`, `\\`, `=`, control characters and a leading
    dot percent-encoded; everything else (`:` included) kept readable."""
    out = []
    for i, char in enumerate(key):
        if char in "%/\\=" or ord(char) < 32 or (i == 0 and char == "."):
            out.append("".join(f"%{b:02X}" for b in char.encode()))
        else:
            out.append(char)
    return "".join(out) or "%00"


def read_manifest(storage: Storage, relative: str) -> list[dict[str, Any]]:
    """The manifest's entries as written (unchecked); [] when there is none."""
    data = storage.read_bytes(relative)
    if data is None:
        return []
    entries = []
    for number, line in enumerate(data.decode(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            entries.append({"_unreadable": number})
    return entries


def write_manifest(storage: Storage, relative: str, entries: list[ManifestEntry]) -> None:
    """Replace the manifest atomically with `entries`."""
    text = "".join(json.dumps(_line(e), sort_keys=True) + "\n" for e in entries)
    storage.replace(relative, text.encode())


def _line(entry: ManifestEntry) -> dict[str, Any]:
    data = asdict(entry)
    if data["envelope"] is None:
        data.pop("envelope")
    return data
