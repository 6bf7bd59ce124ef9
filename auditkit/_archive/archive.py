"""The Parquet archive: export (incremental, idempotent, crash-safe), trim, restore, query.

Layout (docs/archive-format.md specifies it for readers without auditkit):

    <root>/stream=<key>/date=<YYYY-MM-DD>/<first id>_<last id>.parquet
    <root>/_manifest/<key>.jsonl, <root>/_state/<key>.json, <root>/_lease/<key>.lock

(layout.py names them). The root is a local folder or an object storage URL
(`s3://bucket/prefix`); storage.py gives both the same guarantees.

A file holds consecutive entries of one stream recorded on one UTC day, at most
`rows_per_file` of them: its name, and with the same entries its bytes, follow from where
it starts, so a rerun after a crash writes the same file again. Each file has the decoded
frame columns and `fields`, the entries' original field/value pairs byte for byte.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from auditkit._archive.export import ExportReport, export_stream, recorded_envelope
from auditkit._archive.identity import identity_problem, raw_pairs
from auditkit._archive.layout import ArchiveLayout
from auditkit._archive.manifest import ManifestEntry
from auditkit._archive.privacy import Privacy
from auditkit._archive.restore import restore_stream
from auditkit._archive.storage import LocalStorage, open_storage
from auditkit._archive.verify import VerifyReport, check_offline, verify_archive
from auditkit._exceptions import StreamNotFound, TrimRefused
from auditkit._load.decode import empty_table
from auditkit._load.decoders import payload_texts
from auditkit._load.envelope import Envelope, EnvelopeSpec
from auditkit._load.reader import stream_tables
from auditkit._load.unify import unify_tables
from auditkit._logging import logger
from auditkit._redis.bounds import Bound, start_id
from auditkit._redis.connection import Client, node_for, redis_errors
from auditkit._redis.ids import StreamID
from auditkit._redis.streams import ensure_stream
from auditkit._redis.text import text
from auditkit._redis.xinfo import group_infos, stream_info

__all__ = ["Archive", "ExportReport"]

_log = logger(__name__)


class Archive:
    """Parquet files holding streams' history, with proof of completeness.

    Args:
        root: the archive folder (created on first export), or an object storage URL such
            as `s3://bucket/prefix` (opened with `pyarrow.fs`; AWS credentials and region
            come from the environment as for any AWS client).
        filesystem: for object storage, a `pyarrow.fs.FileSystem` (an `S3FileSystem` with
            `endpoint_override` for MinIO and other S3-compatible servers) or an fsspec
            file system; `root` then names the bucket and prefix.
        rows_per_file: at most this many entries per Parquet file.
        envelope: how to decode the entries into frame columns.
        drop: fields (or `payload.<path>`s) left out of the archive, e.g. `["email"]`.
        pseudonymize: fields (or `payload.<path>`s) replaced by `hmac:<hex>`, a keyed
            HMAC-SHA256: equal values stay equal, nothing of the original is written.
        key: the HMAC key (bytes or text). Never stored: pass it again to export and verify.

    Example:
        >>> arc = Archive("archive/")
        >>> arc.export(r, "orders")
        <ExportReport orders: 6 rows in 3 files, horizon 1772503200000-0>
        >>> arc.verify(r, "orders").ok
        True
        >>> arc.trim(r, "orders")            # entries removed from the stream
        6
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        filesystem: Any = None,
        rows_per_file: int = 50_000,
        envelope: EnvelopeSpec = None,
        drop: Sequence[str] = (),
        pseudonymize: Sequence[str] = (),
        key: bytes | str | None = None,
    ) -> None:
        if rows_per_file < 1:
            raise ValueError(f"rows_per_file must be at least 1, got `{rows_per_file}`.")
        self.storage = open_storage(root, filesystem)
        self.layout = ArchiveLayout(self.storage)
        self.root: Path | str = (
            self.storage.root if isinstance(self.storage, LocalStorage) else self.storage.url
        )
        self.rows_per_file = rows_per_file
        # None: each stream's export and live tail use the envelope it was archived with.
        self._given = Envelope.of(envelope) if envelope is not None else None
        self.envelope = self._given or Envelope()
        self.privacy = Privacy.of(
            drop, pseudonymize, key, self.envelope.payload, self.envelope.decoder_name
        )

    def __repr__(self) -> str:
        # No I/O (a repr must not touch object storage) and no credentials.
        return f"<Archive {str(self.root)!r}>"

    # ---- what is archived -------------------------------------------------------------

    def streams(self) -> list[str]:
        """The streams this archive holds (those with a manifest)."""
        return self.layout.streams()

    def entries(self, stream: str) -> list[ManifestEntry]:
        """The manifest entries of a stream, in ID order."""
        return self.layout.entries(stream)

    def envelope_of(self, stream: str) -> Envelope | None:
        """The envelope the stream's files were decoded with, as recorded in its manifest
        (None for a stream not archived, or archived before archives recorded it)."""
        return recorded_envelope(self.entries(stream))

    def horizon(self, stream: str) -> StreamID | None:
        """The last archived ID of a stream, or None."""
        entries = self.entries(stream)
        return StreamID.parse(entries[-1].last_id) if entries else None

    def events_table(
        self, *, stream: str | None = None, aggregate_id: str | None = None
    ) -> pa.Table:
        """The archived events as one table (the frame columns), optionally filtered."""
        files = [e.file for s in ([stream] if stream else self.streams()) for e in self.entries(s)]
        if not files:
            return empty_table()
        filters = [("aggregate_id", "==", aggregate_id)] if aggregate_id is not None else None
        tables = [self.storage.read_table(f, filters=filters) for f in files]
        table = unify_tables(tables)
        if "fields" in table.column_names:
            table = table.drop_columns(["fields"])
        return table

    def iter_tables(
        self, *, stream: str | None = None, keep_payload: bool = False
    ) -> Iterator[pa.Table]:
        """The archived events one file at a time, streams in key order, entries in ID order.

        Memory stays bounded by `rows_per_file` whatever the archive's size. With
        `keep_payload`, each table also has the payload exactly as written, in column
        `payload` (the bytes of the envelope's payload field; null where an entry lacks it).
        """
        for key in [stream] if stream is not None else self.streams():
            for entry in self.entries(key):
                table = self.storage.read_table(entry.file)
                if keep_payload:
                    # The payload as the file's own envelope decodes it (as a read would).
                    envelope = (
                        Envelope.from_dict(entry.envelope) if entry.envelope else self.envelope
                    )
                    table = _with_payload(table, envelope)
                yield table.drop_columns(["fields"])

    # ---- export -------------------------------------------------------------------------

    def export(self, client: Client, stream: str, *, progress: bool | None = None) -> ExportReport:
        """Archive the stream's entries after the last archived one, up to its current end.

        Incremental and idempotent: a second run with nothing new writes nothing; a run
        after a crash rewrites the interrupted file with the same name and bytes. Memory is
        bounded by `rows_per_file`, whatever the stream's length.

        Raises:
            StreamRecreated: the live stream is not the one archived (deleted and created
                again, or an archived ID now holds other data); nothing is written.
            ArchiveBusy: another process is exporting or trimming this stream.
        """
        return export_stream(
            self.layout,
            client,
            stream,
            envelope=self._given,
            privacy=self.privacy,
            rows_per_file=self.rows_per_file,
            progress=progress,
        )

    # ---- verify, trim, restore -----------------------------------------------------------

    def verify(self, client: Client | None = None, stream: str | None = None) -> VerifyReport:
        """Prove the archive complete and untouched; a report with `.ok` and `.findings`.

        Offline (no client): every file present, readable, matching its SHA-256 and row
        count; the manifest chain intact; ID ranges without overlap and each file starting
        where the previous ended. With a client, also: live entries that overlap the
        archive hold the same data; the stream was not recreated; entries trimmed or
        deleted before they were archived show up as a gap with its range and size.
        A report without errors marks the horizon verified, which `trim` requires.
        """
        return verify_archive(self.layout, self.privacy, client, stream)

    def trim(
        self,
        client: Client,
        stream: str,
        *,
        before: Bound = None,
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
        # The cut is checked before anything reaches Redis or the archive.
        limit = start_id(before)
        ensure_stream(client, stream)
        with self.storage.lease(self.layout.paths(stream).lease, stream=stream):
            entries = self.layout.entries(stream)
            horizon = self._verified_horizon(stream, entries)
            # The files may have changed since verify(): trimming leaves them the only copy,
            # so their hashes and the manifest chain are checked again, now.
            broken = check_offline(self.layout, stream)
            if not broken.empty:
                first = broken.iloc[0]
                raise TrimRefused(
                    f"Refusing to trim `{stream}`: the archive no longer matches its manifest "
                    f"({first['check']}: {first['detail']}; {len(broken)} finding(s)). Run "
                    "verify() for the full report.",
                    stream=stream,
                )
            role = _role(client, stream)
            if role != "master":
                raise TrimRefused(
                    f"The server is a {role}; trim the primary instead (a replica's stream "
                    "follows its primary).",
                    stream=stream,
                )
            info = stream_info(client, stream)
            state = self.layout.export_state(stream)
            problem = identity_problem(
                self.layout, self.privacy, client, info, entries, state, horizon
            )
            if problem is not None:
                raise TrimRefused(f"Refusing to trim `{stream}`: {problem}.", stream=stream)
            minid = horizon.next()
            if limit is not None and limit < minid:
                minid = limit
            if not allow_pending:
                _refuse_pending(client, stream, minid)
            with redis_errors(client, stream=stream, command="XTRIM"):
                removed: int = client.xtrim(stream, minid=str(minid), approximate=False)
        _log.info("trimmed %d entries of %s below %s", removed, stream, minid)
        return removed

    def restore(
        self,
        client: Client,
        stream: str,
        target_stream: str,
        *,
        progress: bool | None = None,
    ) -> int:
        """Write the archived entries of `stream` into `target_stream`, same IDs and fields.

        The archive is checked first (every listed file's SHA-256 and size, the manifest
        chain); a mismatch raises before anything is written. Entries the target already
        holds with the same ID and fields are kept, so a restore that was killed can be run
        again and goes on where it stopped. Restoring into `stream` itself after a trim
        refills it: the archived entries are put back below the live ones, in one atomic
        swap that keeps the consumer groups, their pending entries and the stream's
        counters, and loses no entry a producer adds meanwhile.

        Args:
            progress: show a progress bar (default: when stderr is a terminal).

        Returns:
            How many archived entries were written (0 when the target held them all).

        Raises:
            ArchiveError: the archive does not match its manifest (names the file).
            TargetExists: the target holds an entry with the same ID and other fields, or
                an entry inside the archived range that the archive lacks, or (another
                key than `stream`) it ends past archived entries it lacks. Nothing written.
        """
        return restore_stream(self.layout, client, stream, target_stream, progress=progress)

    # ---- query ---------------------------------------------------------------------------

    def duckdb(self, live: Client | None = None) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection with a view `events`: the archive, plus the live tail.

        With `live`, each archived stream's entries above its horizon are read from Redis
        (up to the last ID at that moment: one cut) and appended, so every event appears
        exactly once. Columns are the frame's, plus the hive partitions `stream`, `date`.
        """
        connection = duckdb.connect()
        # Each manifest read once: the files shown and the horizon the live tail starts
        # after must come from the same read, or an export in between would leave a gap.
        manifests = {stream: self.entries(stream) for stream in self.streams()}
        files = [e.file for entries in manifests.values() for e in entries]
        parts = []
        if files and isinstance(self.storage, LocalStorage):
            # Paths from the manifest travel as a Python list, never spliced into SQL text.
            paths = [self.storage.path(f) for f in files]
            archived = connection.read_parquet(paths, hive_partitioning=True, union_by_name=True)
            archived.create_view("archived")
            parts.append('SELECT * EXCLUDE ("fields") FROM archived')
        elif files:
            # Object storage: read through pyarrow.fs (DuckDB's httpfs is an extension that
            # would be downloaded at run time), into memory.
            connection.register("archived", self._archived_tables(files))
            parts.append("SELECT * FROM archived")
        if live is not None:
            tails: list[pa.Table] = []
            for stream, entries in manifests.items():
                horizon = StreamID.parse(entries[-1].last_id) if entries else None
                try:
                    info = stream_info(live, stream)
                except StreamNotFound:
                    continue  # deleted since: its history is all in the archive
                end = info.last_generated_id
                if horizon is not None and end <= horizon:
                    continue
                start = horizon.next() if horizon else None
                envelope = self._given or recorded_envelope(entries) or self.envelope
                tails.extend(
                    stream_tables(
                        live, stream, start=start, end=end, envelope=envelope, progress=False
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

    def _archived_tables(self, files: list[str]) -> pa.Table:
        tables = []
        for file in files:
            table = self.storage.read_table(file).drop_columns(["fields"])
            date = file.split("/date=", 1)[1].split("/", 1)[0]
            day = pa.array([date] * table.num_rows, pa.string()).cast(pa.date32())
            tables.append(table.append_column("date", day))
        return unify_tables(tables)

    def _verified_horizon(self, stream: str, entries: list[ManifestEntry]) -> StreamID:
        verified = self.layout.verified(stream)
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
        if verified.manifest_head != entries[-1].hash:
            raise TrimRefused(
                f"The archive of `{stream}` changed since it was verified (the manifest head "
                "differs); run verify() again before trimming.",
                stream=stream,
            )
        return StreamID.parse(verified.horizon)


def _role(client: Client, stream: str) -> str:
    """The role of the server that holds `stream` (in a cluster: the node of its slot)."""
    with redis_errors(client, command="INFO replication"):
        return str(node_for(client, stream).info("replication").get("role", "unknown"))


def _refuse_pending(client: Client, stream: str, minid: StreamID) -> None:
    for group in group_infos(client, stream):
        name = group["name"]
        if not group.get("pending"):
            continue
        with redis_errors(client, stream=stream, command="XPENDING"):
            summary = client.xpending(stream, group["raw_name"])
        lowest = summary.get("min")
        if lowest is not None and StreamID.parse(lowest) < minid:
            raise TrimRefused(
                f"Consumer group `{name}` of `{stream}` has {summary['pending']:,} pending "
                f"entries, the oldest {text(lowest)}, "
                f"below the trim point {minid}. Let the consumers acknowledge them (or "
                "XCLAIM and handle them), or pass allow_pending=True.",
                stream=stream,
            )


def _with_payload(table: pa.Table, envelope: Envelope) -> pa.Table:
    """`table` with column `payload`: each entry's payload as JSON text, from its raw fields."""
    name = envelope.payload.encode() if envelope.payload else None
    if name is None or envelope.decoder == "flat":
        return table
    raw = [dict(raw_pairs(flat)).get(name) for flat in table.column("fields").to_pylist()]
    texts = payload_texts(envelope, raw)  # JSON passes through as written
    return table.append_column("payload", pa.array(texts, pa.binary()))
