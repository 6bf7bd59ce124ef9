"""Export: a stream's new entries into the archive, one complete Parquet file at a time.

A file holds consecutive entries of one UTC day, at most `rows_per_file` of them, decoded
from its own raw entries in one piece: its name and its bytes follow from where it starts,
so a rerun after a crash writes the same file again. Order of work per file: the Parquet
bytes and their SHA-256 in memory, the file published complete (see storage.py), then the
manifest entry; the export state comes last.
"""

from __future__ import annotations

import bisect
import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from auditkit._archive.identity import identity_problem
from auditkit._archive.layout import ArchiveLayout, ExportState
from auditkit._archive.manifest import GENESIS, ManifestEntry
from auditkit._archive.privacy import Privacy
from auditkit._exceptions import (
    ArchiveEnvelopeConflict,
    ArchiveError,
    InvalidStreamID,
    StreamRecreated,
)
from auditkit._load.decode import extract, finish, prepare
from auditkit._load.envelope import Envelope
from auditkit._load.match import SAMPLE
from auditkit._load.pipeline import no_cyclic_gc, pipelined
from auditkit._load.reader import stream_tables
from auditkit._logging import logger
from auditkit._progress import progress_bar
from auditkit._redis.connection import Client
from auditkit._redis.ids import StreamID, utc_now
from auditkit._redis.pages import iter_pages
from auditkit._redis.streams import ensure_stream, stream_length
from auditkit._redis.xinfo import StreamInfo, stream_info

__all__ = [
    "ExportReport",
    "export_stream",
    "recorded_envelope",
]

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
    layout: ArchiveLayout,
    client: Client,
    stream: str,
    *,
    envelope: Envelope | None,
    privacy: Privacy,
    rows_per_file: int,
    progress: bool | None = None,
) -> ExportReport:
    """`Archive.export`: the entries after the last archived one, up to the current end.

    With no envelope, the one the stream was archived with (the default for a new one).
    """
    ensure_stream(client, stream)
    paths = layout.paths(stream)
    with layout.storage.lease(paths.lease, stream=stream), no_cyclic_gc():
        # The manifest and the export state are read once, here, and handed on.
        entries, state = _sound_manifest(layout, stream)
        _remove_unlisted(layout, stream, entries)
        horizon = StreamID.parse(entries[-1].last_id) if entries else None
        info = stream_info(client, stream)
        if horizon is not None:
            problem = identity_problem(layout, privacy, client, info, entries, state, horizon)
            if problem is not None:
                raise StreamRecreated(
                    f"Stream `{stream}` is not the stream archived in {layout.storage.url}: "
                    f"{problem}. Nothing was exported. If it was recreated on purpose, archive "
                    "it under a new archive root; run verify() for the details.",
                    stream=stream,
                )
        end = info.last_generated_id
        written = rows = 0
        if envelope is None:
            envelope = recorded_envelope(entries) or Envelope()
            privacy = privacy.for_envelope(envelope.payload, envelope.decoder_name)
        recorded = envelope.to_dict(full=True)
        if horizon is None or horizon < end:
            start = horizon.next() if horizon is not None else None
            _check_envelope(layout, stream, entries, envelope, recorded)
            # The envelope must fit before a file is written: a sample of what comes next.
            for _ in stream_tables(client, stream, start=start, count=SAMPLE, envelope=envelope):
                pass
            chunks = _chunks(client, stream, start, end, rows_per_file, progress)
            write = _FileWriter(layout, stream, envelope, privacy)
            previous = entries[-1] if entries else None
            for file in pipelined(chunks, write, workers=2, in_flight=2, name="auditkit-export"):
                previous = file.entry(stream, previous, recorded)
                entries.append(previous)
                layout.write_manifest(stream, entries)
                written += 1
                rows += previous.rows
        layout.write_export_state(_export_state(stream, info, entries, privacy))
    last = entries[-1].last_id if entries else None
    return ExportReport(stream, written, rows, last)


def _chunks(
    client: Client,
    stream: str,
    start: StreamID | None,
    end: StreamID,
    rows_per_file: int,
    progress: bool | None,
) -> Iterator[tuple[int, list[Any]]]:
    """The raw entries of each file to write: one UTC day, at most `rows_per_file`."""
    # A file's content must follow from its entries alone (not from where pages happened
    # to start), so each file is decoded from its own raw entries in one piece.
    chunk: list[Any] = []
    day = 0
    total = stream_length(client, stream) if start is None else None
    with progress_bar(total=total, desc=f"export {stream}", enabled=progress) as bar:
        for page in iter_pages(client, stream, start=start, end=end):
            bar.update(len(page))
            for part_day, part in _split_page_by_day(page):
                while part:
                    if chunk and (part_day != day or len(chunk) >= rows_per_file):
                        yield day, chunk
                        chunk = []
                    take = rows_per_file - len(chunk)
                    chunk.extend(part[:take])
                    part = part[take:]
                    day = part_day
    if chunk:
        yield day, chunk


def recorded_envelope(entries: list[ManifestEntry]) -> Envelope | None:
    """The envelope a stream's archived files were decoded with (the latest recorded)."""
    for entry in reversed(entries):
        if entry.envelope is not None:
            return Envelope.from_dict(entry.envelope)
    return None


def _check_envelope(
    layout: ArchiveLayout,
    stream: str,
    entries: list[ManifestEntry],
    envelope: Envelope,
    recorded: dict[str, Any],
) -> None:
    """One stream, one envelope: files decoded two ways would mix silently in a query."""
    before = next((e.envelope for e in reversed(entries) if e.envelope is not None), None)
    # min_match is how much mismatch a read tolerates, not how entries decode.
    if before is None or _decoding(before) == _decoding(recorded):
        return
    before, recorded = _decoding(before), _decoding(recorded)
    changed = sorted(k for k in set(before) | set(recorded) if before.get(k) != recorded.get(k))
    shown = ", ".join(f"{k} = {before.get(k)!r} (now {recorded.get(k)!r})" for k in changed)
    raise ArchiveEnvelopeConflict(
        f"Stream `{stream}` is archived in {layout.storage.url} with another envelope: {shown}. "
        "Nothing was exported. Export with the envelope it was archived with "
        "(Archive.envelope_of gives it; on the command line, leave out --envelope), or into "
        "a new archive root.",
        stream=stream,
    )


def _decoding(envelope: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in envelope.items() if k != "min_match"}


@dataclass(frozen=True, slots=True)
class _Written:
    """A file published complete, not yet in the manifest."""

    file: str
    sha256: str
    size: int
    first_id: str
    last_id: str
    rows: int

    def entry(
        self, stream: str, previous: ManifestEntry | None, envelope: dict[str, Any]
    ) -> ManifestEntry:
        """Its manifest entry, chained to `previous`."""
        return ManifestEntry(
            n=(previous.n + 1) if previous else 0,
            file=self.file,
            stream=stream,
            first_id=self.first_id,
            last_id=self.last_id,
            prev_last_id=previous.last_id if previous else None,
            rows=self.rows,
            bytes=self.size,
            sha256=self.sha256,
            prev=previous.hash if previous else GENESIS,
            envelope=envelope,
        ).sealed()


class _FileWriter:
    """Decodes a file's raw entries, encodes them as Parquet in memory, publishes the file."""

    def __init__(
        self, layout: ArchiveLayout, stream: str, envelope: Envelope, privacy: Privacy
    ) -> None:
        self.layout = layout
        self.paths = layout.paths(stream)
        self.stream = stream
        self.envelope = envelope
        self.privacy = privacy

    def __call__(self, day_chunk: tuple[int, list[Any]]) -> _Written:
        day, chunk = day_chunk
        first, last = chunk[0][0].decode(), chunk[-1][0].decode()
        if self.privacy.active:
            # Before decoding: no original value may reach a column, the raw `fields`, or
            # the statistics Parquet keeps about them.
            chunk[:] = [[entry_id, self.privacy.apply(flat)] for entry_id, flat in chunk]
        table = finish(prepare(extract(chunk, self.stream), self.envelope, keep_fields=True))
        chunk.clear()  # the raw entries are the bulk of the memory: free them before writing
        date = time.strftime("%Y-%m-%d", time.gmtime(day * _DAY_MS / 1000))
        target = self.paths.data_file(date, first, last)
        data = _parquet_bytes(table)
        rows = table.num_rows
        del table
        pa.default_memory_pool().release_unused()
        digest = hashlib.sha256(data).hexdigest()
        self.layout.storage.publish(target, data, digest)
        return _Written(target, digest, len(data), first, last, rows)


def _sound_manifest(
    layout: ArchiveLayout, stream: str
) -> tuple[list[ManifestEntry], ExportState | None]:
    """The manifest's entries, if it is whole, and the export state it is checked against;
    a damaged or missing manifest stops export.

    An export appended to a broken chain, or started afresh beside files a lost manifest
    listed, would hide the damage; and removing files it does not list would erase
    archived (perhaps trimmed) history. Nothing is written or removed.
    """
    lines = layout.manifest_lines(stream)
    where = f"{layout.storage.url}"
    bad = [line["_unreadable"] for line in lines if "_unreadable" in line]
    if bad:
        raise ArchiveError(
            f"The manifest of `{stream}` in {where} has unreadable line(s) {bad[:5]}: the "
            "archive is damaged. Nothing was exported or removed; run verify for the "
            "details and restore the manifest from a backup before exporting again.",
            stream=stream,
        )
    entries = [ManifestEntry(**line) for line in lines]
    previous = None
    for entry in entries:
        if entry.prev != (previous.hash if previous else GENESIS) or entry.sealed() != entry:
            raise ArchiveError(
                f"The manifest of `{stream}` in {where} is not one hash chain at entry "
                f"{entry.n} (`{entry.file}`): the archive is damaged. Nothing was exported "
                "or removed; run verify for the details.",
                stream=stream,
            )
        previous = entry
    state = layout.export_state(stream)
    heads = {GENESIS} | {entry.hash for entry in entries}
    if entries and state is not None and state.manifest_head not in heads:
        # The last export ended at an entry this manifest no longer holds: entries were
        # cut from its end (their files would otherwise pass for a crash's leftovers).
        raise ArchiveError(
            f"The manifest of `{stream}` in {where} lacks the entry the last export ended at "
            f"(horizon {state.horizon}): entries were removed from it. Nothing was exported or "
            "removed; run verify for the details and restore the manifest from a backup.",
            stream=stream,
        )
    if not entries and state is not None:
        # An export finished once (its state says so), yet no entry is listed.
        files = [f for f in layout.stream_files(stream) if _is_data_file(f)]
        if files:
            raise ArchiveError(
                f"{where} holds {len(files)} file(s) of `{stream}` but no manifest: it was lost "
                "or deleted. Nothing was exported or removed; restore the manifest (or move "
                "the files aside) before exporting again.",
                stream=stream,
            )
    return entries, state


_LEFTOVERS = 3
"""Files a killed export can have published and not yet listed: it lists each file as soon
as it is published, with at most two more in flight."""


def _is_data_file(relative: str) -> bool:
    name = relative.rsplit("/", 1)[-1]
    return name.endswith(".parquet") and not name.startswith(".")


def _remove_unlisted(layout: ArchiveLayout, stream: str, entries: list[ManifestEntry]) -> None:
    """Remove what a crashed export left: temporary files, and published files not yet
    listed, which lie past the manifest's end. A file the manifest should list (its entries
    at or below the end) is no leftover: the manifest lost it, and export stops."""
    listed = {e.file for e in entries}
    horizon = StreamID.parse(entries[-1].last_id) if entries else None
    unlisted = [f for f in layout.stream_files(stream) if _is_data_file(f) and f not in listed]
    if len(unlisted) > _LEFTOVERS:
        raise ArchiveError(
            f"{layout.storage.url} holds {len(unlisted)} file(s) of `{stream}` its manifest does "
            f"not list (such as `{unlisted[0]}`); a crashed export leaves at most "
            f"{_LEFTOVERS}. The manifest lost them, or they are not the archive's. Nothing was "
            "exported or removed; run verify for the details.",
            stream=stream,
        )
    for relative in layout.stream_files(stream):
        name = relative.rsplit("/", 1)[-1]
        if name.startswith("."):
            _log.info("removing %s, left by an interrupted export", relative)
            layout.storage.delete(relative)
            continue
        if not name.endswith(".parquet") or relative in listed:
            continue
        first = _first_id(name)
        if horizon is not None and (first is None or first <= horizon):
            raise ArchiveError(
                f"`{relative}` in {layout.storage.url} is not in the manifest of `{stream}` "
                "although its entries lie within what the manifest covers: the manifest lost "
                "it, or the file is not the archive's. Nothing was exported or removed; run "
                "verify for the details.",
                stream=stream,
            )
        _log.info("removing %s, published by an interrupted export, never listed", relative)
        layout.storage.delete(relative)
    for relative in layout.stale_temporaries(stream):
        _log.info("removing %s, left by an interrupted write", relative)
        layout.storage.delete(relative)


def _first_id(name: str) -> StreamID | None:
    """The first ID in a data file's name (`<first>_<last>.parquet`), or None."""
    try:
        return StreamID.parse(name.removesuffix(".parquet").split("_", 1)[0])
    except (ValueError, InvalidStreamID):
        return None


def _export_state(
    stream: str, info: StreamInfo, entries: list[ManifestEntry], privacy: Privacy
) -> ExportState:
    return ExportState(
        stream=stream,
        horizon=entries[-1].last_id if entries else None,
        manifest_head=entries[-1].hash if entries else GENESIS,
        entries_added=info.entries_added,
        # Entries the stream ever had that the archive lacks, as of this export: what
        # was trimmed or deleted before it could be archived (Redis 7 counts it).
        unarchived=(
            info.entries_added - sum(e.rows for e in entries)
            if info.entries_added is not None
            else None
        ),
        last_generated_id=str(info.last_generated_id),
        exported_at=utc_now(),
        privacy=privacy.spec(),
    )


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
