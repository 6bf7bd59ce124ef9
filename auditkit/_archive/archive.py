"""The Parquet archive: export (incremental, crash-safe, fenced), verify, trim, restore, query.

Layout (docs/archive-format.md specifies it for readers without auditkit):

    <root>/stream=<key>/month=<YYYY-MM>/<first id>_<last id>.e<epoch>.parquet
    <root>/_manifest/<key>/<epoch>.jsonl, <root>/_lease/<key>.lock

(layout.py names them and has the rules that keep writers from losing each other's
work). The root is a local folder or an object storage URL (`s3://bucket/prefix`);
storage.py gives both the same guarantees.

A file holds consecutive entries of one stream recorded in one UTC month, at most
`rows_per_file` of them and about `bytes_per_file` raw bytes. Each file has the decoded
frame columns and `fields`, the entries' original field/value pairs byte for byte.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from auditkit._archive.checkpoint import Anchor, Checkpoint, take_checkpoint, verified_heads
from auditkit._archive.export import (
    ExportReport,
    export_stream,
    recorded_envelope,
    recorded_privacy,
    require_format,
)
from auditkit._archive.identity import counter_problem, raw_pairs
from auditkit._archive.layout import ArchiveLayout
from auditkit._archive.manifest import Chain, ManifestEntry, append_record
from auditkit._archive.privacy import Privacy
from auditkit._archive.repair import RepairReport, repair_stream
from auditkit._archive.restore import restore_stream
from auditkit._archive.signing import KeySpec
from auditkit._archive.storage import LocalStorage, open_storage
from auditkit._archive.trim import TrimPlan, plan_trim
from auditkit._archive.verify import VerifyReport, acknowledged, check_offline, verify_archive
from auditkit._archive.witness import WitnessSpec
from auditkit._display import card_html, human_bytes
from auditkit._exceptions import ArchiveDamaged, ArchiveError, StreamNotFound, StreamRecreated
from auditkit._load.decode import empty_table, extract, finish, prepare
from auditkit._load.decoders import payload_texts
from auditkit._load.envelope import Envelope, EnvelopeSpec
from auditkit._load.reader import stream_tables
from auditkit._load.unify import unify_tables
from auditkit._logging import logger
from auditkit._redis.bounds import Bound, start_id
from auditkit._redis.connection import Client, redis_errors
from auditkit._redis.ids import StreamID, utc_now
from auditkit._redis.streams import ensure_stream
from auditkit._redis.xinfo import StreamInfo, stream_info

__all__ = ["Archive", "ExportReport", "RepairReport", "TrimPlan"]

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
        bytes_per_file: a file holds at most about this many bytes of raw entries (one
            entry more than that never: one larger entry alone makes a file).
        envelope: how to decode the entries into frame columns.
        drop: fields (or `payload.<path>`s) left out of the archive, e.g. `["email"]`.
        pseudonymize: fields (or `payload.<path>`s) replaced by `hmac:<hex>`, a keyed
            HMAC-SHA256: equal values stay equal, nothing of the original is written.
        key: the HMAC key (bytes or text). Never stored (its fingerprint is, to tell a
            wrong key): pass it again to export, verify, trim and query the live tail.

    The drop/pseudonymize rules are recorded in the archive with the files: a later
    export, verify, trim or live tail without rules uses the recorded ones (and refuses
    without the key when they pseudonymise); other rules than the recorded ones are
    refused.

    Example:
        >>> arc = Archive("archive/")
        >>> arc.export(r, "orders")
        <ExportReport orders: 6 rows in 1 file, horizon 1772503200000-0>
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
        bytes_per_file: int = 256 << 20,
        envelope: EnvelopeSpec = None,
        drop: Sequence[str] = (),
        pseudonymize: Sequence[str] = (),
        key: bytes | str | None = None,
    ) -> None:
        if isinstance(rows_per_file, bool) or not isinstance(rows_per_file, int):
            raise TypeError(f"rows_per_file must be an int, got `{rows_per_file!r}`.")
        if rows_per_file < 1:
            raise ValueError(f"rows_per_file must be at least 1, got `{rows_per_file}`.")
        if isinstance(bytes_per_file, bool) or not isinstance(bytes_per_file, int):
            raise TypeError(f"bytes_per_file must be an int, got `{bytes_per_file!r}`.")
        if bytes_per_file < 1:
            raise ValueError(f"bytes_per_file must be at least 1, got `{bytes_per_file}`.")
        self.storage = open_storage(root, filesystem)
        self.layout = ArchiveLayout(self.storage)
        self.root: Path | str = (
            self.storage.root if isinstance(self.storage, LocalStorage) else self.storage.url
        )
        self.rows_per_file = rows_per_file
        self.bytes_per_file = bytes_per_file
        # None: each stream's export and live tail use the envelope it was archived with.
        self._given = Envelope.of(envelope) if envelope is not None else None
        self.envelope = self._given or Envelope()
        self.privacy = Privacy.of(
            drop, pseudonymize, key, self.envelope.payload, self.envelope.decoder_name
        )
        # Chain heads a verify by this object found ok: checkpoint() need not read the
        # files again for them.
        self._verified_heads: dict[str, str] = {}

    def __repr__(self) -> str:
        # No I/O (a repr must not touch object storage) and no credentials.
        return f"<Archive {str(self.root)!r}>"

    def _repr_html_(self) -> str:
        # What this object was made with: no I/O (object storage may be slow or down), no
        # key (its presence only).
        privacy = self.privacy
        facts: list[tuple[str, object]] = [
            ("root", str(self.root)),
            (
                "files",
                f"at most {self.rows_per_file:,} entries, about "
                f"{human_bytes(self.bytes_per_file)} of raw entries each",
            ),
            (
                "envelope",
                repr(self._given)
                if self._given is not None
                else "as recorded with each stream (the default for a new one)",
            ),
        ]
        if privacy.drop:
            facts.append(("dropped", ", ".join(privacy.drop)))
        if privacy.pseudonymize:
            facts.append(("pseudonymised", ", ".join(privacy.pseudonymize)))
        facts.append(("privacy key", "given (never shown)" if privacy.key else "none"))
        facts.append(("streams", "see .streams(); .verify() proves them"))
        return card_html("Archive", facts=facts)

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
        self,
        *,
        stream: str | None = None,
        aggregate_id: str | None = None,
        live: Client | None = None,
    ) -> pa.Table:
        """The archived events as one table (the frame columns), optionally filtered.

        With `live` (a Redis client) and a `stream`, the stream's whole history: its
        archived events, then its live entries above the archive's horizon, read as
        `duckdb(live=)` reads them (one cut, the archive's envelope and privacy rules), so
        every event appears once.
        """
        if live is not None and stream is None:
            raise ValueError("events_table(live=) reads one stream's live tail: name stream=.")
        chain = self.layout.read(stream) if stream is not None else None
        entries = chain.files if chain is not None else None
        if entries is None:
            entries = [e for s in self.streams() for e in self.entries(s)]
        tables = []
        if entries:
            filters = [("aggregate_id", "==", aggregate_id)] if aggregate_id is not None else None
            read = [self._read_checked(e, filters=filters) for e in entries]
            tables.append(unify_tables(read))
        if live is not None and stream is not None and chain is not None:
            rule = self.privacy.for_envelope(*self._decoding(chain.files)).for_archive(
                recorded_privacy(chain.files), bool(chain.files), stream, "the live tail"
            )
            for tail in self._live_tail(live, stream, chain, rule):
                if aggregate_id is not None:
                    tail = tail.filter(pc.equal(tail.column("aggregate_id"), aggregate_id))
                tables.append(tail)
        if not tables:
            return empty_table()
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
                table = self._read_checked(entry)
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

        Incremental: a second run with nothing new writes nothing. Crash-safe: a run after
        a crash removes what the crashed one left unlisted and writes it again. Memory is
        bounded by `rows_per_file` and `bytes_per_file`, whatever the stream's length.

        On Redis 7, entries that left the stream before an export could read them (an
        XDEL, a MAXLEN cap) are counted, recorded in the archive's ledger with the range
        they lie in, and reported in `ExportReport.lost` (see `losses`, `acknowledge`).

        Raises:
            StreamRecreated: the live stream is not the one archived (deleted and created
                again, or an archived entry now holds other data); nothing is written.
            ArchiveDamaged: the manifest was lost, cut short or edited; nothing is written
                or removed (see `repair`).
            ArchiveBusy: another process is exporting or trimming this stream.
            ArchiveFenced: this process lost its lease while paused; it stopped.
        """
        return export_stream(
            self.layout,
            client,
            stream,
            envelope=self._given,
            privacy=self.privacy,
            rows_per_file=self.rows_per_file,
            bytes_per_file=self.bytes_per_file,
            progress=progress,
        )

    # ---- verify, trim, the ledger, repair, restore ---------------------------------------

    def verify(
        self,
        client: Client | None = None,
        stream: str | None = None,
        *,
        since: Checkpoint | str | bytes | None = None,
        public_key: KeySpec | None = None,
        witness: WitnessSpec | None = None,
        progress: bool | None = None,
    ) -> VerifyReport:
        """Prove the archive complete and untouched; a report with `.ok` and `.findings`.

        Offline (no client): every file present, readable, matching its SHA-256 and row
        count; the manifest chain intact and as long as its header says; ID ranges without
        overlap and each file starting where the previous ended; no file a manifest should
        list and does not. With a client, also: live entries inside the archive's range
        hold the same data; the stream's counters show it is the stream archived; on
        Redis 7, entries that left the stream before they were archived are recorded in
        the ledger. Every loss the ledger holds fails the report until acknowledged.
        verify reads one consistent view: an export at work meanwhile does not fail it.

        The chain proves the archive consistent with itself only: a writer can rewrite a
        file and recompute every hash after it, or put an older copy back. Against what
        was kept outside it, the archive must still extend each checkpoint (finding
        `checkpoint-not-extended`, critical, saying rollback or rewrite).

        Args:
            since: a `Checkpoint` taken earlier (or its text): the chain must still have,
                at the checkpoint's length, its head hash, entry count and last ID.
            public_key: the Ed25519 public key (object, or PEM file path) that must have
                signed the checkpoint and the witnessed ones (`checkpoint-signature`).
            witness: where checkpoints were witnessed (a Redis client or `redis://` URL,
                a folder or object storage URL): the archive must extend the latest one
                of each stream verified.
            progress: show progress bars (files hashed, live entries compared); default:
                in a notebook and when stderr is a terminal.

        Example:
            >>> arc = Archive("archive/")
            >>> _ = arc.export(r, "orders")
            >>> kept = str(arc.checkpoint("orders"))   # give it to the auditor
            >>> report = arc.verify(r, "orders", since=kept)
            >>> report.ok, list(report.findings["check"])
            (True, ['checkpoint-extended'])
        """
        anchor = Anchor.of(since, public_key, witness, stream=stream, archive=self.storage)
        report = verify_archive(
            self.layout, self.privacy, client, stream, anchor, progress=progress
        )
        if report.ok:
            self._verified_heads.update(verified_heads(self.layout, report.horizons))
        if anchor is None or anchor.since is None or anchor.since.stream in report.horizons:
            return report
        # The checkpoint's stream is gone from the archive altogether: rolled back to before
        # it, or its manifest removed. (A witness's other streams are not looked for: one
        # witness may serve several archives; name the stream to check it.)
        more = verify_archive(
            self.layout, self.privacy, client, anchor.since.stream, anchor, progress=progress
        )
        return VerifyReport(
            pd.concat([report.findings, more.findings], ignore_index=True),
            {**report.horizons, **more.horizons},
        )

    def checkpoint(
        self,
        stream: str,
        *,
        signing_key: KeySpec | None = None,
        witness: WitnessSpec | None = None,
    ) -> Checkpoint:
        """The head of the stream's manifest chain, as a small text to keep elsewhere.

        Keep `str(checkpoint)` outside the archive (with the auditor, in a ticket, in a
        witness): `verify(since=checkpoint)` later fails unless the archive still extends
        it, so a rewritten or rolled-back archive shows. The files and chain are checked
        first (as `verify` does offline): a checkpoint is never taken of a broken archive.

        Args:
            signing_key: an Ed25519 private key (a `cryptography` key object, or the path
                of an unencrypted PEM file) to sign the checkpoint with; needs
                `pip install 'auditkit[signing]'`.
            witness: also keep the checkpoint where the archive's writer cannot rewrite
                it: a Redis client or `redis://` URL (an XADD to
                `auditkit:witness:<stream>`), or a folder or object storage URL (a file of
                its own). Refused (`WitnessRefused`) when the archive does not extend the
                latest checkpoint already there.

        Raises:
            ArchiveError: nothing of the stream is archived, or the archive fails its checks.
            WitnessRefused: the archive does not extend the witness's latest checkpoint.

        Example:
            >>> arc = Archive("archive/")
            >>> _ = arc.export(r, "orders")
            >>> checkpoint = arc.checkpoint("orders", witness=r)
            >>> r.xlen("auditkit:witness:orders")
            1
        """

        def check_files(checkpoint: Checkpoint) -> str | None:
            if self._verified_heads.get(stream) == checkpoint.head:
                return None  # verified just now by this Archive
            chain, files = self.layout.snapshot(stream)
            broken = check_offline(self.layout, stream, chain, files)
            if broken.empty:
                return None
            first = broken.iloc[0]
            return f"{first['check']}: {first['detail']} ({len(broken)} finding(s))"

        return take_checkpoint(
            self.layout,
            stream,
            check_files=check_files,
            signing_key=signing_key,
            witness=witness,
        )

    def trim(
        self,
        client: Client,
        stream: str,
        *,
        before: Bound = None,
        allow_pending: bool = False,
        allow_undelivered: bool = False,
        dry_run: bool = False,
        since: Checkpoint | str | bytes | None = None,
        public_key: KeySpec | None = None,
        witness: WitnessSpec | None = None,
        progress: bool | None = None,
    ) -> int:
        """XTRIM MINID the stream up to its archived horizon, re-verified now, never beyond.

        Under the stream's lease, the manifest is read and checked again (chain, every
        file's SHA-256 and rows), every live entry that would go is compared byte for byte
        with its archived copy, and the stream's counters must show it is the stream
        archived. No marker left by an earlier verify is trusted.

        Args:
            before: trim only entries below this ID or time (never above the horizon).
            allow_pending: trim even when consumer groups have pending entries (delivered,
                not acknowledged) below the cut; they become unreadable by XCLAIM.
            allow_undelivered: trim even when consumer groups have not yet been delivered
                entries below the cut; their consumers never see them.
            dry_run: check everything and return how many entries would go, removing none
                (`plan_trim` gives the details).
            since, public_key, witness: as for `verify`: refuse unless the archive still
                extends the checkpoint kept outside it (and the witness's latest), signed by
                this key; trimming leaves the archive the only copy.
            progress: show progress bars (files hashed again, live entries compared);
                default: in a notebook and when stderr is a terminal.

        Returns:
            How many entries Redis removed (with `dry_run`, would remove).

        Raises:
            TrimRefused: nothing archived, the archive does not match its manifest, a live
                entry differs from its archived copy, the stream was recreated, a recorded
                loss is not acknowledged, groups hold pending or undelivered entries below
                the cut, the server is a replica, or the archive does not extend `since`
                or the witness's checkpoint.
        """
        plan, removed = self._trim(
            client,
            stream,
            before,
            allow_pending,
            allow_undelivered,
            execute=not dry_run,
            anchor=Anchor.of(since, public_key, witness, stream=stream, archive=self.storage),
            progress=progress,
        )
        return plan.entries if dry_run else removed

    def plan_trim(
        self,
        client: Client,
        stream: str,
        *,
        before: Bound = None,
        allow_pending: bool = False,
        allow_undelivered: bool = False,
        since: Checkpoint | str | bytes | None = None,
        public_key: KeySpec | None = None,
        witness: WitnessSpec | None = None,
        progress: bool | None = None,
    ) -> TrimPlan:
        """What `trim` would remove, after every check it makes; nothing is removed.

        `str(plan)` says it in one line, as `auditkit trim --dry-run` prints it.
        """
        return self._trim(
            client,
            stream,
            before,
            allow_pending,
            allow_undelivered,
            execute=False,
            anchor=Anchor.of(since, public_key, witness, stream=stream, archive=self.storage),
            progress=progress,
        )[0]

    def _trim(
        self,
        client: Client,
        stream: str,
        before: Bound,
        allow_pending: bool,
        allow_undelivered: bool,
        *,
        execute: bool,
        anchor: Anchor | None = None,
        progress: bool | None = None,
    ) -> tuple[TrimPlan, int]:
        limit = start_id(before)  # the cut is checked before anything reaches Redis
        ensure_stream(client, stream)
        removed = 0
        with self.layout.writer(stream) as writer:
            plan = plan_trim(
                self.layout,
                writer,
                self.privacy,
                client,
                limit=limit,
                allow_pending=allow_pending,
                allow_undelivered=allow_undelivered,
                anchor=anchor,
                progress=progress,
            )
            if execute and plan.entries:
                writer.check()
                with redis_errors(client, stream=stream, command="XTRIM"):
                    removed = client.xtrim(stream, minid=plan.minid, approximate=False)
                _log.info("trimmed %d entries of %s below %s", removed, stream, plan.minid)
        return plan, removed

    def losses(self, stream: str) -> pd.DataFrame:
        """The stream's loss ledger: one row per recorded loss, acknowledged or not.

        Columns: `record` (its position in the chain, what `acknowledge` takes), `count`,
        `after`, `before` (the loss lies between these IDs; None is open), `seen_by`,
        `seen_at`, `acknowledged` (bool), `reason`, `acknowledged_at`.
        """
        chain = self.layout.read(stream)
        acks = acknowledged(chain)
        rows = []
        for record in chain.ledger:
            if record.kind != "loss":
                continue
            ack = acks.get(record.n)
            rows.append(
                {
                    "record": record.n,
                    "count": int(record.detail.get("count", 0)),
                    "after": record.detail.get("after"),
                    "before": record.detail.get("before"),
                    "seen_by": record.detail.get("seen_by"),
                    "seen_at": record.detail.get("seen_at"),
                    "acknowledged": ack is not None,
                    "reason": ack.detail.get("reason") if ack else None,
                    "acknowledged_at": ack.detail.get("at") if ack else None,
                }
            )
        columns = [
            "record", "count", "after", "before", "seen_by", "seen_at",
            "acknowledged", "reason", "acknowledged_at",
        ]  # fmt: skip
        return pd.DataFrame(rows, columns=columns)

    def acknowledge(self, stream: str, record: int, *, reason: str) -> None:
        """Acknowledge a recorded loss, with the reason, in the chain: verify then lists it
        as acknowledged and is ok, and trim goes ahead. Nothing is acknowledged implicitly.

        Args:
            record: the loss record's position (`losses(stream)["record"]`).
            reason: why the loss is accepted (who looked, what was found); kept for auditors.
        """
        if not reason or not reason.strip():
            raise ValueError("acknowledge needs a reason: it is recorded for auditors.")
        require_format(self.layout)
        with self.layout.writer(stream) as writer:
            writer.require_sound("acknowledged")
            chain = writer.chain
            losses = {r.n: r for r in chain.ledger if r.kind == "loss"}
            if record not in losses:
                shown = ", ".join(map(str, losses)) or "none"
                raise ArchiveError(
                    f"Record {record} of `{stream}` is not a recorded loss (its losses: "
                    f"{shown}); see Archive.losses (on the command line, `auditkit verify`).",
                    stream=stream,
                )
            if record in acknowledged(chain):
                raise ArchiveError(
                    f"The loss at record {record} of `{stream}` is already acknowledged.",
                    stream=stream,
                )
            records = list(chain.records)
            detail = {"loss": record, "reason": reason.strip(), "at": utc_now()}
            records.append(append_record(records, "acknowledged", stream, detail, writer.epoch))
            writer.save(records)

    def repair(self, stream: str, *, reason: str) -> RepairReport:
        """Rebuild the stream's manifest from its files; the chain records that it was.

        For a manifest lost, cut short or damaged, and to upgrade a stream an earlier
        auditkit archived (format 1). Every file is read and hashed; copies of entries
        another file holds are left out (after checking they are the same); overlapping
        files that differ stop the repair. The rebuilt chain starts with a `rebuilt`
        record (the reason, the time, the head it replaces), which verify reports.
        """
        return repair_stream(self.layout, stream, reason)

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
        exactly once; the archive's privacy rules apply to them as to the files (and a
        stream whose rules pseudonymise needs the key). Columns are the frame's, plus
        `date` (the UTC day of the record time).
        """
        connection = duckdb.connect()
        # Each manifest read once: the files shown and the horizon the live tail starts
        # after must come from the same read, or an export in between would leave a gap.
        chains = {stream: self.layout.read(stream) for stream in self.streams()}
        manifests = {stream: chain.files for stream, chain in chains.items()}
        every = [e for entries in manifests.values() for e in entries]
        files = [e.file for e in every]
        parts = []
        tails: list[pa.Table] = []
        if live is not None:
            # Before anything is read: a stream whose rules cannot be applied is refused.
            rules = {
                stream: self.privacy.for_envelope(*self._decoding(entries)).for_archive(
                    recorded_privacy(entries), bool(entries), stream, "the live tail"
                )
                for stream, entries in manifests.items()
            }
        root = str(self.root)
        if files and isinstance(self.storage, LocalStorage) and _plain(root, files):
            # An explicit list of the manifest's files, relative to the root set as the
            # search path (bound as a parameter): nothing from keys or paths becomes a
            # pattern or SQL text.
            for entry in every:  # DuckDB reads them next: each must be what was archived
                self._check_file(entry)
            connection.execute("SET file_search_path = ?", [root])
            archived = connection.read_parquet(files, union_by_name=True)
            archived.create_view("archived")
            parts.append('SELECT * EXCLUDE ("fields"), CAST(ts AS DATE) AS "date" FROM archived')
        elif files:
            # Object storage (DuckDB's httpfs is an extension that would be downloaded at
            # run time), or paths DuckDB would read as patterns: read through pyarrow.
            connection.register("archived", self._archived_tables(every))
            parts.append("SELECT * FROM archived")
        if live is not None:
            for stream in manifests:
                tails.extend(self._live_tail(live, stream, chains[stream], rules[stream]))
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

    def _live_tail(
        self, live: Client, stream: str, chain: Chain, rule: Privacy
    ) -> Iterator[pa.Table]:
        """The stream's live entries above the archive's horizon, up to its last ID now,
        with the archive's envelope and privacy rules; none when it was deleted since."""
        entries = chain.files
        horizon = StreamID.parse(entries[-1].last_id) if entries else None
        try:
            info = stream_info(live, stream)
        except StreamNotFound:
            return  # deleted since: its history is all in the archive
        _require_same(stream, chain, info)
        end = info.last_generated_id
        if horizon is not None and end <= horizon:
            return
        envelope = self._given or recorded_envelope(entries) or self.envelope
        for table in stream_tables(
            live,
            stream,
            start=horizon.next() if horizon else None,
            end=end,
            envelope=envelope,
            progress=False,
            keep_fields=rule.active,
        ):
            yield _private(table, rule, envelope)

    def _decoding(self, entries: list[ManifestEntry]) -> tuple[str | None, str]:
        envelope = self._given or recorded_envelope(entries) or self.envelope
        return envelope.payload, envelope.decoder_name

    def _check_file(self, entry: ManifestEntry) -> None:
        """Raise ArchiveDamaged unless the file is there with the SHA-256 and size its
        manifest entry records: nothing is answered from a changed or missing file."""
        try:
            digest, size = self.storage.sha256(entry.file)
        except OSError:
            raise self._damaged(entry, "is missing or unreadable") from None
        if (digest, size) != (entry.sha256, entry.bytes):
            raise self._damaged(entry, "was changed")

    def _read_checked(self, entry: ManifestEntry, **options: Any) -> pa.Table:
        """A file's table, read once from bytes that match its manifest entry."""
        try:
            data = self.storage.read_bytes(entry.file)
        except OSError:
            data = None
        if data is None:
            raise self._damaged(entry, "is missing or unreadable")
        if len(data) != entry.bytes or hashlib.sha256(data).hexdigest() != entry.sha256:
            raise self._damaged(entry, "was changed")
        return pq.read_table(pa.BufferReader(data), **options)

    def _damaged(self, entry: ManifestEntry, what: str) -> ArchiveDamaged:
        stream = entry.stream
        return ArchiveDamaged(
            f"The archive's file `{entry.file}` of `{stream}` {what}: it is not what the "
            "manifest records (size and SHA-256), so nothing is answered from it. Run "
            "`auditkit verify` for the full report, then `auditkit repair` or restore the "
            "file from a backup.",
            stream=stream,
        )

    def _archived_tables(self, entries: list[ManifestEntry]) -> pa.Table:
        tables = []
        for entry in entries:
            table = self._read_checked(entry).drop_columns(["fields"])
            day = pc.cast(pc.cast(table.column("ts"), pa.timestamp("ms", "UTC")), pa.date32())
            tables.append(table.append_column("date", day))
        return unify_tables(tables)


def _require_same(stream: str, chain: Chain, info: StreamInfo) -> None:
    """Refuse a live tail from a stream that is not the one archived (its counters say)."""
    files = chain.files
    if not files:
        return
    horizon = StreamID.parse(files[-1].last_id)
    live_below = 0 if info.first_id is None or info.first_id > horizon else None
    state = chain.header.state if chain.header is not None else {}
    problem = counter_problem(info, files, chain.ledger, state, live_below)
    if problem is not None:
        raise StreamRecreated(
            f"Stream `{stream}` is not the stream archived: {problem}. Its live tail would "
            "mix two streams' events; query the archive alone (without live=, on the "
            "command line without --live).",
            stream=stream,
        )


def _plain(root: str, files: list[str]) -> bool:
    """Whether DuckDB reads these paths as they are: no pattern character, no list comma."""
    return not any(c in text for text in [root, *files] for c in "*?[]{},")


def _private(table: pa.Table, privacy: Privacy, envelope: Envelope) -> pa.Table:
    """A live tail table with the archive's privacy rules applied, as export applies them."""
    if not privacy.active:
        return table
    ids = table.column("id").to_pylist()
    raw = table.column("fields").to_pylist()
    stream = table.column("stream")[0].as_py() if table.num_rows else ""
    chunk = [[i.encode(), privacy.apply(flat)] for i, flat in zip(ids, raw, strict=True)]
    return finish(prepare(extract(chunk, stream), envelope, keep_fields=False))


def _with_payload(table: pa.Table, envelope: Envelope) -> pa.Table:
    """`table` with column `payload`: each entry's payload as JSON text, from its raw fields."""
    name = envelope.payload.encode() if envelope.payload else None
    if name is None or envelope.decoder == "flat":
        return table
    raw = [dict(raw_pairs(flat)).get(name) for flat in table.column("fields").to_pylist()]
    texts = payload_texts(envelope, raw)  # JSON passes through as written
    return table.append_column("payload", pa.array(texts, pa.binary()))
