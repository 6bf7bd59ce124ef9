"""Where an archive keeps what, and how writers take turns without ever losing a file.

Per stream, under the archive root (docs/archive-format.md is the specification):

    stream=<key>/month=<YYYY-MM>/<first id>_<last id>.e<epoch>.parquet   the entries
    _manifest/<key>/<epoch>.jsonl      the manifest, one version per writer (manifest.py)
    _lease/<key>.lock                  held by the one writer at work, with its epoch

`<key>` is `encode_key(stream)`: no glob or SQL metacharacter, bounded length, any bytes.

Every writer (export, acknowledge, repair) holds the stream's lease, whose epoch is above
any the archive has seen. Its rules make a writer whose lease expired while it was paused
harmless when it resumes, whatever it does next:

1. Before it publishes its first file, a writer writes its own manifest version, a copy
   of the current one; it then appends to that version only. Readers take the version of
   the highest epoch, so a stale writer's version is ignored, never mixed in.
2. Its files carry its epoch in their names, so no two writers ever write the same object.
3. It removes only files of lower epochs that no manifest lists and that lie past what
   their own writer listed (a crash's or a stale writer's leftovers, whose entries are
   still in Redis), and manifest versions below its own. A file a manifest should list but
   does not, or a file whose writer's version is missing, is damage: nothing is removed.

`ArchiveLayout` is the only code that knows these names; export, verify and the rest are
handed one and read or write through it.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from auditkit._archive.manifest import (
    FORMAT,
    GENESIS,
    Chain,
    ChainRecord,
    Header,
    ManifestEntry,
    encode_key,
    parse_manifest,
    render_manifest,
)
from auditkit._archive.storage import Lease, Storage
from auditkit._exceptions import ArchiveDamaged, InvalidStreamID
from auditkit._logging import logger
from auditkit._redis.ids import StreamID, utc_now

__all__ = ["ArchiveLayout", "StreamPaths", "StreamWriter", "Unlisted", "file_epoch"]

_log = logger(__name__)

_VERSION = re.compile(r"(\d{10})\.jsonl")
_DATA_FILE = re.compile(r"(?P<first>\d+-\d+)_(?P<last>\d+-\d+)(?:\.e(?P<epoch>\d+))?\.parquet")


@dataclass(frozen=True, slots=True)
class StreamPaths:
    """The paths of one stream's files, relative to the archive root."""

    stream: str
    key: str
    folder: str
    manifests: str
    lease: str

    @classmethod
    def of(cls, stream: str) -> StreamPaths:
        key = encode_key(stream)
        return cls(
            stream=stream,
            key=key,
            folder=f"stream={key}",
            manifests=f"_manifest/{key}",
            lease=f"_lease/{key}.lock",
        )

    def manifest(self, epoch: int) -> str:
        """The manifest version written by the holder of `epoch`."""
        return f"{self.manifests}/{epoch:010d}.jsonl"

    def data_file(self, month: str, first_id: str, last_id: str, epoch: int) -> str:
        """The Parquet file of the entries `first_id`..`last_id`, written in `epoch`."""
        return f"{self.folder}/month={month}/{first_id}_{last_id}.e{epoch}.parquet"


def file_epoch(relative: str) -> int | None:
    """The epoch in a data file's name, or None for a name auditkit did not give."""
    match = _DATA_FILE.fullmatch(relative.rsplit("/", 1)[-1])
    return int(match["epoch"]) if match and match["epoch"] else None


def _first_id(relative: str) -> StreamID | None:
    match = _DATA_FILE.fullmatch(relative.rsplit("/", 1)[-1])
    if match is None:
        return None
    try:
        return StreamID.parse(match["first"])
    except InvalidStreamID:
        return None


@dataclass
class Unlisted:
    """The data files of a stream its manifest does not list, sorted out."""

    leftovers: list[str] = field(default_factory=list)
    """Past what their writer listed: left by a crash, or by a writer that lost its lease;
    their entries are archived again by a later export."""
    in_flight: list[str] = field(default_factory=list)
    """Of the current writer, past the manifest's end: being written now (or a crash's)."""
    lost: list[tuple[str, str]] = field(default_factory=list)
    """Files a manifest should list and does not, with the reason: damage."""


class ArchiveLayout:
    """The archive's files on a storage: paths per stream, manifests, data files, writers."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def __repr__(self) -> str:
        return f"<ArchiveLayout {self.storage.url}>"

    def paths(self, stream: str) -> StreamPaths:
        return StreamPaths.of(stream)

    # ---- reading -----------------------------------------------------------------------

    def streams(self) -> list[str]:
        """The streams this archive holds (those with a manifest), in key order."""
        latest: dict[str, tuple[int, str]] = {}
        for relative in self.storage.files("_manifest"):
            parts = relative.split("/")
            if len(parts) != 3:
                continue
            match = _VERSION.fullmatch(parts[2])
            if match is not None:
                epoch = int(match[1])
                if parts[1] not in latest or latest[parts[1]][0] < epoch:
                    latest[parts[1]] = (epoch, relative)
        keys = []
        for _, relative in latest.values():
            header = parse_manifest(self.storage.read_bytes(relative) or b"").header
            if header is not None:
                keys.append(header.stream)
        return sorted(keys)

    def orphans(self) -> list[str]:
        """Stream folders holding data files whose stream has no manifest (it was lost)."""
        manifests = {r.split("/")[1] for r in self.storage.files("_manifest") if r.count("/") == 2}
        folders: dict[str, int] = {}
        for relative in self.storage.files(""):
            head = relative.split("/", 1)[0]
            if head.startswith("stream=") and relative.endswith(".parquet"):
                folders[head] = folders.get(head, 0) + 1
        return sorted(f for f in folders if f.removeprefix("stream=") not in manifests)

    def format1_manifests(self) -> list[str]:
        """Manifests an earlier auditkit wrote (format 1: `_manifest/<key>.jsonl`)."""
        return [
            relative
            for relative in self.storage.files("_manifest")
            if relative.count("/") == 1 and relative.endswith(".jsonl")
        ]

    def versions(self, stream: str) -> list[tuple[int, str]]:
        """The stream's manifest versions, `(epoch, path)`, lowest epoch first."""
        paths = self.paths(stream)
        found = []
        for relative in self.storage.files(paths.manifests):
            match = _VERSION.fullmatch(relative.rsplit("/", 1)[-1])
            if match is not None and relative.count("/") == 2:
                found.append((int(match[1]), relative))
        return sorted(found)

    def read(self, stream: str) -> Chain:
        """The current manifest (the highest epoch's version), unchecked; empty when none."""
        versions = self.versions(stream)
        if not versions:
            return Chain(None, [])
        return parse_manifest(self.storage.read_bytes(versions[-1][1]) or b"")

    def entries(self, stream: str) -> list[ManifestEntry]:
        """The files of a stream's current manifest, in ID order."""
        return self.read(stream).files

    def stream_files(self, stream: str) -> list[str]:
        """Every data file under the stream's folder, listed or not (no temporaries)."""
        return [
            relative
            for relative in self.storage.files(self.paths(stream).folder)
            if relative.endswith(".parquet") and not relative.rsplit("/", 1)[-1].startswith(".")
        ]

    def snapshot(self, stream: str) -> tuple[Chain, list[str]]:
        """The current manifest and the stream's data files, as one consistent view.

        The files are listed first: a file a writer published had its writer's manifest
        version written before it, so the manifest read after the listing knows that writer
        (a writer at work now only shows up as files past the manifest's end).
        """
        files = self.stream_files(stream)
        return self.read(stream), files

    def known_epoch(self, stream: str) -> int:
        """The highest epoch any manifest version or data file of the stream carries."""
        epochs = [epoch for epoch, _ in self.versions(stream)]
        epochs += [e for e in map(file_epoch, self.stream_files(stream)) if e is not None]
        return max(epochs, default=0)

    def problems(self, stream: str, chain: Chain) -> list[str]:
        """Why a manifest cannot be trusted as written (empty when it can)."""
        out = []
        if chain.unreadable:
            out.append(f"unreadable line(s) {chain.unreadable[:5]}")
        broken = chain.broken_at()
        if broken is not None:
            out.append(f"the hash chain breaks at record {broken.n}")
        header = chain.header
        if chain.records and header is None:
            out.append("its header line is missing")
        elif header is not None:
            if header.stream != stream:
                out.append(f"its header names stream `{header.stream}`")
            if header.format != FORMAT:
                out.append(f"it is in format {header.format}, not {FORMAT}")
            if (header.size, header.head) != (len(chain.records), chain.head):
                out.append(
                    f"its header records {header.size} record(s) ending at "
                    f"{header.head[:12]}, the chain holds {len(chain.records)} ending at "
                    f"{chain.head[:12]} (records were cut from its end or added by hand)"
                )
        return out

    def unlisted(self, stream: str, chain: Chain, files: list[str]) -> Unlisted:
        """Sort the stream's data files the manifest does not list (layout.py, rule 3)."""
        listed = {entry.file for entry in chain.files}
        current = chain.header.epoch if chain.header is not None else 0
        end = StreamID.parse(chain.files[-1].last_id) if chain.files else None
        # The last ID each epoch listed: files of that epoch up to it must be listed.
        listed_up_to: dict[int, StreamID] = {}
        for entry in chain.files:
            listed_up_to[entry.epoch] = StreamID.parse(entry.last_id)
        found = Unlisted()
        for relative in files:
            if relative in listed:
                continue
            epoch, first = file_epoch(relative), _first_id(relative)
            if epoch is None or first is None:
                found.lost.append((relative, "its name is not one auditkit gives"))
            elif epoch > current:
                found.lost.append(
                    (relative, f"it was written in epoch {epoch}, whose manifest is missing")
                )
            elif epoch == current:
                if end is not None and first <= end:
                    found.lost.append((relative, "its entries lie within the manifest"))
                else:
                    found.in_flight.append(relative)
            elif epoch in listed_up_to and first <= listed_up_to[epoch]:
                found.lost.append((relative, f"epoch {epoch} listed entries past it"))
            else:
                found.leftovers.append(relative)
        return found

    # ---- writing -----------------------------------------------------------------------

    @contextlib.contextmanager
    def writer(self, stream: str) -> Iterator[StreamWriter]:
        """Hold the stream's lease and write through a StreamWriter (see rule 1-3 above)."""
        paths = self.paths(stream)
        with self.storage.lease(
            paths.lease, stream=stream, floor=self.known_epoch(stream)
        ) as lease:
            yield StreamWriter(self, stream, lease)


class StreamWriter:
    """One writer's turn at a stream: the manifest it started from, and its own version."""

    def __init__(self, layout: ArchiveLayout, stream: str, lease: Lease) -> None:
        self.layout = layout
        self.stream = stream
        self.lease = lease
        self.paths = layout.paths(stream)
        self.chain, self.files = layout.snapshot(stream)
        self._saved = False

    @property
    def epoch(self) -> int:
        return self.lease.epoch

    @property
    def state(self) -> dict[str, Any]:
        return dict(self.chain.header.state) if self.chain.header is not None else {}

    def check(self) -> None:
        """Stop (ArchiveFenced) when a newer writer took the lease or published."""
        self.lease.check()
        newer = [e for e, _ in self.layout.versions(self.stream) if e > self.epoch]
        if newer:
            self.lease.lost.set()
            self.lease.check()

    def require_sound(self, action: str) -> None:
        """Raise ArchiveDamaged when the manifest or the files are not what the chain says."""
        problems = self.layout.problems(self.stream, self.chain)
        where = self.layout.storage.url
        if problems:
            raise ArchiveDamaged(
                f"The manifest of `{self.stream}` in {where} cannot be trusted: "
                f"{'; '.join(problems)}. Nothing was {action}; run `auditkit verify` for the "
                "details, then restore the manifest from a backup or rebuild it with "
                "`auditkit repair`.",
                stream=self.stream,
            )
        lost = self.layout.unlisted(self.stream, self.chain, self.files).lost
        if lost:
            relative, reason = lost[0]
            raise ArchiveDamaged(
                f"{where} holds {len(lost)} file(s) of `{self.stream}` its manifest should "
                f"list and does not, such as `{relative}` ({reason}): a manifest was lost or "
                f"cut short, or the file was added by hand. Nothing was {action}; run "
                "`auditkit verify` for the details, "
                "then restore the manifest from a backup or rebuild it with `auditkit repair`.",
                stream=self.stream,
            )

    def save(self, records: list[ChainRecord], state: dict[str, Any] | None = None) -> None:
        """Write this writer's manifest version: `records` and the export `state`.

        The first save also removes the lower versions and the files rule 3 allows.
        """
        self.check()
        header = Header(
            stream=self.stream,
            epoch=self.epoch,
            size=len(records),
            head=records[-1].hash if records else GENESIS,
            written_at=utc_now(),
            state=self.state if state is None else state,
        )
        self.layout.storage.replace(
            self.paths.manifest(self.epoch), render_manifest(header, records)
        )
        self.chain = Chain(header, list(records))
        if not self._saved:
            self._saved = True
            self._clean()

    def _clean(self) -> None:
        storage = self.layout.storage
        for epoch, relative in self.layout.versions(self.stream):
            if epoch < self.epoch:
                storage.delete(relative)
        for relative in self.layout.unlisted(self.stream, self.chain, self.files).leftovers:
            _log.info("removing %s, left by an interrupted or superseded writer", relative)
            storage.delete(relative)
        for relative in storage.files(self.paths.folder) + storage.files(self.paths.manifests):
            name = relative.rsplit("/", 1)[-1]
            if name.startswith(".") and name.endswith(".tmp"):
                _log.info("removing %s, left by an interrupted write", relative)
                storage.delete(relative)

    def publish(self, relative: str, data: bytes | memoryview, sha256: str) -> None:
        """Publish a data file of this epoch (after the version is saved: rule 1)."""
        if not self._saved:
            raise RuntimeError("save() the manifest version before publishing a file")
        if file_epoch(relative) != self.epoch:
            raise ValueError(f"`{relative}` does not carry epoch {self.epoch}")
        self.check()
        try:
            self.layout.storage.publish(relative, data, sha256)
        except Exception:
            self.check()  # a file gone while it was read back: a newer writer removed it
            raise
