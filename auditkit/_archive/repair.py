"""Repair: rebuild a stream's manifest from its files, and say in the chain that it was.

For a manifest that was lost, cut short or damaged, and to upgrade a stream an earlier
auditkit archived (format 1). Every data file under the stream's folder is read: its IDs,
rows, size and SHA-256. Files are chained in ID order; a file whose entries another file
holds too (a copy a writer left when it lost its lease) is left out, after checking its
entries are the same; files that overlap otherwise stop the repair, which writes nothing.
The new chain starts with a `rebuilt` record: why, when, the head of the chain it
replaces, and the files it left out. The ledger's records that could still be read are
carried over after the files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from auditkit._archive.layout import ArchiveLayout, file_epoch
from auditkit._archive.manifest import (
    GENESIS,
    ChainRecord,
    ManifestEntry,
    append_record,
)
from auditkit._display import card_html, escape
from auditkit._exceptions import ArchiveError
from auditkit._load.decode import extract, finish, prepare
from auditkit._load.envelope import Envelope
from auditkit._logging import logger
from auditkit._redis.ids import StreamID, utc_now

__all__ = ["RepairReport", "format1_key", "repair_stream"]

_log = logger(__name__)


@dataclass(frozen=True, slots=True)
class RepairReport:
    """What a repair rebuilt."""

    stream: str
    files: int
    rows: int
    left_out: list[str]
    """Copies of entries another file holds too (checked the same), removed."""
    replaced_head: str | None
    """The head of the chain the rebuilt one replaces (None when none could be read)."""

    def __repr__(self) -> str:
        return (
            f"<RepairReport {self.stream}: {self.rows:,} rows in {self.files} files, "
            f"{len(self.left_out)} left out>"
        )

    def _repr_html_(self) -> str:
        status = ("rebuilt", "#16a34a")
        facts = [
            ("stream", self.stream),
            ("files in the rebuilt chain", f"{self.files:,}"),
            ("entries they hold", f"{self.rows:,}"),
            ("replaces the chain whose head was", self.replaced_head or "none readable"),
        ]
        sections = []
        if self.left_out:
            items = "".join(f"<li>{escape(item)}</li>" for item in self.left_out)
            heading = "Copies left out and removed (the chain holds each of their entries)"
            sections.append((heading, f"<ul>{items}</ul>"))
        return card_html("Archive repair", status=status, facts=facts, sections=sections)


@dataclass(frozen=True, slots=True)
class _File:
    relative: str
    first: StreamID
    last: StreamID
    rows: int
    size: int
    sha256: str
    epoch: int
    envelope: dict[str, Any] | None = None
    privacy: dict[str, Any] | None = None


def repair_stream(layout: ArchiveLayout, stream: str, reason: str) -> RepairReport:
    """`Archive.repair`: rebuild the manifest of `stream` from its files."""
    if not reason.strip():
        raise ValueError("repair needs a reason: it is recorded in the chain for auditors.")
    paths = layout.paths(stream)
    old_key = format1_key(stream)
    format1 = f"_manifest/{old_key}.jsonl"
    with layout.writer(stream) as writer:
        old_lines = _format1_lines(layout, format1)
        folders = [paths.folder] + ([f"stream={old_key}"] if old_key != paths.key else [])
        found = sorted(
            (
                _describe(layout, relative)
                for folder in folders
                for relative in _data_files(layout, folder)
            ),
            key=lambda f: (f.first, -f.last.ms, -f.last.seq, -f.epoch),
        )
        if not found and not writer.chain.records and not old_lines:
            raise ArchiveError(
                f"{layout.storage.url} holds no file and no manifest of `{stream}`: nothing "
                "to repair.",
                stream=stream,
            )
        known = {e.file: e for e in writer.chain.files}
        old_meta = {line.get("file"): line for line in old_lines}
        for file in found:
            _require_untouched(layout, stream, file, known, old_meta)
        chosen, left_out = _cover(layout, found, stream)
        replaced = writer.chain.head if writer.chain.records else _format1_head(old_lines)
        records: list[ChainRecord] = []
        detail: dict[str, Any] = {
            "reason": reason,
            "at": utc_now(),
            "replaced_head": replaced,
            "left_out": [f.relative for f in left_out],
            "files": len(chosen),
        }
        if old_lines:
            detail["upgraded_from_format"] = 1
        records.append(append_record(records, "rebuilt", stream, detail, writer.epoch))
        previous: ManifestEntry | None = None
        for file in chosen:
            before = known.get(file.relative)
            meta = old_meta.get(file.relative, {})
            entry = ManifestEntry(
                n=len(records),
                file=file.relative,
                stream=stream,
                first_id=str(file.first),
                last_id=str(file.last),
                prev_last_id=previous.last_id if previous else None,
                rows=file.rows,
                bytes=file.size,
                sha256=file.sha256,
                prev=records[-1].hash if records else GENESIS,
                epoch=file.epoch,
                envelope=before.envelope if before else meta.get("envelope") or file.envelope,
                privacy=(
                    before.privacy
                    if before
                    else file.privacy
                    if file.privacy is not None or not old_lines
                    else _format1_privacy(layout, old_key)
                ),
            ).sealed()
            records.append(entry)
            previous = entry
        for loss in _lost_files(writer.chain.files, old_lines, {f.relative for f in found}):
            records.append(append_record(records, "loss", stream, loss, writer.epoch))
        for record in writer.chain.ledger:
            if record.kind in ("loss", "acknowledged"):
                carried = dict(record.detail, carried_from=record.n)
                records.append(append_record(records, record.kind, stream, carried, writer.epoch))
        state = writer.state or _format1_state(layout, old_key)
        writer.save(records, state)
        for relative in [format1, f"_state/{old_key}.json", f"_state/{old_key}.verified.json"]:
            if old_lines and layout.storage.exists(relative):
                layout.storage.delete(relative)
        for file in left_out:
            layout.storage.delete(file.relative)
    rows = sum(f.rows for f in chosen)
    _log.info("rebuilt the manifest of %s: %d files, %d rows", stream, len(chosen), rows)
    return RepairReport(stream, len(chosen), rows, [f.relative for f in left_out], replaced)


def _require_untouched(
    layout: ArchiveLayout,
    stream: str,
    file: _File,
    known: dict[str, ManifestEntry],
    old_meta: dict[Any, dict[str, Any]],
) -> None:
    """Refuse a file that is not what was written: another SHA-256 than the manifest it
    replaces recorded, or columns that its own `fields` do not decode to (an edit of what
    queries read that a rebuilt manifest would otherwise vouch for)."""
    recorded = known[file.relative].sha256 if file.relative in known else None
    recorded = recorded or old_meta.get(file.relative, {}).get("sha256")
    where = layout.storage.url
    if recorded is not None and recorded != file.sha256:
        raise ArchiveError(
            f"`{file.relative}` in {where} no longer matches the SHA-256 its manifest recorded: "
            "it was changed after it was written. Nothing was repaired; repair rebuilds a "
            "lost or damaged manifest, it does not vouch for changed files. Restore the file "
            "from a backup (or move it aside), then repair again.",
            stream=stream,
        )
    table = layout.storage.read_table(file.relative)
    envelope = known[file.relative].envelope if file.relative in known else None
    envelope = envelope or old_meta.get(file.relative, {}).get("envelope")
    envelope = envelope or file_metadata(table, "envelope")
    if "fields" not in table.column_names:
        raise ArchiveError(
            f"`{file.relative}` in {where} has no `fields` column: it is not an archive file. "
            "Nothing was repaired; move it aside and repair again.",
            stream=stream,
        )
    if envelope is None:
        return  # how it was decoded is unknown: its columns cannot be derived again
    ids = table.column("id").to_pylist()
    chunk = [
        [i.encode(), flat] for i, flat in zip(ids, table.column("fields").to_pylist(), strict=True)
    ]
    derived = finish(
        prepare(extract(chunk, stream), Envelope.from_dict(envelope), keep_fields=True)
    )
    if not derived.equals(table):
        raise ArchiveError(
            f"`{file.relative}` in {where} holds columns that its entries' original fields "
            "do not decode to: its decoded values (what queries read) were edited. Nothing "
            "was repaired. Restore the file from a backup (or move it aside), then repair "
            "again.",
            stream=stream,
        )


def file_metadata(table: pa.Table, name: str) -> Any:
    """What export recorded in a file's own metadata (`auditkit.<name>`), or None."""
    raw = (table.schema.metadata or {}).get(f"auditkit.{name}".encode())
    try:
        return json.loads(raw) if raw is not None else None
    except ValueError:
        return None


def _lost_files(
    files: list[ManifestEntry], old_lines: list[dict[str, Any]], found: set[str]
) -> list[dict[str, Any]]:
    """Loss records for the files the replaced manifest listed that are gone."""
    listed: list[tuple[Any, Any, Any, Any]] = [
        (e.file, e.first_id, e.last_id, e.rows) for e in files
    ] or [
        (line.get("file"), line.get("first_id"), line.get("last_id"), line.get("rows", 0))
        for line in old_lines
    ]
    losses = []
    for i, (relative, first, last, rows) in enumerate(listed):
        if relative in found:
            continue
        losses.append(
            {
                "count": int(rows or 0),
                "after": listed[i - 1][2] if i > 0 else None,
                "before": listed[i + 1][1] if i + 1 < len(listed) else None,
                "file": relative,
                "first_id": first,
                "last_id": last,
                "seen_by": "repair",
                "seen_at": utc_now(),
            }
        )
    return losses


def format1_key(key: str) -> str:
    """A stream key as format 1 encoded it in paths."""
    out = []
    for i, char in enumerate(key):
        if char in "%/\\=" or ord(char) < 32 or (i == 0 and char == "."):
            out.append("".join(f"%{b:02X}" for b in char.encode()))
        else:
            out.append(char)
    return "".join(out) or "%00"


def _data_files(layout: ArchiveLayout, folder: str) -> list[str]:
    return [
        relative
        for relative in layout.storage.files(folder)
        if relative.endswith(".parquet") and not relative.rsplit("/", 1)[-1].startswith(".")
    ]


def _describe(layout: ArchiveLayout, relative: str) -> _File:
    try:
        table = layout.storage.read_table(relative, columns=["id"])
        ids = table.column("id").to_pylist()
    except Exception as exc:
        raise ArchiveError(
            f"`{relative}` in {layout.storage.url} cannot be read ({exc}); nothing was "
            "repaired. Move it aside (or restore it from a backup) and repair again."
        ) from None
    if not ids:
        raise ArchiveError(f"`{relative}` in {layout.storage.url} holds no entry; move it aside.")
    digest, size = layout.storage.sha256(relative)
    return _File(
        relative,
        StreamID.parse(ids[0]),
        StreamID.parse(ids[-1]),
        len(ids),
        size,
        digest,
        file_epoch(relative) or 0,
        file_metadata(table, "envelope"),
        file_metadata(table, "privacy"),
    )


def _cover(
    layout: ArchiveLayout, found: list[_File], stream: str
) -> tuple[list[_File], list[_File]]:
    """The files to chain (no entry twice), and the copies left out."""
    chosen: list[_File] = []
    left_out: list[_File] = []
    for file in found:
        if chosen and file.first <= chosen[-1].last:
            holder = chosen[-1]
            if file.last <= holder.last and _same_entries(layout, file, holder):
                left_out.append(file)
                continue
            raise ArchiveError(
                f"`{file.relative}` ({file.first}..{file.last}) and `{holder.relative}` "
                f"({holder.first}..{holder.last}) of `{stream}` overlap and neither holds the "
                "other's entries: nothing was repaired. Compare them, move the wrong one "
                "aside, and repair again.",
                stream=stream,
            )
        chosen.append(file)
    return chosen, left_out


def _same_entries(layout: ArchiveLayout, copy: _File, holder: _File) -> bool:
    """Whether every entry of `copy` is in `holder`, byte for byte."""
    first = layout.storage.read_table(copy.relative, columns=["id", "fields"])
    second = layout.storage.read_table(holder.relative, columns=["id", "fields"])
    held = dict(
        zip(second.column("id").to_pylist(), second.column("fields").to_pylist(), strict=True)
    )
    return all(
        held.get(entry_id) == fields
        for entry_id, fields in zip(
            first.column("id").to_pylist(), first.column("fields").to_pylist(), strict=True
        )
    )


def _format1_lines(layout: ArchiveLayout, relative: str) -> list[dict[str, Any]]:
    data = layout.storage.read_bytes(relative)
    if data is None:
        return []
    lines = []
    for line in data.decode(errors="replace").splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            lines.append(value)
    return lines


def _format1_head(lines: list[dict[str, Any]]) -> str | None:
    return str(lines[-1].get("hash")) if lines else None


def _format1_state(layout: ArchiveLayout, old_key: str) -> dict[str, Any]:
    data = layout.storage.read_json(f"_state/{old_key}.json") or {}
    return {
        "horizon": data.get("horizon"),
        "entries_added": data.get("entries_added"),
        "last_generated_id": data.get("last_generated_id"),
        "exported_at": data.get("exported_at"),
    }


def _format1_privacy(layout: ArchiveLayout, old_key: str) -> dict[str, Any] | None:
    data = layout.storage.read_json(f"_state/{old_key}.json") or {}
    privacy = data.get("privacy") or {}
    if privacy.get("drop") or privacy.get("pseudonymize"):
        return {"drop": privacy.get("drop", []), "pseudonymize": privacy.get("pseudonymize", [])}
    return None
