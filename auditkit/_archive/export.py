"""Export: a stream's new entries into the archive, one complete Parquet file at a time.

A file holds consecutive entries of one UTC day, at most `rows_per_file` of them, decoded
from its own raw entries in one piece: its name and its bytes follow from where it starts,
so a rerun after a crash writes the same file again. Order of work per file: the Parquet
bytes and their SHA-256 in memory, the file published complete (see storage.py), then the
manifest entry; the checkpoint comes last.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from auditkit._archive.identity import identity_problem, stream_info
from auditkit._archive.manifest import GENESIS, ManifestEntry, encode_key, write_manifest
from auditkit._exceptions import StreamRecreated
from auditkit._load.decode import extract, finish, prepare
from auditkit._load.reader import _no_cyclic_gc
from auditkit._logging import logger
from auditkit._progress import progress_bar
from auditkit._redis.connection import Client
from auditkit._redis.ids import StreamID
from auditkit._redis.pages import iter_pages
from auditkit._redis.streams import ensure_stream, stream_length

if TYPE_CHECKING:
    from auditkit._archive.archive import Archive

__all__ = ["ExportReport", "export_stream"]

_log = logger(__name__)


@dataclass(frozen=True, slots=True)
class ExportReport:
    """What one export wrote."""

    stream: str
    files: int
    rows: int
    horizon: str | None  # the last archived ID after this export

    def __repr__(self) -> str:
        return (
            f"<ExportReport {self.stream}: {self.rows:,} rows in {self.files} files, "
            f"horizon {self.horizon}>"
        )


_DAY_MS = 86_400_000
_INDEXED = frozenset(
    ("stream", "id", "ts", "seq", "event_type", "aggregate_id", "schema_version", "occurred_at")
)


def export_stream(
    archive: Archive, client: Client, stream: str, *, progress: bool | None = None
) -> ExportReport:
    """`Archive.export`: the entries after the last archived one, up to the current end."""
    ensure_stream(client, stream)
    storage = archive.storage
    with storage.lease(archive._lease_path(stream), stream=stream), _no_cyclic_gc():
        _remove_unlisted(archive, stream)
        entries = archive.entries(stream)
        horizon = StreamID.parse(entries[-1].last_id) if entries else None
        info = stream_info(client, stream)
        if horizon is not None:
            _check_identity(archive, client, stream, info, horizon)
        end = StreamID.parse(info["last-generated-id"])
        written = rows = 0
        if horizon is None or horizon < end:
            start = horizon.next() if horizon is not None else None
            for entry in _write_files(archive, client, stream, start, end, entries, progress):
                entries.append(entry)
                write_manifest(storage, archive._manifest_path(stream), entries)
                written += 1
                rows += entry.rows
        _write_checkpoint(archive, stream, info, entries)
    last = entries[-1].last_id if entries else None
    return ExportReport(stream, written, rows, last)


def _write_files(
    archive: Archive,
    client: Client,
    stream: str,
    start: StreamID | None,
    end: StreamID,
    entries: list[ManifestEntry],
    progress: bool | None,
) -> Iterator[ManifestEntry]:
    # A file's content must follow from its entries alone (not from where pages happened
    # to start), so each file is decoded from its own raw entries in one piece. The
    # worker decodes and writes file k while this thread reads the pages of file k + 1.
    previous = entries[-1] if entries else None
    chunk: list[Any] = []
    day: int | None = None
    in_flight: deque[Future[tuple[str, str, int, str, str, int]]] = deque()
    total = stream_length(client, stream) if start is None else None
    with (
        ThreadPoolExecutor(max_workers=2, thread_name_prefix="auditkit-export") as pool,
        progress_bar(total=total, desc=f"export {stream}", enabled=progress) as bar,
    ):

        def publish() -> Iterator[ManifestEntry]:
            nonlocal previous
            while in_flight and (in_flight[0].done() or len(in_flight) > 1):
                previous = _entry(archive, stream, *in_flight.popleft().result(), previous)
                yield previous

        for page in iter_pages(client, stream, start=start, end=end):
            bar.update(len(page))
            for part_day, part in _split_page_by_day(page):
                while part:
                    if chunk and (part_day != day or len(chunk) >= archive.rows_per_file):
                        in_flight.append(pool.submit(_write_file, archive, stream, chunk, day))
                        chunk = []
                        yield from publish()
                    take = archive.rows_per_file - len(chunk)
                    chunk.extend(part[:take])
                    part = part[take:]
                    day = part_day
        if chunk:
            in_flight.append(pool.submit(_write_file, archive, stream, chunk, day))
        while in_flight:
            previous = _entry(archive, stream, *in_flight.popleft().result(), previous)
            yield previous


def _write_file(
    archive: Archive, stream: str, chunk: list[Any], day: int | None
) -> tuple[str, str, int, str, str, int]:
    """Decode a file's entries, encode them as Parquet in memory, publish the file."""
    first, last = chunk[0][0].decode(), chunk[-1][0].decode()
    if archive.privacy.active:
        # Before decoding: no original value may reach a column, the raw `fields`, or the
        # statistics Parquet keeps about them.
        chunk[:] = [[entry_id, archive.privacy.apply(flat)] for entry_id, flat in chunk]
    table = finish(prepare(extract(chunk, stream), archive.envelope, keep_fields=True))
    chunk.clear()  # the raw entries are the bulk of the memory: free them before writing
    date = time.strftime("%Y-%m-%d", time.gmtime((day or 0) * _DAY_MS / 1000))
    target = f"stream={encode_key(stream)}/date={date}/{first}_{last}.parquet"
    data = _parquet_bytes(table)
    rows = table.num_rows
    del table
    pa.default_memory_pool().release_unused()
    digest = hashlib.sha256(data).hexdigest()
    archive.storage.publish(target, data, digest)
    return target, digest, len(data), first, last, rows


def _entry(
    archive: Archive,
    stream: str,
    target: str,
    digest: str,
    size: int,
    first: str,
    last: str,
    rows: int,
    previous: ManifestEntry | None,
) -> ManifestEntry:
    return ManifestEntry(
        n=(previous.n + 1) if previous else 0,
        file=target,
        stream=stream,
        first_id=first,
        last_id=last,
        prev_last_id=previous.last_id if previous else None,
        rows=rows,
        bytes=size,
        sha256=digest,
        prev=previous.hash if previous else GENESIS,
    ).sealed()


def _check_identity(
    archive: Archive, client: Client, stream: str, info: dict[str, Any], horizon: StreamID
) -> None:
    problem = identity_problem(archive, client, stream, info, horizon)
    if problem is not None:
        raise StreamRecreated(
            f"Stream `{stream}` is not the stream archived in {archive.root}: {problem}. "
            "Nothing was exported. If it was recreated on purpose, archive it under a "
            "new archive root; run verify() for the details.",
            stream=stream,
        )


def _remove_unlisted(archive: Archive, stream: str) -> None:
    # Files a crashed export renamed but never listed, and temporary files: not part of
    # the archive. Removed under the lease, before the rerun writes them again.
    listed = {e.file for e in archive.entries(stream)}
    for relative in archive.storage.files(f"stream={encode_key(stream)}"):
        name = relative.rsplit("/", 1)[-1]
        if name.startswith(".") or (name.endswith(".parquet") and relative not in listed):
            _log.info("removing %s, left by an interrupted export", relative)
            archive.storage.delete(relative)


def _write_checkpoint(
    archive: Archive, stream: str, info: dict[str, Any], entries: list[ManifestEntry]
) -> None:
    state = {
        "stream": stream,
        "horizon": entries[-1].last_id if entries else None,
        "manifest_head": entries[-1].hash if entries else GENESIS,
        "entries_added": info.get("entries-added"),
        # Entries the stream ever had that the archive lacks, as of this export: what
        # was trimmed or deleted before it could be archived (Redis 7 counts it).
        "unarchived": (
            info["entries-added"] - sum(e.rows for e in entries)
            if isinstance(info.get("entries-added"), int)
            else None
        ),
        "last_generated_id": info.get("last-generated-id"),
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "privacy": archive.privacy.spec(),
    }
    archive.storage.replace(archive._state_path(stream), json.dumps(state, indent=1).encode())


def _split_page_by_day(page: list[Any]) -> Iterator[tuple[int, list[Any]]]:
    """A raw page cut where the UTC day of the entries' IDs changes (pages are in ID order)."""

    def day_of(entry: Any) -> int:
        return int(entry[0].split(b"-", 1)[0]) // _DAY_MS

    low = 0
    while low < len(page):
        day = day_of(page[low])
        if day_of(page[-1]) == day:
            yield day, page[low:]
            return
        high = bisect.bisect_left(page, day + 1, lo=low, key=day_of)
        yield day, page[low:high]
        low = high


def _parquet_bytes(table: pa.Table) -> memoryview:
    out = pa.BufferOutputStream()
    pq.write_table(
        table,
        out,
        compression="zstd",
        # Dictionaries and min/max statistics pay off for the columns people filter on,
        # not for the raw fields or free text, which only cost time to encode.
        use_dictionary=[c for c in table.column_names if c in _INDEXED],
        write_statistics=[c for c in table.column_names if c in _INDEXED],
    )
    return memoryview(out.getvalue())  # no copy
