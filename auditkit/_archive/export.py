"""Export: a stream's new entries into the archive, one complete Parquet file at a time.

A file holds consecutive entries of one UTC month, at most `rows_per_file` of them and
about `bytes_per_file` of raw entries, decoded from its own raw entries in one piece. Order
of work (layout.py has the rules that make it safe against crashes and stale writers): the
writer's manifest version first, then per file the Parquet bytes and their SHA-256 in
memory, the file published complete, then its manifest entry; last, the stream's counters
and any loss they prove.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from auditkit._archive.identity import (
    LiveComparison,
    archived_rows,
    compare_live,
    counter_problem,
    only_appended,
    recorded_losses,
)
from auditkit._archive.layout import ArchiveLayout, StreamWriter
from auditkit._archive.manifest import (
    GENESIS,
    ChainRecord,
    LedgerRecord,
    ManifestEntry,
    append_record,
)
from auditkit._archive.privacy import Privacy
from auditkit._display import ShownFrame, card_html
from auditkit._exceptions import ArchiveEnvelopeConflict, ArchiveError, StreamRecreated
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
from auditkit._redis.streams import ensure_stream
from auditkit._redis.xinfo import StreamInfo, stream_info

__all__ = [
    "ExportReport",
    "export_stream",
    "recorded_envelope",
    "recorded_privacy",
    "require_format",
]

_log = logger(__name__)


@dataclass(frozen=True, slots=True)
class ExportReport:
    """What one export wrote, and the loss it recorded (entries that left the stream
    before they could be archived, counted on Redis 7)."""

    stream: str
    files: int
    rows: int
    horizon: str | None  # the last archived ID after this export
    lost: int = 0
    """Entries recorded lost by this export (0 when none; see `Archive.losses`)."""
    losses: list[dict[str, Any]] = field(default_factory=list)

    def __repr__(self) -> str:
        lost = f", {self.lost:,} entries recorded LOST" if self.lost else ""
        files = f"{self.files} file" + ("" if self.files == 1 else "s")
        return (
            f"<ExportReport {self.stream}: {self.rows:,} rows in {files}, "
            f"horizon {self.horizon}{lost}>"
        )

    def _repr_html_(self) -> str:
        status = (
            (f"{self.lost:,} entries recorded LOST", "#dc2626")
            if self.lost
            else ("done", "#16a34a")
        )
        facts = [
            ("stream", self.stream),
            ("entries written", f"{self.rows:,}"),
            ("files written", f"{self.files:,}"),
            ("archived up to", self.horizon or "nothing archived"),
        ]
        sections = []
        if self.losses:
            sections.append(("Losses recorded", ShownFrame(self.losses)._repr_html_()))
        return card_html("Archive export", status=status, facts=facts, sections=sections)


_INDEXED = frozenset(
    ("stream", "id", "ts", "seq", "event_type", "aggregate_id", "schema_version", "occurred_at")
)


def require_format(layout: ArchiveLayout) -> None:
    """Refuse an archive an earlier auditkit wrote in format 1 until it is upgraded."""
    old = layout.format1_manifests()
    if old:
        raise ArchiveError(
            f"{layout.storage.url} was written by an earlier auditkit (archive format 1, "
            f"such as `{old[0]}`). Nothing was changed; run `auditkit repair --archive "
            f"{layout.storage.url} STREAM` for each stream to upgrade it (every file is kept "
            "and re-checked)."
        )


def export_stream(
    layout: ArchiveLayout,
    client: Client,
    stream: str,
    *,
    envelope: Envelope | None,
    privacy: Privacy,
    rows_per_file: int,
    bytes_per_file: int,
    progress: bool | None = None,
) -> ExportReport:
    """`Archive.export`: the entries after the last archived one, up to the current end.

    With no envelope, the one the stream was archived with (the default for a new one);
    with no privacy rules, those the stream was archived with.
    """
    ensure_stream(client, stream)
    require_format(layout)
    with layout.writer(stream) as writer, no_cyclic_gc():
        writer.require_sound("exported or removed")
        records: list[ChainRecord] = list(writer.chain.records)
        files = writer.chain.files
        horizon = StreamID.parse(files[-1].last_id) if files else None
        if envelope is None:
            envelope = recorded_envelope(files) or Envelope()
        privacy = privacy.for_envelope(envelope.payload, envelope.decoder_name).for_archive(
            recorded_privacy(files), bool(files), stream, "export"
        )
        info = stream_info(client, stream)
        _require_same_stream(layout, client, stream, writer, privacy, info)
        end = info.last_generated_id
        written = rows = 0
        first_exported: str | None = None
        start = horizon.next() if horizon is not None else None
        recorded = envelope.to_dict(full=True)
        if horizon is None or horizon < end:
            _check_envelope(layout, stream, files, envelope, recorded)
            # The envelope must fit before anything is written, the manifest included (a
            # refused first export leaves no stream in the archive): a sample of what
            # comes next.
            for _ in stream_tables(client, stream, start=start, count=SAMPLE, envelope=envelope):
                pass
        writer.save(records)  # this writer's version, before any file (layout.py, rule 1)
        if horizon is None or horizon < end:
            total = info.length if start is None else None
            chunks = _chunks(
                client, stream, start, end, rows_per_file, bytes_per_file, total, progress
            )
            write = _FileWriter(writer, envelope, privacy)
            previous = files[-1] if files else None
            spec = privacy.spec()
            for file in pipelined(chunks, write, workers=2, in_flight=2, name="auditkit-export"):
                previous = file.entry(stream, records, previous, writer.epoch, recorded, spec)
                records.append(previous)
                writer.save(records)
                written += 1
                rows += previous.rows
                first_exported = first_exported or previous.first_id
        losses = _new_losses(writer, records, info, first_exported)
        for detail in losses:
            records.append(append_record(records, "loss", stream, detail, writer.epoch))
        writer.save(records, _state(info, records))
    last = [r for r in records if isinstance(r, ManifestEntry)]
    lost = sum(int(d["count"]) for d in losses)
    if lost:
        _log.warning("%s: %d entries left the stream before they could be archived", stream, lost)
    return ExportReport(stream, written, rows, last[-1].last_id if last else None, lost, losses)


def _require_same_stream(
    layout: ArchiveLayout,
    client: Client,
    stream: str,
    writer: StreamWriter,
    privacy: Privacy,
    info: StreamInfo,
) -> None:
    """Refuse a stream that is not the one archived, or whose archived entries now differ.

    Every live entry at or below the horizon is compared with its archived copy, except
    when Redis 7's counters show the stream only grew (or lost entries) since the last
    export: then the entries of the last file are, which a stream created again under the
    same key cannot match by chance. (verify and trim always compare them all.) A stream
    trimmed past its horizon has nothing live to compare: its counters decide.
    """
    files = writer.chain.files
    if not files:
        return
    horizon = StreamID.parse(files[-1].last_id)
    state = writer.state
    live_below: int | None
    if info.first_id is None or info.first_id > horizon:
        live, live_below = LiveComparison(), 0
    elif only_appended(state, info):
        live, live_below = compare_live(layout, privacy, client, stream, files[-1:], info), None
    else:
        live = compare_live(layout, privacy, client, stream, files, info)
        live_below = live.live_below
    problem = counter_problem(info, files, writer.chain.ledger, state, live_below)
    if problem is None and live.conflicts:
        _, detail = live.conflicts[0]
        more = f" ({len(live.conflicts):,} entries differ)" if len(live.conflicts) > 1 else ""
        problem = f"{detail}{more}"
    if problem is not None:
        raise StreamRecreated(
            f"Stream `{stream}` is not the stream archived in {layout.storage.url}: "
            f"{problem}. Nothing was exported. If it was recreated on purpose, archive it "
            "under a new archive root; run `auditkit verify` for the details.",
            stream=stream,
        )


def _new_losses(
    writer: StreamWriter,
    records: list[ChainRecord],
    info: StreamInfo,
    first_exported: str | None,
) -> list[dict[str, Any]]:
    """Entries the stream added that are neither archived nor already recorded lost.

    On Redis 7 every entry ever added up to `info`'s moment has an ID at or below its
    last generated ID, which this export archived up to: what the counter adds beyond the
    archive and the ledger left the stream before an export could read it.
    """
    if info.entries_added is None:
        return []
    files = [r for r in records if isinstance(r, ManifestEntry)]
    ledger = [r for r in records if isinstance(r, LedgerRecord)]
    missing = info.entries_added - archived_rows(files) - recorded_losses(ledger)
    if missing <= 0:
        return []
    after = writer.state.get("last_generated_id")
    deleted = info.max_deleted_entry_id
    # They lie after the previous export's end; before the first entry this export read
    # when Redis says nothing above it was ever deleted.
    before = (
        first_exported
        if first_exported is not None
        and deleted is not None
        and deleted < StreamID.parse(first_exported)
        else None
    )
    return [
        {
            "count": missing,
            "after": after,
            "before": before,
            "through": str(info.last_generated_id),
            "max_deleted_entry_id": str(deleted) if deleted is not None else None,
            "seen_by": "export",
            "seen_at": utc_now(),
        }
    ]


def _state(info: StreamInfo, records: list[ChainRecord]) -> dict[str, Any]:
    files = [r for r in records if isinstance(r, ManifestEntry)]
    return {
        "horizon": files[-1].last_id if files else None,
        "entries_added": info.entries_added,
        "last_generated_id": str(info.last_generated_id),
        "max_deleted_entry_id": (
            str(info.max_deleted_entry_id) if info.max_deleted_entry_id is not None else None
        ),
        "length": info.length,
        "first_id": str(info.first_id) if info.first_id is not None else None,
        "exported_at": utc_now(),
    }


def _chunks(
    client: Client,
    stream: str,
    start: StreamID | None,
    end: StreamID,
    rows_per_file: int,
    bytes_per_file: int,
    total: int | None,
    progress: bool | None,
) -> Iterator[tuple[str, list[Any]]]:
    """The raw entries of each file to write: one UTC month, at most `rows_per_file`, and
    no more raw bytes than `bytes_per_file` once it holds one entry."""
    # A file's content must follow from its entries alone (not from where pages happened
    # to start), so each file is decoded from its own raw entries in one piece.
    chunk: list[Any] = []
    size = 0
    month = ""
    with progress_bar(total=total, desc=f"export {stream}", enabled=progress) as bar:
        for page in iter_pages(client, stream, start=start, end=end):
            bar.update(len(page))
            for part_month, part in _split_page_by_month(page):
                for entry in part:
                    weight = len(entry[0]) + sum(map(len, entry[1]))
                    if chunk and (
                        part_month != month
                        or len(chunk) >= rows_per_file
                        or size + weight > bytes_per_file
                    ):
                        yield month, chunk
                        chunk, size = [], 0
                    chunk.append(entry)
                    size += weight
                    month = part_month
    if chunk:
        yield month, chunk


def recorded_privacy(entries: list[ManifestEntry]) -> dict[str, Any] | None:
    """The drop/pseudonymize rules a stream's files were written with (the latest)."""
    return entries[-1].privacy if entries else None


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
        self,
        stream: str,
        records: list[ChainRecord],
        previous: ManifestEntry | None,
        epoch: int,
        envelope: dict[str, Any],
        privacy: dict[str, Any] | None,
    ) -> ManifestEntry:
        """Its manifest entry, chained after `records`."""
        return ManifestEntry(
            n=len(records),
            file=self.file,
            stream=stream,
            first_id=self.first_id,
            last_id=self.last_id,
            prev_last_id=previous.last_id if previous else None,
            rows=self.rows,
            bytes=self.size,
            sha256=self.sha256,
            prev=records[-1].hash if records else GENESIS,
            epoch=epoch,
            envelope=envelope,
            privacy=privacy,
        ).sealed()


class _FileWriter:
    """Decodes a file's raw entries, encodes them as Parquet in memory, publishes the file."""

    def __init__(self, writer: StreamWriter, envelope: Envelope, privacy: Privacy) -> None:
        self.writer = writer
        self.stream = writer.stream
        self.envelope = envelope
        self.privacy = privacy
        self.metadata = {
            b"auditkit.envelope": json.dumps(envelope.to_dict(full=True), sort_keys=True).encode(),
            b"auditkit.privacy": json.dumps(privacy.spec(), sort_keys=True).encode(),
        }

    def __call__(self, month_chunk: tuple[str, list[Any]]) -> _Written:
        month, chunk = month_chunk
        first, last = chunk[0][0].decode(), chunk[-1][0].decode()
        if self.privacy.active:
            # Before decoding: no original value may reach a column, the raw `fields`, or
            # the statistics Parquet keeps about them.
            chunk[:] = [[entry_id, self.privacy.apply(flat)] for entry_id, flat in chunk]
        table = finish(prepare(extract(chunk, self.stream), self.envelope, keep_fields=True))
        # How the file was decoded and what was applied, in the file itself: a manifest
        # rebuilt from the files (repair) can check the columns and keep the rules.
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **self.metadata})
        chunk.clear()  # the raw entries are the bulk of the memory: free them before writing
        target = self.writer.paths.data_file(month, first, last, self.writer.epoch)
        data = _parquet_bytes(table)
        rows = table.num_rows
        del table
        pa.default_memory_pool().release_unused()
        digest = hashlib.sha256(data).hexdigest()
        self.writer.publish(target, data, digest)
        return _Written(target, digest, len(data), first, last, rows)


def _month(entry: Any) -> str:
    moment = time.gmtime(int(entry[0].split(b"-", 1)[0]) // 1000)
    return f"{moment.tm_year:04d}-{moment.tm_mon:02d}"


def _split_page_by_month(page: list[Any]) -> Iterator[tuple[str, list[Any]]]:
    """A raw page cut where the UTC month of the entries' IDs changes (pages are in ID order)."""
    low = 0
    while low < len(page):
        month = _month(page[low])
        if _month(page[-1]) == month:
            yield month, page[low:]
            return
        high = bisect.bisect_left(page, True, lo=low, key=lambda e: _month(e) > month)
        yield month, page[low:high]
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
