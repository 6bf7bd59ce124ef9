"""The Parquet archive: export (incremental, idempotent, crash-safe), trim, restore, query.

Layout (docs/archive-format.md specifies it for readers without auditkit):

    <root>/stream=<key>/date=<YYYY-MM-DD>/<first id>_<last id>.parquet
    <root>/_manifest/<key>.jsonl, <root>/_state/<key>.json, <root>/_lease/<key>.lock

A file holds consecutive entries of one stream recorded on one UTC day, at most
`rows_per_file` of them: its name, and with the same entries its bytes, follow from where
it starts, so a rerun after a crash writes the same file again. Each file has the decoded
frame columns and `fields`, the entries' original field/value pairs byte for byte.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import os
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import redis

from auditkit._columns import empty_table, extract, finish, prepare
from auditkit._connection import read_with_retry, redis_errors
from auditkit._envelope import Envelope
from auditkit._exceptions import StreamRecreated, TrimRefused
from auditkit._ids import StreamID
from auditkit._manifest import (
    GENESIS,
    ManifestEntry,
    atomic_write,
    encode_key,
    fsync_directory,
    lease,
    read_json,
    read_manifest,
    write_manifest,
)
from auditkit._pages import iter_pages
from auditkit._progress import progress_bar
from auditkit._reader import _no_cyclic_gc, _stream_tables
from auditkit._schema import unify_tables
from auditkit._secrets import logger
from auditkit._streams import ensure_stream, stream_length

__all__ = ["Archive", "ExportReport"]

_log = logger(__name__)
_DAY_MS = 86_400_000
_INDEXED = frozenset(
    ("stream", "id", "ts", "seq", "event_type", "aggregate_id", "schema_version", "occurred_at")
)


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


class Archive:
    """A folder of Parquet files holding streams' history, with proof of completeness.

    Args:
        root: the archive folder (created on first export).
        rows_per_file: at most this many entries per Parquet file.
        envelope: how to decode the entries into frame columns.

    Example:
        >>> arc = Archive("archive/")
        >>> arc.export(r, "orders")          # doctest: +SKIP
        >>> arc.verify(r, "orders").ok       # doctest: +SKIP
        True
        >>> arc.trim(r, "orders")            # doctest: +SKIP
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        rows_per_file: int = 50_000,
        envelope: Envelope | None = None,
    ) -> None:
        if rows_per_file < 1:
            raise ValueError(f"rows_per_file must be at least 1, got `{rows_per_file}`.")
        self.root = Path(root)
        self.rows_per_file = rows_per_file
        self.envelope = envelope or Envelope()

    def __repr__(self) -> str:
        return f"<Archive {str(self.root)!r} streams={self.streams()}>"

    # ---- what is archived -------------------------------------------------------------

    def streams(self) -> list[str]:
        """The streams this archive holds (those with a manifest)."""
        folder = self.root / "_manifest"
        if not folder.is_dir():
            return []
        keys = []
        for path in sorted(folder.glob("*.jsonl")):
            entries = read_manifest(path)
            if entries and "stream" in entries[0]:
                keys.append(entries[0]["stream"])
        return keys

    def entries(self, stream: str) -> list[ManifestEntry]:
        """The manifest entries of a stream, in ID order."""
        return [
            ManifestEntry(**e)
            for e in read_manifest(self._manifest_path(stream))
            if "_unreadable" not in e
        ]

    def horizon(self, stream: str) -> StreamID | None:
        """The last archived ID of a stream, or None."""
        entries = self.entries(stream)
        return StreamID.parse(entries[-1].last_id) if entries else None

    def events_table(
        self, *, stream: str | None = None, aggregate_id: str | None = None
    ) -> pa.Table:
        """The archived events as one table (the frame columns), optionally filtered."""
        files = [
            self.root / e.file
            for s in ([stream] if stream else self.streams())
            for e in self.entries(s)
        ]
        if not files:
            return empty_table()
        filters = [("aggregate_id", "==", aggregate_id)] if aggregate_id is not None else None
        tables = [pq.read_table(f, filters=filters) for f in files]
        table = unify_tables(tables)
        if "fields" in table.column_names:
            table = table.drop_columns(["fields"])
        return table

    # ---- export -------------------------------------------------------------------------

    def export(
        self, client: redis.Redis, stream: str, *, progress: bool | None = None
    ) -> ExportReport:
        """Archive the stream's entries after the last archived one, up to its current end.

        Incremental and idempotent: a second run with nothing new writes nothing; a run
        after a crash rewrites the interrupted file with the same name and bytes. Memory is
        bounded by `rows_per_file`, whatever the stream's length.

        Raises:
            StreamRecreated: the live stream is not the one archived (deleted and created
                again, or an archived ID now holds other data); nothing is written.
            ArchiveBusy: another process is exporting or trimming this stream.
        """
        ensure_stream(client, stream)
        with lease(self._lease_path(stream), stream=stream), _no_cyclic_gc():
            self._remove_unlisted(stream)
            entries = self.entries(stream)
            horizon = StreamID.parse(entries[-1].last_id) if entries else None
            info = _stream_info(client, stream)
            if horizon is not None:
                self._check_identity(client, stream, info, horizon)
            end = StreamID.parse(info["last-generated-id"])
            written = rows = 0
            if horizon is None or horizon < end:
                start = horizon.next() if horizon is not None else None
                for entry in self._write_files(client, stream, start, end, entries, progress):
                    entries.append(entry)
                    write_manifest(self._manifest_path(stream), entries)
                    written += 1
                    rows += entry.rows
            self._write_checkpoint(stream, info, entries)
        last = entries[-1].last_id if entries else None
        return ExportReport(stream, written, rows, last)

    def _write_files(
        self,
        client: redis.Redis,
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
        in_flight: deque[Future[tuple[Path, str, int, str, str, int]]] = deque()
        total = stream_length(client, stream) if start is None else None
        with (
            ThreadPoolExecutor(max_workers=2, thread_name_prefix="auditkit-export") as pool,
            progress_bar(total=total, desc=f"export {stream}", enabled=progress) as bar,
        ):

            def publish() -> Iterator[ManifestEntry]:
                nonlocal previous
                while in_flight and (in_flight[0].done() or len(in_flight) > 1):
                    previous = self._entry(stream, *in_flight.popleft().result(), previous)
                    yield previous

            for page in iter_pages(client, stream, start=start, end=end):
                bar.update(len(page))
                for part_day, part in _split_page_by_day(page):
                    while part:
                        if chunk and (part_day != day or len(chunk) >= self.rows_per_file):
                            in_flight.append(pool.submit(self._write_file, stream, chunk, day))
                            chunk = []
                            yield from publish()
                        take = self.rows_per_file - len(chunk)
                        chunk.extend(part[:take])
                        part = part[take:]
                        day = part_day
            if chunk:
                in_flight.append(pool.submit(self._write_file, stream, chunk, day))
            while in_flight:
                previous = self._entry(stream, *in_flight.popleft().result(), previous)
                yield previous

    def _write_file(
        self, stream: str, chunk: list[Any], day: int | None
    ) -> tuple[Path, str, int, str, str, int]:
        """Decode a file's entries, write it under a temporary name, publish it."""
        first, last = chunk[0][0].decode(), chunk[-1][0].decode()
        table = finish(prepare(extract(chunk, stream), self.envelope, keep_fields=True))
        chunk.clear()  # the raw entries are the bulk of the memory: free them before writing
        date = time.strftime("%Y-%m-%d", time.gmtime((day or 0) * _DAY_MS / 1000))
        folder = self.root / f"stream={encode_key(stream)}" / f"date={date}"
        target = folder / f"{first}_{last}.parquet"
        temp = _write_temp(table, folder)
        rows = table.num_rows
        del table
        pa.default_memory_pool().release_unused()
        digest, size = _sha256(temp)
        _publish_file(temp, target)
        return target, digest, size, first, last, rows

    def _entry(
        self,
        stream: str,
        target: Path,
        digest: str,
        size: int,
        first: str,
        last: str,
        rows: int,
        previous: ManifestEntry | None,
    ) -> ManifestEntry:
        return ManifestEntry(
            n=(previous.n + 1) if previous else 0,
            file=target.relative_to(self.root).as_posix(),
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
        self, client: redis.Redis, stream: str, info: dict[str, Any], horizon: StreamID
    ) -> None:
        problem = identity_problem(self, client, stream, info, horizon)
        if problem is not None:
            raise StreamRecreated(
                f"Stream `{stream}` is not the stream archived in {self.root}: {problem}. "
                "Nothing was exported. If it was recreated on purpose, archive it under a "
                "new archive root; run verify() for the details.",
                stream=stream,
            )

    def _remove_unlisted(self, stream: str) -> None:
        # Files a crashed export renamed but never listed, and temporary files: not part of
        # the archive. Removed under the lease, before the rerun writes them again.
        listed = {e.file for e in self.entries(stream)}
        folder = self.root / f"stream={encode_key(stream)}"
        if not folder.is_dir():
            return
        for path in folder.rglob("*"):
            if not path.is_file():
                continue
            relative = path.relative_to(self.root).as_posix()
            if path.name.startswith(".") or (path.suffix == ".parquet" and relative not in listed):
                _log.info("removing %s, left by an interrupted export", relative)
                path.unlink()

    def _write_checkpoint(
        self, stream: str, info: dict[str, Any], entries: list[ManifestEntry]
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
        }
        atomic_write(self._state_path(stream), json.dumps(state, indent=1).encode())

    # ---- verify, trim, restore -----------------------------------------------------------

    def verify(self, client: redis.Redis | None = None, stream: str | None = None) -> Any:
        """Prove the archive complete and untouched; a report with `.ok` and `.findings`.

        Offline (no client): every file present, readable, matching its SHA-256 and row
        count; the manifest chain intact; ID ranges without overlap and each file starting
        where the previous ended. With a client, also: live entries that overlap the
        archive hold the same data; the stream was not recreated; entries trimmed or
        deleted before they were archived show up as a gap with its range and size.
        A report without errors marks the horizon verified, which `trim` requires.
        """
        from auditkit._verify import verify_archive

        return verify_archive(self, client, stream)

    def trim(
        self,
        client: redis.Redis,
        stream: str,
        *,
        before: Any = None,
        allow_pending: bool = False,
    ) -> int:
        """XTRIM MINID the stream up to its verified archived horizon, never beyond.

        Args:
            before: trim only entries below this ID or time (never above the horizon).
            allow_pending: trim even when consumer groups still have pending entries below
                the horizon (they become unreadable by XCLAIM).

        Returns:
            How many entries Redis removed.

        Raises:
            TrimRefused: nothing verified, the archive changed since verify, the stream was
                recreated, groups hold pending entries below the horizon, or the server is
                a replica.
        """
        from auditkit._bounds import start_id
        from auditkit._verify import check_offline

        ensure_stream(client, stream)
        with lease(self._lease_path(stream), stream=stream):
            horizon = self._verified_horizon(stream)
            # The files may have changed since verify(): trimming leaves them the only copy,
            # so their hashes and the manifest chain are checked again, now.
            broken = check_offline(self, stream)
            if not broken.empty:
                first = broken.iloc[0]
                raise TrimRefused(
                    f"Refusing to trim `{stream}`: the archive no longer matches its manifest "
                    f"({first['check']}: {first['detail']}; {len(broken)} finding(s)). Run "
                    "verify() for the full report.",
                    stream=stream,
                )
            role = _role(client)
            if role != "master":
                raise TrimRefused(
                    f"The server is a {role}; trim the primary instead (a replica's stream "
                    "follows its primary).",
                    stream=stream,
                )
            info = _stream_info(client, stream)
            problem = identity_problem(self, client, stream, info, horizon)
            if problem is not None:
                raise TrimRefused(f"Refusing to trim `{stream}`: {problem}.", stream=stream)
            minid = horizon.next()
            if before is not None:
                limit = start_id(before)
                if limit is not None and limit < minid:
                    minid = limit
            if not allow_pending:
                _refuse_pending(client, stream, minid)
            with redis_errors(client, stream=stream, command="XTRIM"):
                removed: int = client.xtrim(stream, minid=str(minid), approximate=False)
        _log.info("trimmed %d entries of %s below %s", removed, stream, minid)
        return removed

    def restore(self, client: redis.Redis, stream: str, target_stream: str) -> int:
        """Write the archived entries of `stream` into `target_stream`, same IDs and fields.

        The target must not exist. Returns the number of entries written.
        """
        with redis_errors(client, stream=target_stream, command="EXISTS"):
            if client.exists(target_stream):
                raise TrimRefused(
                    f"`{target_stream}` already exists; restore into a new key (entries keep "
                    "their IDs, which an existing stream would refuse or interleave).",
                    stream=target_stream,
                )
        written = 0
        with redis_errors(client, stream=target_stream, command="XADD"):
            for entry in self.entries(stream):
                table = pq.read_table(self.root / entry.file, columns=["id", "fields"])
                pipe = client.pipeline(transaction=False)
                for entry_id, pairs in zip(
                    table.column("id").to_pylist(), table.column("fields").to_pylist(), strict=True
                ):
                    pipe.execute_command("XADD", target_stream, entry_id, *pairs)  # type: ignore[no-untyped-call]
                    written += 1
                    if len(pipe) >= 1_000:
                        pipe.execute()
                pipe.execute()
        return written

    # ---- query ---------------------------------------------------------------------------

    def duckdb(self, live: redis.Redis | None = None) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection with a view `events`: the archive, plus the live tail.

        With `live`, each archived stream's entries above its horizon are read from Redis
        (up to the last ID at that moment: one cut) and appended, so every event appears
        exactly once. Columns are the frame's, plus the hive partitions `stream`, `date`.
        """
        connection = duckdb.connect()
        files = [str(self.root / e.file) for s in self.streams() for e in self.entries(s)]
        parts = []
        if files:
            # Paths from the manifest travel as a Python list, never spliced into SQL text.
            archived = connection.read_parquet(files, hive_partitioning=True, union_by_name=True)
            archived.create_view("archived")
            parts.append('SELECT * EXCLUDE ("fields") FROM archived')
        if live is not None:
            tails: list[pa.Table] = []
            for stream in self.streams():
                horizon = self.horizon(stream)
                info = _stream_info(live, stream)
                end = StreamID.parse(info["last-generated-id"])
                if horizon is not None and end <= horizon:
                    continue
                start = horizon.next() if horizon else None
                tails.extend(
                    _stream_tables(
                        live, stream, start, end, None, False, self.envelope, False, False
                    )
                )
            if tails:
                tail = unify_tables(tails)
                day = pc.cast(pc.cast(tail.column("ts"), pa.timestamp("ms", "UTC")), pa.date32())
                connection.register("live_tail", tail.append_column("date", day))
                parts.append("SELECT * FROM live_tail")
        if not parts:
            connection.register("live_tail", empty_table())
            parts.append("SELECT * FROM live_tail")
        connection.execute("CREATE VIEW events AS " + " UNION ALL BY NAME ".join(parts))
        return connection

    # ---- paths ---------------------------------------------------------------------------

    def _manifest_path(self, stream: str) -> Path:
        return self.root / "_manifest" / f"{encode_key(stream)}.jsonl"

    def _state_path(self, stream: str) -> Path:
        return self.root / "_state" / f"{encode_key(stream)}.json"

    def _verified_path(self, stream: str) -> Path:
        return self.root / "_state" / f"{encode_key(stream)}.verified.json"

    def _lease_path(self, stream: str) -> Path:
        return self.root / "_lease" / f"{encode_key(stream)}.lock"

    def _verified_horizon(self, stream: str) -> StreamID:
        entries = self.entries(stream)
        verified = read_json(self._verified_path(stream))
        if not entries:
            raise TrimRefused(
                f"Nothing of `{stream}` is archived in {self.root}; export() and verify() first.",
                stream=stream,
            )
        if verified is None:
            raise TrimRefused(
                f"The archive of `{stream}` is not verified; run verify(client, {stream!r}) "
                "and trim when it reports ok.",
                stream=stream,
            )
        if verified.get("manifest_head") != entries[-1].hash:
            raise TrimRefused(
                f"The archive of `{stream}` changed since it was verified (the manifest head "
                "differs); run verify() again before trimming.",
                stream=stream,
            )
        return StreamID.parse(verified["horizon"])


def identity_problem(
    archive: Archive, client: redis.Redis, stream: str, info: dict[str, Any], horizon: StreamID
) -> str | None:
    """Why the live stream is not the one archived, or None when it is."""
    state = read_json(archive._state_path(stream)) or {}
    added, known = info.get("entries-added"), state.get("entries_added")
    if isinstance(added, int) and isinstance(known, int) and added < known:
        return (
            f"its entries-added counter is {added:,}, below the {known:,} seen at the last "
            "export (it was deleted and created again)"
        )
    last_generated = StreamID.parse(info["last-generated-id"])
    if last_generated < horizon:
        return f"its last generated ID {last_generated} is below the archived horizon {horizon}"
    live = [
        entry for page in iter_pages(client, stream, start=horizon, end=horizon) for entry in page
    ]
    if live:
        archived = archived_fields(archive, stream, horizon)
        if archived is not None and raw_pairs(live[0][1]) != archived:
            return f"entry {horizon}, the last archived, now holds other data"
    return None


def archived_fields(
    archive: Archive, stream: str, entry_id: StreamID
) -> list[tuple[bytes, bytes]] | None:
    """The archived field/value pairs of one entry, or None if it is not archived."""
    text = str(entry_id)
    for entry in reversed(archive.entries(stream)):
        if StreamID.parse(entry.first_id) <= entry_id <= StreamID.parse(entry.last_id):
            table = pq.read_table(
                archive.root / entry.file, columns=["id", "fields"], filters=[("id", "==", text)]
            )
            if table.num_rows == 0:
                return None
            return raw_pairs(table.column("fields")[0].as_py())
    return None


def raw_pairs(flat: list[bytes]) -> list[tuple[bytes, bytes]]:
    """[f1, v1, f2, v2, ...] as Redis returns an entry, as (name, value) pairs."""
    return list(zip(flat[0::2], flat[1::2], strict=True))


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


def _write_temp(table: pa.Table, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    # A dot name ending in .tmp: no `*.parquet` glob, DuckDB's included, ever sees it.
    handle, name = tempfile.mkstemp(prefix=".", suffix=".parquet.tmp", dir=folder)
    with os.fdopen(handle, "wb") as out:
        pq.write_table(
            table,
            out,
            compression="zstd",
            # Dictionaries and min/max statistics pay off for the columns people filter on,
            # not for the raw fields or free text, which only cost time to encode.
            use_dictionary=[c for c in table.column_names if c in _INDEXED],
            write_statistics=[c for c in table.column_names if c in _INDEXED],
        )
        out.flush()
        os.fsync(out.fileno())
    return Path(name)


def _publish_file(temp: Path, target: Path) -> None:
    os.replace(temp, target)
    fsync_directory(target.parent)


def _sha256(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def _stream_info(client: redis.Redis, stream: str) -> dict[str, Any]:
    info: dict[str, Any] = read_with_retry(
        client, lambda: client.xinfo_stream(stream), stream=stream, command="XINFO STREAM"
    )
    for key in ("last-generated-id", "max-deleted-entry-id", "recorded-first-entry-id"):
        if isinstance(info.get(key), bytes):
            info[key] = info[key].decode()
    return info


def _role(client: redis.Redis) -> str:
    with redis_errors(client, command="INFO replication"):
        return str(client.info("replication").get("role", "unknown"))


def _refuse_pending(client: redis.Redis, stream: str, minid: StreamID) -> None:
    with redis_errors(client, stream=stream, command="XINFO GROUPS"):
        groups = client.xinfo_groups(stream)
    for group in groups:
        name = group["name"].decode() if isinstance(group["name"], bytes) else group["name"]
        if not group.get("pending"):
            continue
        with redis_errors(client, stream=stream, command="XPENDING"):
            summary = client.xpending(stream, name)
        lowest = summary.get("min")
        if lowest is not None and StreamID.parse(lowest) < minid:
            raise TrimRefused(
                f"Consumer group `{name}` of `{stream}` has {summary['pending']:,} pending "
                f"entries, the oldest {lowest.decode() if isinstance(lowest, bytes) else lowest}, "
                f"below the trim point {minid}. Let the consumers acknowledge them (or "
                "XCLAIM and handle them), or pass allow_pending=True.",
                stream=stream,
            )
