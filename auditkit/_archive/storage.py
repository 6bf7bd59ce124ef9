"""Where an archive's files live: a local folder, or object storage through `pyarrow.fs`.

Both give the archive the same guarantees with different means:

- A finished file appears complete or not at all. Local: written under a hidden temporary
  name, fsynced, renamed, folder fsynced. Object storage has no rename; a PUT is atomic per
  object, so the file is written once, to its final key, and then read back and its SHA-256
  compared with the bytes meant to be written before the manifest lists it.
- Small bookkeeping files (manifest, checkpoint) are replaced atomically: rename locally, a
  single PUT on object storage.
- One writer per stream. Local: `flock`, released by the kernel even on SIGKILL. Object
  storage: a lease object with a holder, a random token and an expiry, renewed while held,
  read back after writing it so that of two racing writers only one goes on. A crashed
  holder's lease expires after `LEASE_SECONDS`.
- Fencing. A lease that expired while its holder was paused (SIGSTOP, a VM frozen, a long
  GC) cannot stop the holder from going on once it resumes: object storage has no
  conditional write that pyarrow can send. So every lease carries an *epoch*, one more than
  any epoch the archive has seen, and the archive never relies on the lease alone: a
  writer's files and manifest versions carry its epoch in their names, readers take the
  manifest of the highest epoch, and a writer removes only files of lower epochs (see
  layout.py). A holder that finds its lease taken stops at its next step (`Lease.check`).

Paths inside the archive are relative POSIX paths (`_manifest/orders.jsonl`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from auditkit._exceptions import ArchiveBusy, ArchiveError, ArchiveFenced
from auditkit._files import atomic_write
from auditkit._logging import logger
from auditkit._redis.ids import utc_now

__all__ = ["LEASE_SECONDS", "Lease", "LocalStorage", "ObjectStorage", "Storage", "open_storage"]

_log = logger(__name__)

LEASE_SECONDS = 120.0
"""How long an object-storage lease lasts without renewal (renewed every third of it)."""
_SETTLE_SECONDS = 0.5
"""Between writing a lease object and reading it back: a rival writing in that window wins."""
_BLOCK = 1 << 20


@dataclass
class Lease:
    """A held lease: its epoch, and whether it was lost (taken by a newer writer)."""

    stream: str
    epoch: int
    lost: threading.Event = field(default_factory=threading.Event, repr=False)

    def check(self) -> None:
        """Raise ArchiveFenced when a newer writer took the lease."""
        if self.lost.is_set():
            raise ArchiveFenced(
                f"The archive lease of `{self.stream}` (epoch {self.epoch}) expired while this "
                "process was paused and another writer took it; this process stopped without "
                "writing more. Nothing of the newer writer's work was touched. Run the job "
                "again when the other writer is done.",
                stream=self.stream,
            )


class Storage:
    """The operations the archive needs; `LocalStorage` and `ObjectStorage` implement them."""

    url: str
    """Where the archive is, for messages: no credentials, no query string."""
    filesystem: pafs.FileSystem

    def path(self, relative: str) -> str:
        """The path `filesystem` opens for `relative`."""
        raise NotImplementedError

    def read_bytes(self, relative: str) -> bytes | None:
        """The file's bytes, or None when it does not exist."""
        try:
            with self.filesystem.open_input_stream(self.path(relative)) as stream:
                data: bytes = stream.read()
                return data
        except FileNotFoundError:
            return None

    def read_json(self, relative: str) -> dict[str, Any] | None:
        data = self.read_bytes(relative)
        if data is None:
            return None
        try:
            value: dict[str, Any] = json.loads(data)
        except json.JSONDecodeError:
            return None
        return value

    def replace(self, relative: str, data: bytes | memoryview) -> None:
        """Write a small file so that readers see the old content or the new, never a mix."""
        raise NotImplementedError

    def publish(self, relative: str, data: bytes | memoryview, sha256: str) -> None:
        """Write a finished file under its final name, complete or not at all."""
        raise NotImplementedError

    def delete(self, relative: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.filesystem.delete_file(self.path(relative))

    def exists(self, relative: str) -> bool:
        info = self.filesystem.get_file_info(self.path(relative))
        return bool(info.type == pafs.FileType.File)

    def files(self, prefix: str) -> list[str]:
        """Relative paths of the files under the folder `prefix`, sorted."""
        raise NotImplementedError

    def sha256(self, relative: str) -> tuple[str, int]:
        """SHA-256 and size of a file, read in blocks."""
        digest = hashlib.sha256()
        size = 0
        with self.filesystem.open_input_stream(self.path(relative)) as stream:
            while block := stream.read(_BLOCK):
                digest.update(block)
                size += len(block)
        return digest.hexdigest(), size

    def read_table(self, relative: str, **options: Any) -> pa.Table:
        return pq.read_table(self.path(relative), filesystem=self.filesystem, **options)

    def lease(
        self, relative: str, *, stream: str, floor: int = 0
    ) -> contextlib.AbstractContextManager[Lease]:
        """Hold the single-writer lease of a stream, with an epoch above `floor` and above
        every epoch the lease had before."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"


class LocalStorage(Storage):
    """A folder on a local (or mounted) file system."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.url = str(self.root)
        self.filesystem = pafs.LocalFileSystem()

    def path(self, relative: str) -> str:
        return str(self.root / relative) if relative else str(self.root)

    def read_bytes(self, relative: str) -> bytes | None:
        try:
            return (self.root / relative).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def replace(self, relative: str, data: bytes | memoryview) -> None:
        atomic_write(self.root / relative, data)

    def publish(self, relative: str, data: bytes | memoryview, sha256: str) -> None:
        # The bytes were hashed in memory; what fsync reports written is what the manifest
        # lists. A dot name ending in .tmp: no `*.parquet` glob (DuckDB's too) sees it.
        self.replace(relative, data)

    def delete(self, relative: str) -> None:
        (self.root / relative).unlink(missing_ok=True)

    def exists(self, relative: str) -> bool:
        return (self.root / relative).is_file()

    def files(self, prefix: str) -> list[str]:
        folder = self.root / prefix
        if not folder.is_dir():
            return []
        return sorted(
            path.relative_to(self.root).as_posix() for path in folder.rglob("*") if path.is_file()
        )

    @contextlib.contextmanager
    def lease(self, relative: str, *, stream: str, floor: int = 0) -> Iterator[Lease]:
        """Hold the single-writer lease of a stream's archive (released even on SIGKILL).

        The lock file keeps the last epoch (`{"holder": ..., "epoch": n}`) after release.
        """
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                held = _lease_record(os.pread(descriptor, 4096, 0))
                raise ArchiveBusy(
                    f"Another process holds the archive lease of stream `{stream}` "
                    f"({held.get('holder', 'unknown')}). Wait for it to finish; a crashed "
                    "holder releases the lease by itself.",
                    stream=stream,
                ) from None
            held = _lease_record(os.pread(descriptor, 4096, 0))
            epoch = max(floor, _epoch(held)) + 1
            record = json.dumps({"holder": _holder(), "epoch": epoch}).encode()
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, record, 0)
            os.fsync(descriptor)
            yield Lease(stream, epoch)
        finally:
            os.close(descriptor)


class ObjectStorage(Storage):
    """A bucket and prefix on object storage (S3, GCS, Azure, ...) through `pyarrow.fs`."""

    def __init__(self, url: str, filesystem: Any = None) -> None:
        parts = urlsplit(url)
        if not parts.scheme or not parts.netloc:
            raise ValueError(
                f"`{_display(url)}` is not an object storage URL; use `s3://bucket/prefix` "
                "(or `gs://`, `abfs://`), or a local folder."
            )
        self.url = _display(url)
        if filesystem is None:
            try:
                filesystem, base = pafs.FileSystem.from_uri(url)
            except (pa.ArrowInvalid, OSError) as exc:
                raise ArchiveError(
                    f"Cannot open {self.url} ({_redacted(exc, url)}). Check the URL, or pass "
                    "filesystem= (a pyarrow.fs.S3FileSystem with endpoint_override for "
                    "S3-compatible servers, or an fsspec file system)."
                ) from None
        else:
            filesystem = _arrow_filesystem(filesystem)
            base = f"{parts.netloc}{parts.path}"
        self.filesystem = filesystem
        self.base = base.rstrip("/")

    def path(self, relative: str) -> str:
        return f"{self.base}/{relative}" if relative else self.base

    def files(self, prefix: str) -> list[str]:
        selector = pafs.FileSelector(self.path(prefix), recursive=True, allow_not_found=True)
        base = self.base.lstrip("/")  # some file systems answer with a leading slash
        found = []
        for info in self.filesystem.get_file_info(selector):
            if info.type == pafs.FileType.File:
                found.append(info.path.lstrip("/").removeprefix(base).lstrip("/"))
        return sorted(found)

    def replace(self, relative: str, data: bytes | memoryview) -> None:
        # One PUT: the object is replaced whole when the upload completes, never partly.
        with self.filesystem.open_output_stream(self.path(relative), metadata={}) as out:
            out.write(data)

    def publish(self, relative: str, data: bytes | memoryview, sha256: str) -> None:
        self.replace(relative, data)
        digest, size = self.sha256(relative)
        if digest != sha256 or size != len(data):
            self.delete(relative)
            raise ArchiveError(
                f"{self.url}/{relative} read back with SHA-256 {digest[:16]}… and {size:,} "
                f"bytes, not the {sha256[:16]}… and {len(data):,} bytes written; it was "
                "removed and nothing was listed. Run the export again; if it recurs, check "
                "the storage service."
            )

    @contextlib.contextmanager
    def lease(self, relative: str, *, stream: str, floor: int = 0) -> Iterator[Lease]:
        token = uuid.uuid4().hex
        lease = self._take(relative, stream, token, floor)
        stop = threading.Event()
        renewer = threading.Thread(
            target=self._renew,
            args=(relative, lease, token, stop),
            name="auditkit-lease",
            daemon=True,
        )
        renewer.start()
        try:
            yield lease
        finally:
            stop.set()
            renewer.join()
            current = self.read_json(relative)
            if current is not None and current.get("token") == token:
                # Released, not removed: the epoch stays for the next holder to exceed.
                self._write_lease(relative, token, lease.epoch, expires=0.0)

    def _take(self, relative: str, stream: str, token: str, floor: int) -> Lease:
        held = self.read_json(relative)
        expires = held.get("expires", 0) if held is not None else 0
        if held is not None and held.get("token") != token and float(expires) > time.time():
            raise self._busy(stream, held)
        epoch = max(floor, _epoch(held or {})) + 1
        self._write_lease(relative, token, epoch)
        time.sleep(_SETTLE_SECONDS)
        held = self.read_json(relative)
        if held is None or held.get("token") != token:
            raise self._busy(stream, held or {})
        return Lease(stream, epoch)

    def _renew(self, relative: str, lease: Lease, token: str, stop: threading.Event) -> None:
        while not stop.wait(LEASE_SECONDS / 3):
            try:
                held = self.read_json(relative)
                if held is None or held.get("token") != token:
                    # Paused past the expiry, and another writer took the lease: never write
                    # over its lease; the work in progress stops at its next check.
                    _log.warning(
                        "the archive lease of %s was taken by %s; stopping",
                        lease.stream,
                        (held or {}).get("holder", "another writer"),
                    )
                    lease.lost.set()
                    return
                self._write_lease(relative, token, lease.epoch)
            except OSError as exc:  # the next renewal tries again, well before expiry
                _log.warning("renewing the archive lease of %s failed: %s", lease.stream, exc)

    def _write_lease(
        self, relative: str, token: str, epoch: int, expires: float | None = None
    ) -> None:
        lease = {
            "holder": _holder(),
            "token": token,
            "epoch": epoch,
            "expires": time.time() + LEASE_SECONDS if expires is None else expires,
        }
        self.replace(relative, json.dumps(lease).encode())

    def _busy(self, stream: str, held: dict[str, Any]) -> ArchiveBusy:
        until = time.strftime("%H:%M:%SZ", time.gmtime(held.get("expires", time.time())))
        return ArchiveBusy(
            f"Another process holds the archive lease of stream `{stream}` in {self.url} "
            f"({held.get('holder', 'unknown')}, until {until} unless renewed). Wait for it "
            f"to finish; a crashed holder's lease expires within {LEASE_SECONDS:.0f} s.",
            stream=stream,
        )


def open_storage(root: str | os.PathLike[str], filesystem: Any = None) -> Storage:
    """LocalStorage for a path, ObjectStorage for a URL with a scheme (`s3://...`)."""
    text = os.fspath(root)
    scheme = urlsplit(text).scheme
    if scheme in ("", "file") or len(scheme) == 1:  # `C:\...` parses as scheme `c`
        if filesystem is not None:
            raise ValueError(
                "filesystem= goes with an object storage URL such as `s3://bucket/prefix`; "
                f"`{text}` is a local path."
            )
        return LocalStorage(text.removeprefix("file://"))
    return ObjectStorage(text, filesystem)


def _arrow_filesystem(filesystem: Any) -> pafs.FileSystem:
    if isinstance(filesystem, pafs.FileSystem):
        return filesystem
    if hasattr(filesystem, "open") and hasattr(filesystem, "ls"):  # an fsspec file system
        return pafs.PyFileSystem(pafs.FSSpecHandler(filesystem))
    raise TypeError(
        f"filesystem= takes a pyarrow.fs.FileSystem or an fsspec file system, got "
        f"{type(filesystem).__name__}."
    )


def _display(url: str) -> str:
    """The URL without user info (credentials) and query string (may hold secrets)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}".rstrip("/")


def _redacted(exc: BaseException, url: str) -> str:
    text = str(exc)
    parts = urlsplit(url)
    for secret in (parts.netloc.rpartition("@")[0], parts.query, parts.password or ""):
        if secret:
            text = text.replace(secret, "***")
    return text


def _lease_record(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data.decode(errors="replace") or "{}")
    except ValueError:
        return {"holder": data.decode(errors="replace").strip()}
    return value if isinstance(value, dict) else {}


def _epoch(held: dict[str, Any]) -> int:
    value = held.get("epoch", 0)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _holder() -> str:
    return f"pid {os.getpid()} on {socket.gethostname()} since {utc_now()}"
