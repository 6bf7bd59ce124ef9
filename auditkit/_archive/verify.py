"""verify(): prove an archive complete and untouched, and compare it with the live stream."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import pandas as pd

from auditkit._archive.checkpoint import Anchor, check_anchor
from auditkit._archive.identity import comparable, identity_problem, raw_pairs
from auditkit._archive.layout import ArchiveLayout, VerifiedRecord
from auditkit._archive.manifest import GENESIS, ManifestEntry, chain_hash
from auditkit._archive.privacy import Privacy
from auditkit._findings import FAILING, Findings
from auditkit._redis.connection import Client, read_with_retry
from auditkit._redis.ids import StreamID, utc_now
from auditkit._redis.pages import iter_pages
from auditkit._redis.text import text
from auditkit._redis.xinfo import stream_info

__all__ = ["VerifyReport", "check_offline", "verify_archive"]


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


def verify_archive(
    layout: ArchiveLayout,
    privacy: Privacy,
    client: Client | None,
    stream: str | None,
    anchor: Anchor | None = None,
) -> VerifyReport:
    """`Archive.verify`: every check, per stream; marks (or withdraws) the verified horizon."""
    streams = [stream] if stream is not None else layout.streams()
    frames: list[pd.DataFrame] = []
    horizons: dict[str, str | None] = {}
    for key in streams:
        found = Findings(key)
        note = _note(found)
        entries = _check_manifest(layout, key, note)
        _check_files(layout, key, entries, note)
        horizons[key] = entries[-1].last_id if entries else None
        if client is not None and entries:
            _check_live(layout, privacy, client, key, entries, note)
        if anchor is not None:
            check_anchor(layout, key, anchor, note)
        frames.append(found.frame())
        failed = any(row["severity"] in FAILING for row in found.rows)
        if failed:
            # A failed verification withdraws an earlier one: trim must not rely on it.
            layout.withdraw_verified(key)
        elif client is not None and entries:
            record = VerifiedRecord(entries[-1].last_id, entries[-1].hash, utc_now())
            layout.write_verified(key, record)
    frame = pd.concat(frames, ignore_index=True) if frames else Findings().frame()
    return VerifyReport(frame, horizons)


class Note(Protocol):
    """How the checks report a finding: the entry it concerns comes last, when there is one."""

    def __call__(
        self, check: str, severity: str, detail: str, entry_id: str | None = None
    ) -> None: ...


def _note(found: Findings) -> Note:
    """`note(check, severity, detail, entry_id)`: the checks below name the entry last."""

    def note(check: str, severity: str, detail: str, entry_id: str | None = None) -> None:
        found.add(check, severity, detail, id=entry_id)

    return note


def check_offline(layout: ArchiveLayout, stream: str) -> pd.DataFrame:
    """The file and manifest checks alone (no Redis): the findings that fail a trim."""
    found = Findings(stream)
    note = _note(found)
    _check_files(layout, stream, _check_manifest(layout, stream, note), note)
    frame = found.frame()
    return frame[frame["severity"].isin(FAILING)]


def _check_manifest(layout: ArchiveLayout, stream: str, note: Note) -> list[ManifestEntry]:
    path = layout.paths(stream).manifest
    if not layout.storage.exists(path):
        note("manifest-missing", "error", f"no manifest at {path}")
        return []
    entries: list[ManifestEntry] = []
    previous_hash = GENESIS
    for number, data in enumerate(layout.manifest_lines(stream)):
        if "_unreadable" in data:
            note("manifest-unreadable", "critical", f"line {data['_unreadable']} is not JSON")
            continue
        try:
            entry = ManifestEntry(**data)
        except TypeError:
            note("manifest-unreadable", "critical", f"line {number + 1} lacks entry fields")
            continue
        if entry.hash != chain_hash(entry.body()):
            note(
                "manifest-chain",
                "critical",
                f"entry {number} ({entry.file}) was edited: its hash does not match its content",
                entry.first_id,
            )
        if entry.prev != previous_hash or entry.n != number:
            note(
                "manifest-chain",
                "critical",
                f"entry {number} ({entry.file}) does not follow entry {number - 1}: the chain is "
                "broken (an entry was inserted, removed or reordered)",
                entry.first_id,
            )
        if entries:
            before = entries[-1]
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
        previous_hash = entry.hash
        entries.append(entry)
    return entries


def _check_files(
    layout: ArchiveLayout, stream: str, entries: list[ManifestEntry], note: Note
) -> None:
    listed = set()
    storage = layout.storage
    for entry in entries:
        listed.add(entry.file)
        if not storage.exists(entry.file):
            note(
                "file-missing",
                "critical",
                f"{entry.file} ({entry.rows:,} entries) is gone",
                entry.first_id,
            )
            continue
        digest, size = storage.sha256(entry.file)
        if digest != entry.sha256 or size != entry.bytes:
            note(
                "file-changed",
                "critical",
                f"{entry.file} does not match its SHA-256 in the manifest",
                entry.first_id,
            )
            continue
        try:
            ids = storage.read_table(entry.file, columns=["id"]).column("id")
        except Exception as exc:  # a file that parses no more is a finding, not a crash
            note("file-unreadable", "critical", f"{entry.file}: {exc}", entry.first_id)
            continue
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
    for relative in layout.stream_files(stream):
        if relative.endswith(".parquet") and relative not in listed:
            note(
                "file-unlisted",
                "error",
                f"{relative} is not in the manifest (left by an interrupted export, or "
                "added by hand); readers globbing the folder would count it twice",
            )


def _check_live(
    layout: ArchiveLayout,
    privacy: Privacy,
    client: Client,
    stream: str,
    entries: list[ManifestEntry],
    note: Note,
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
    state = layout.export_state(stream)
    horizon = StreamID.parse(entries[-1].last_id)
    problem = identity_problem(layout, privacy, client, info, entries, state, horizon)
    if problem is not None:
        note("stream-recreated", "critical", problem, str(horizon))
    archived_rows = sum(e.rows for e in entries)
    live_below = 0
    compare = comparable(privacy, state)
    if not compare:
        note(
            "content-not-compared",
            "info",
            "the archive was written with drop/pseudonymize rules this Archive does not have "
            "(or without its key): live entries were counted, not compared",
        )
    for entry in entries:
        live_below += _compare_file(layout, privacy, client, stream, entry, note, compare)
    live_above = info.length - live_below
    added = info.entries_added
    if added is None:
        note(
            "loss-unknown",
            "info",
            "the server (Redis < 7) reports no entries-added counter: entries deleted or "
            "trimmed before they were archived cannot be counted",
        )
        return
    lost = added - archived_rows - live_above
    earlier = (
        state.unarchived
        if state is not None and state.horizon == entries[-1].last_id and state.unarchived
        else 0
    )
    if lost > earlier:
        first_live = _first_above(client, stream, horizon)
        where = f"{horizon}, {first_live}" if first_live is not None else f"{horizon}, +"
        note(
            "loss-before-archive",
            "error",
            f"{lost - earlier:,} entries were removed from the stream after the archive's end "
            f"and before they could be archived: the gap ({where}); entries-added is "
            f"{added:,}, the archive holds {archived_rows:,}, the live tail {live_above:,}",
            str(horizon),
        )
    if earlier > 0:
        note(
            "loss-before-archive",
            "error",
            f"{earlier:,} entries were removed from the stream before the archive began at "
            f"{entries[0].first_id} or between exports (counted at the last export)",
            entries[0].first_id,
        )


def _compare_file(
    layout: ArchiveLayout,
    privacy: Privacy,
    client: Client,
    stream: str,
    entry: ManifestEntry,
    note: Note,
    compare: bool = True,
) -> int:
    """Compare the live entries inside a file's ID range with it; returns how many are live."""
    first, last = StreamID.parse(entry.first_id), StreamID.parse(entry.last_id)
    live = {}
    for page in iter_pages(client, stream, start=first, end=last):
        for entry_id, flat in page:
            live[str(text(entry_id))] = raw_pairs(privacy.apply(flat))
    if not live or not compare:
        return len(live)
    try:
        table = layout.storage.read_table(entry.file, columns=["id", "fields"])
    except Exception:  # missing or unreadable: already a finding of the file checks
        return len(live)
    archived = dict(
        zip(table.column("id").to_pylist(), table.column("fields").to_pylist(), strict=True)
    )
    for entry_id, pairs in live.items():
        stored = archived.get(entry_id)
        if stored is None:
            note(
                "conflict",
                "critical",
                f"live entry {entry_id} lies inside {entry.file} but is not archived (an ID "
                "reused after the stream was recreated?)",
                entry_id,
            )
        elif raw_pairs(stored) != pairs:
            note(
                "conflict",
                "critical",
                f"live entry {entry_id} differs from its archived copy in {entry.file}",
                entry_id,
            )
    return len(live)


def _first_above(client: Client, stream: str, horizon: StreamID) -> StreamID | None:
    if horizon == StreamID.MAX:
        return None
    for page in iter_pages(client, stream, start=horizon.next(), count=1):
        return StreamID.parse(page[0][0])
    return None
