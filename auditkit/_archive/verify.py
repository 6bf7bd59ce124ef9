"""verify(): prove an archive complete and untouched, and compare it with the live stream.

verify reads one consistent view per stream (the data files, then the manifest: layout.py)
and writes nothing but the losses it finds that no export recorded yet, in the ledger.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Protocol

import pandas as pd

from auditkit._archive.checkpoint import Anchor, check_anchor
from auditkit._archive.identity import (
    archived_rows,
    compare_live,
    counter_problem,
    recorded_losses,
)
from auditkit._archive.layout import ArchiveLayout
from auditkit._archive.manifest import Chain, LedgerRecord, ManifestEntry, append_record
from auditkit._archive.privacy import Privacy
from auditkit._display import card_html
from auditkit._exceptions import ArchiveBusy, ArchiveError
from auditkit._findings import FAILING, Findings, findings_html
from auditkit._progress import progress_bar
from auditkit._redis.connection import Client, read_with_retry
from auditkit._redis.ids import StreamID, utc_now
from auditkit._redis.pages import iter_pages
from auditkit._redis.xinfo import StreamInfo, stream_info

__all__ = ["VerifyReport", "acknowledged", "check_offline", "verify_archive"]


@dataclass
class VerifyReport:
    """The result of `Archive.verify`: `ok` and one row per finding."""

    findings: pd.DataFrame
    horizons: dict[str, str | None] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """No finding of severity `error` or `critical`."""
        return not self.findings["severity"].isin(FAILING).any()

    def __bool__(self) -> bool:
        return self.ok

    def __repr__(self) -> str:
        state = "ok" if self.ok else "FAILED"
        counts = self.findings["severity"].value_counts().to_dict()
        return f"<VerifyReport {state} streams={list(self.horizons)} findings={counts}>"

    def _repr_html_(self) -> str:
        status = ("ok", "#16a34a") if self.ok else ("FAILED", "#dc2626")
        facts = [
            (f"stream {stream}", f"archived up to {horizon}" if horizon else "nothing archived")
            for stream, horizon in self.horizons.items()
        ]
        return card_html(
            "Archive verification",
            status=status,
            facts=facts,
            sections=[("Findings", findings_html(self.findings))],
        )


class Note(Protocol):
    """How the checks report a finding: the entry it concerns comes last, when there is one."""

    def __call__(
        self, check: str, severity: str, detail: str, entry_id: str | None = None
    ) -> None: ...


def _note(found: Findings) -> Note:
    def note(check: str, severity: str, detail: str, entry_id: str | None = None) -> None:
        found.add(check, severity, detail, id=entry_id)

    return note


def verify_archive(
    layout: ArchiveLayout,
    privacy: Privacy,
    client: Client | None,
    stream: str | None,
    anchor: Anchor | None = None,
    *,
    progress: bool | None = False,
) -> VerifyReport:
    """`Archive.verify`: every check, per stream (a bar each for its files and live entries)."""
    frames: list[pd.DataFrame] = []
    horizons: dict[str, str | None] = {}
    old = layout.format1_manifests()
    if old:
        found = Findings(stream)
        found.add(
            "archive-format",
            "error",
            f"{len(old)} manifest(s) such as `{old[0]}` are in format 1 (an earlier auditkit): "
            "run `auditkit repair` on each stream to upgrade it",
        )
        frames.append(found.frame())
    if stream is None:
        for folder in layout.orphans():
            found = Findings(None)
            found.add(
                "manifest-missing",
                "critical",
                f"`{folder}` holds archived files but no manifest names its stream: the "
                "manifest was lost. Run `auditkit repair STREAM --reason TEXT` (the stream "
                "the folder is named after) to rebuild it from the files",
            )
            frames.append(found.frame())
    for key in [stream] if stream is not None else layout.streams():
        found = Findings(key)
        note = _note(found)
        chain, files = layout.snapshot(key)
        entries = _check_manifest(layout, key, chain, note)
        _check_files(layout, entries, note, progress=progress, desc=f"verify {key} files")
        _check_unlisted(layout, key, chain, files, note)
        horizons[key] = entries[-1].last_id if entries else None
        if anchor is not None:
            check_anchor(layout, key, anchor, note)
        # An archive that fails its checkpoint was rewritten or rolled back: what it lacks
        # is no loss of the stream's, and recording one would bury the evidence.
        sound = not any(
            row["severity"] in FAILING and str(row["check"]).startswith(("checkpoint", "manifest"))
            for row in found.rows
        )
        if client is not None and chain.header is not None:
            _check_live(layout, privacy, client, key, chain, note, record=sound, progress=progress)
        _check_ledger(chain, note)
        frames.append(found.frame())
    frame = pd.concat(frames, ignore_index=True) if frames else Findings().frame()
    return VerifyReport(frame, horizons)


def check_offline(
    layout: ArchiveLayout,
    stream: str,
    chain: Chain,
    files: list[str],
    *,
    progress: bool | None = False,
) -> pd.DataFrame:
    """The file and manifest checks alone (no Redis): the failing findings."""
    found = Findings(stream)
    note = _note(found)
    entries = _check_manifest(layout, stream, chain, note)
    _check_files(layout, entries, note, progress=progress, desc=f"check {stream} files")
    _check_unlisted(layout, stream, chain, files, note)
    frame = found.frame()
    return frame[frame["severity"].isin(FAILING)]


def _check_manifest(
    layout: ArchiveLayout, stream: str, chain: Chain, note: Note
) -> list[ManifestEntry]:
    if chain.header is None and not chain.records:
        files = layout.stream_files(stream)
        if files:
            note(
                "manifest-missing",
                "critical",
                f"{len(files)} archived file(s) of `{stream}` but no manifest under "
                f"{layout.paths(stream).manifests}/: it was lost. Run `auditkit repair "
                f"{stream} --reason TEXT` to rebuild it from the files",
            )
        else:
            note(
                "manifest-missing",
                "error",
                f"no manifest of `{stream}` under {layout.paths(stream).manifests}/ and no file",
            )
        return []
    for number in chain.unreadable:
        note("manifest-unreadable", "critical", f"line {number} is not a manifest record")
    previous_hash = "0" * 64
    for position, record in enumerate(chain.records):
        label = record.file if isinstance(record, ManifestEntry) else record.kind
        first = record.first_id if isinstance(record, ManifestEntry) else None
        if record.hash != record.sealed().hash:
            note(
                "manifest-chain",
                "critical",
                f"record {position} ({label}) was edited: its hash does not match its content",
                first,
            )
        if record.prev != previous_hash or record.n != position:
            note(
                "manifest-chain",
                "critical",
                f"record {position} ({label}) does not follow record {position - 1}: the chain "
                "is broken (a record was inserted, removed or reordered)",
                first,
            )
        previous_hash = record.hash
    header = chain.header
    if header is not None and (header.size, header.head) != (len(chain.records), chain.head):
        note(
            "manifest-cut",
            "critical",
            f"the manifest's header records {header.size} record(s), the chain holds "
            f"{len(chain.records)}: records were cut from its end or added by hand",
        )
    entries = chain.files
    for before, entry in itertools.pairwise(entries):
        if StreamID.parse(entry.first_id) <= StreamID.parse(before.last_id):
            note(
                "range-overlap",
                "error",
                f"{entry.file} starts at {entry.first_id}, not after {before.last_id} where "
                f"{before.file} ends",
                entry.first_id,
            )
        elif entry.prev_last_id != before.last_id:
            note(
                "range-gap",
                "error",
                f"{entry.file} was exported after {entry.prev_last_id}, but the file before it "
                f"ends at {before.last_id}",
                entry.first_id,
            )
    return entries


def _check_files(
    layout: ArchiveLayout,
    entries: list[ManifestEntry],
    note: Note,
    *,
    progress: bool | None = False,
    desc: str = "",
) -> None:
    total = sum(entry.rows for entry in entries)
    with progress_bar(total=total, desc=desc, unit="entry", enabled=progress) as bar:
        for entry in entries:
            _check_file(layout, entry, note)
            bar.update(entry.rows)


def _check_file(layout: ArchiveLayout, entry: ManifestEntry, note: Note) -> None:
    """One file: present, its SHA-256 and size, its IDs as the manifest lists them."""
    storage = layout.storage
    if not storage.exists(entry.file):
        note(
            "file-missing",
            "critical",
            f"{entry.file} ({entry.rows:,} entries) is gone",
            entry.first_id,
        )
        return
    digest, size = storage.sha256(entry.file)
    if digest != entry.sha256 or size != entry.bytes:
        note(
            "file-changed",
            "critical",
            f"{entry.file} does not match its SHA-256 in the manifest",
            entry.first_id,
        )
        return
    try:
        ids = storage.read_table(entry.file, columns=["id"]).column("id")
    except Exception as exc:  # a file that parses no more is a finding, not a crash
        note("file-unreadable", "critical", f"{entry.file}: {exc}", entry.first_id)
        return
    if (
        len(ids) != entry.rows
        or ids[0].as_py() != entry.first_id
        or ids[-1].as_py() != entry.last_id
    ):
        note(
            "file-content",
            "critical",
            f"{entry.file} holds {len(ids):,} entries, not the {entry.rows:,} "
            f"({entry.first_id}..{entry.last_id}) the manifest lists",
            entry.first_id,
        )


def _check_unlisted(
    layout: ArchiveLayout, stream: str, chain: Chain, files: list[str], note: Note
) -> None:
    unlisted = layout.unlisted(stream, chain, files)
    for relative, reason in unlisted.lost:
        note(
            "file-unlisted",
            "error",
            f"{relative} is not in the manifest, which should list it ({reason}): a manifest "
            "was lost or cut short, or the file was added by hand",
        )
    for relative in unlisted.leftovers:
        note(
            "file-leftover",
            "warning",
            f"{relative} was left by an interrupted writer or one that lost its lease; the "
            "manifest does not list it and the next export removes it (a reader globbing the "
            "folder instead of reading the manifest would count its entries twice)",
        )
    for relative in unlisted.in_flight:
        note(
            "file-in-flight",
            "info",
            f"{relative} lies past the manifest's end: an export is writing it (or was "
            "interrupted, and the next export removes it)",
        )


def _check_live(
    layout: ArchiveLayout,
    privacy: Privacy,
    client: Client,
    stream: str,
    chain: Chain,
    note: Note,
    *,
    record: bool = True,
    progress: bool | None = False,
) -> None:
    exists = read_with_retry(client, lambda: client.exists(stream), stream=stream, command="EXISTS")
    if not exists:
        note(
            "stream-deleted",
            "info",
            "the live stream no longer exists; the archive holds its history",
        )
        return
    info = stream_info(client, stream)
    files = chain.files
    try:
        rules = privacy.for_files(files).for_archive(
            _recorded_rules(files), bool(files), stream, "verify"
        )
    except ArchiveError as exc:
        note("content-not-compared", "error", f"{exc} Live entries were counted, not compared.")
        rules = None
    horizon = StreamID.parse(files[-1].last_id) if files else None
    # Every live entry is at or below the horizon when nothing was added since the export.
    total = info.length if horizon is not None and info.last_generated_id <= horizon else None
    with progress_bar(
        total=total, desc=f"verify {stream} live", unit="entry", enabled=progress
    ) as bar:
        live = compare_live(layout, rules, client, stream, files, info, on_page=bar.update)
    state = chain.header.state if chain.header is not None else {}
    # A damaged chain's row counts prove nothing about the stream: its findings say so.
    damaged = bool(layout.problems(stream, chain))
    problem = (
        None if damaged else counter_problem(info, files, chain.ledger, state, live.live_below)
    )
    if problem is not None:
        note("stream-recreated", "critical", problem, files[-1].last_id if files else None)
    for entry_id, detail in live.conflicts:
        note("conflict", "critical", detail, entry_id)
    if info.entries_added is None:
        note(
            "loss-unknown",
            "info",
            "the server (Redis < 7) reports no entries-added counter: entries deleted or "
            "trimmed before they were archived cannot be counted",
        )
        return
    if problem is not None or damaged:
        return
    missing = (
        info.entries_added
        - archived_rows(files)
        - recorded_losses(chain.ledger)
        - (info.length - live.live_below)
    )
    if missing > 0:
        _record_loss(layout, client, stream, info, files, missing, note, record=record)


def _record_loss(
    layout: ArchiveLayout,
    client: Client,
    stream: str,
    info: StreamInfo,
    files: list[ManifestEntry],
    missing: int,
    note: Note,
    *,
    record: bool,
) -> None:
    """A loss no export recorded yet: entries that left the stream after the archive's end
    before they could be archived. Recorded in the ledger (when no writer is at work, and
    the archive passed its other checks)."""
    horizon = StreamID.parse(files[-1].last_id) if files else None
    first_live = _first_above(client, stream, horizon)
    deleted = info.max_deleted_entry_id
    # Before the first live entry only when Redis says nothing above it was deleted (an
    # XDEL among the live entries lies after it).
    before = (
        first_live
        if first_live is not None and deleted is not None and deleted < first_live
        else None
    )
    detail = {
        "count": missing,
        "after": str(horizon) if horizon is not None else None,
        "before": str(before) if before is not None else None,
        "through": str(info.last_generated_id),
        "max_deleted_entry_id": (
            str(info.max_deleted_entry_id) if info.max_deleted_entry_id is not None else None
        ),
        "seen_by": "verify",
        "seen_at": utc_now(),
    }
    where = f"({detail['after'] or '-'}, {detail['before'] or '+'})"
    text = (
        f"{missing:,} entries left the stream in {where} before they could be archived "
        f"(entries-added {info.entries_added:,}, archived {archived_rows(files):,}, live "
        f"{info.length:,}); or an older copy of the archive was put back, which "
        "`auditkit verify --since CHECKPOINT` tells"
    )
    try:
        if not record:
            raise ArchiveBusy("the archive failed its checks", stream=stream)
        with layout.writer(stream) as writer:
            records = list(writer.chain.records)
            if writer.layout.problems(stream, writer.chain) or writer.chain.files != files:
                raise ArchiveBusy("the archive changed while verifying", stream=stream)
            records.append(append_record(records, "loss", stream, detail, writer.epoch))
            writer.save(records)
        text += f"; recorded in the ledger as record {records[-1].n}"
        entry = records[-1].n
    except ArchiveBusy:
        text += (
            "; not recorded now (a writer is at work, or the archive failed its checks): "
            "the next export records it"
        )
        entry = None
    note(
        "loss-recorded",
        "error",
        f"{text}. Acknowledge it with `auditkit acknowledge` once understood"
        + (f" (record {entry})" if entry is not None else ""),
        str(horizon) if horizon is not None else None,
    )


def acknowledged(chain: Chain) -> dict[int, LedgerRecord]:
    """The acknowledgements of the chain's loss records, by the loss record's position."""
    out = {}
    for record in chain.ledger:
        if record.kind == "acknowledged":
            out[int(record.detail.get("loss", -1))] = record
    return out


def _check_ledger(chain: Chain, note: Note) -> None:
    acks = acknowledged(chain)
    for record in chain.ledger:
        if record.kind == "rebuilt":
            note(
                "manifest-rebuilt",
                "warning",
                f"the manifest was rebuilt from the files at record {record.n} "
                f"({record.detail.get('reason', 'no reason given')}, "
                f"{record.detail.get('at', '')})",
            )
            continue
        if record.kind != "loss":
            continue
        detail = record.detail
        where = f"({detail.get('after') or '-'}, {detail.get('before') or '+'})"
        what = (
            f"{int(detail.get('count', 0)):,} entries left the stream in {where} before they "
            f"could be archived (seen by {detail.get('seen_by')} at {detail.get('seen_at')}, "
            f"ledger record {record.n})"
        )
        ack = acks.get(record.n)
        if ack is not None:
            note(
                "loss-acknowledged",
                "info",
                f"{what}; acknowledged at {ack.detail.get('at')}: {ack.detail.get('reason')}",
                detail.get("after"),
            )
        else:
            note(
                "loss-recorded",
                "error",
                f"{what}. Acknowledge it with `auditkit acknowledge STREAM {record.n} "
                "--reason TEXT` once understood",
                detail.get("after"),
            )


def _recorded_rules(files: list[ManifestEntry]) -> dict[str, object] | None:
    return files[-1].privacy if files else None


def _first_above(client: Client, stream: str, horizon: StreamID | None) -> StreamID | None:
    if horizon == StreamID.MAX:
        return None
    start = horizon.next() if horizon is not None else None
    for page in iter_pages(client, stream, start=start, count=1):
        return StreamID.parse(page[0][0])
    return None
