"""Where an archive keeps what, and the typed records it writes beside the Parquet files.

Per stream, under the archive root (docs/archive-format.md is the specification):

    stream=<key>/date=<YYYY-MM-DD>/<first id>_<last id>.parquet   the entries
    _manifest/<key>.jsonl         one entry per file, hash-chained (manifest.py)
    _state/<key>.json             the export state: what the last export saw of the stream
    _state/<key>.verified.json    the horizon verify() proved, and the manifest head it saw
    _lease/<key>.lock             held by the one exporter or trimmer at work

`ArchiveLayout` is the only code that knows these names; export, verify and identity are
handed one and read or write through it.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from auditkit._archive.manifest import ManifestEntry, encode_key, read_manifest, write_manifest
from auditkit._archive.storage import Storage

__all__ = ["ArchiveLayout", "ExportState", "StreamPaths", "VerifiedRecord"]


@dataclass(frozen=True, slots=True)
class StreamPaths:
    """The paths of one stream's files, relative to the archive root."""

    stream: str
    folder: str
    manifest: str
    export_state: str
    verified: str
    lease: str

    @classmethod
    def of(cls, stream: str) -> StreamPaths:
        key = encode_key(stream)
        return cls(
            stream=stream,
            folder=f"stream={key}",
            manifest=f"_manifest/{key}.jsonl",
            export_state=f"_state/{key}.json",
            verified=f"_state/{key}.verified.json",
            lease=f"_lease/{key}.lock",
        )

    def data_file(self, date: str, first_id: str, last_id: str) -> str:
        """The Parquet file of the entries `first_id`..`last_id`, recorded on `date`."""
        return f"{self.folder}/date={date}/{first_id}_{last_id}.parquet"


@dataclass(frozen=True, slots=True)
class ExportState:
    """What the last export saw: the stream's counters and the archive's head then.

    Not the chain checkpoint a third party keeps: this file lives inside the archive.
    """

    stream: str
    horizon: str | None
    manifest_head: str
    entries_added: int | None
    unarchived: int | None
    """Entries the stream ever had that the archive lacked at that export (Redis 7)."""
    last_generated_id: str | None
    exported_at: str
    privacy: dict[str, Any] = field(default_factory=dict)
    """The drop/pseudonymize rules the files were written with (never the key)."""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExportState:
        """Read an export state file's JSON, tolerating fields older versions did not write."""
        return cls(
            stream=str(data.get("stream", "")),
            horizon=data.get("horizon"),
            manifest_head=str(data.get("manifest_head", "")),
            entries_added=_int_or_none(data.get("entries_added")),
            unarchived=_int_or_none(data.get("unarchived")),
            last_generated_id=data.get("last_generated_id"),
            exported_at=str(data.get("exported_at", "")),
            privacy=data.get("privacy") or {"drop": [], "pseudonymize": []},
        )


@dataclass(frozen=True, slots=True)
class VerifiedRecord:
    """What a successful verify() proved: the horizon, and the manifest head it checked."""

    horizon: str
    manifest_head: str
    verified_at: str

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VerifiedRecord | None:
        """None when the record lacks what trim needs."""
        if not isinstance(data.get("horizon"), str) or not isinstance(
            data.get("manifest_head"), str
        ):
            return None
        return cls(data["horizon"], data["manifest_head"], str(data.get("verified_at", "")))


class ArchiveLayout:
    """The archive's files on a storage: paths per stream, manifest, export state, verified."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def __repr__(self) -> str:
        return f"<ArchiveLayout {self.storage.url}>"

    def paths(self, stream: str) -> StreamPaths:
        return StreamPaths.of(stream)

    def streams(self) -> list[str]:
        """The streams this archive holds (those with a manifest naming them)."""
        keys = []
        for relative in self.storage.files("_manifest"):
            if not relative.endswith(".jsonl") or relative.count("/") != 1:
                continue
            lines = read_manifest(self.storage, relative)
            if lines and "stream" in lines[0]:
                keys.append(lines[0]["stream"])
        return keys

    def manifest_lines(self, stream: str) -> list[dict[str, Any]]:
        """The manifest's lines as written, unchecked (`{"_unreadable": n}` for a bad line)."""
        return read_manifest(self.storage, self.paths(stream).manifest)

    def entries(self, stream: str) -> list[ManifestEntry]:
        """The manifest entries of a stream, in ID order (unreadable lines left out)."""
        return [ManifestEntry(**e) for e in self.manifest_lines(stream) if "_unreadable" not in e]

    def write_manifest(self, stream: str, entries: list[ManifestEntry]) -> None:
        write_manifest(self.storage, self.paths(stream).manifest, entries)

    def stream_files(self, stream: str) -> list[str]:
        """Every file under the stream's folder, listed in the manifest or not."""
        return self.storage.files(self.paths(stream).folder)

    def stale_temporaries(self, stream: str) -> list[str]:
        """Temporary files a killed writer left beside the stream's manifest and state.

        Only this stream's (the name is matched whole, so `orders.v2`'s are not
        `orders`'); to be removed under its lease, when no writer of its own is at work.
        """
        paths = self.paths(stream)
        names = "|".join(
            re.escape(p.rsplit("/", 1)[1])
            for p in (paths.manifest, paths.export_state, paths.verified)
        )
        # The names _files.atomic_write gives: `.<name>.<8 random characters>.tmp`.
        pattern = re.compile(rf"\.(?:{names})\.[a-z0-9_]{{8}}\.tmp")
        return [
            relative
            for folder in ("_manifest", "_state")
            for relative in self.storage.files(folder)
            if pattern.fullmatch(relative.rsplit("/", 1)[-1])
        ]

    def export_state(self, stream: str) -> ExportState | None:
        data = self.storage.read_json(self.paths(stream).export_state)
        return ExportState.from_json(data) if data is not None else None

    def write_export_state(self, state: ExportState) -> None:
        data = json.dumps(asdict(state), indent=1).encode()
        self.storage.replace(self.paths(state.stream).export_state, data)

    def verified(self, stream: str) -> VerifiedRecord | None:
        data = self.storage.read_json(self.paths(stream).verified)
        return VerifiedRecord.from_json(data) if data is not None else None

    def write_verified(self, stream: str, verified: VerifiedRecord) -> None:
        data = json.dumps(asdict(verified), indent=1).encode()
        self.storage.replace(self.paths(stream).verified, data)

    def withdraw_verified(self, stream: str) -> None:
        """Forget an earlier verification: trim must not rely on it any more."""
        self.storage.delete(self.paths(stream).verified)


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
