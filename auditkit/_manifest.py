"""The archive's bookkeeping: the hash-chained manifest, checkpoints, the lease, atomic files.

Per stream, under the archive root:

    _manifest/<stream>.jsonl   one entry per Parquet file, in ID order, each chained to the
                               previous entry's hash (written last, after the file)
    _state/<stream>.json       the checkpoint: the stream's counters at the last export
    _state/<stream>.verified.json   the horizon verify() proved, and the manifest it saw
    _lease/<stream>.lock       held (flock) by the one exporter or trimmer at work

A file appears only complete: written under a hidden temporary name that no `*.parquet`
glob matches, fsynced, renamed, and its folder fsynced.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from auditkit._exceptions import ArchiveBusy

__all__ = [
    "ManifestEntry",
    "atomic_write",
    "chain_hash",
    "encode_key",
    "fsync_directory",
    "lease",
    "read_json",
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

    def body(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("hash")
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


def read_manifest(path: Path) -> list[dict[str, Any]]:
    """The manifest's entries as written (unchecked); [] when there is none."""
    if not path.exists():
        return []
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            entries.append({"_unreadable": number})
    return entries


def write_manifest(path: Path, entries: list[ManifestEntry]) -> None:
    """Replace the manifest atomically with `entries`."""
    text = "".join(json.dumps(asdict(e), sort_keys=True) + "\n" for e in entries)
    atomic_write(path, text.encode())


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old content or the new, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    fsync_directory(path.parent)


def fsync_directory(path: Path) -> None:
    """Make a rename in `path` durable."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def lease(path: Path, *, stream: str) -> Iterator[None]:
    """Hold the single-writer lease of a stream's archive (released even on SIGKILL)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 256, 0).decode(errors="replace").strip() or "unknown"
            raise ArchiveBusy(
                f"Another process holds the archive lease of stream `{stream}` ({holder}). "
                "Wait for it to finish; a crashed holder releases the lease by itself.",
                stream=stream,
            ) from None
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        note = f"pid {os.getpid()} on {socket.gethostname()} since {since}"
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, note.encode(), 0)
        yield
    finally:
        os.close(descriptor)
