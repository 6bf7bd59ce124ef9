"""Is the live stream the one archived? Its live copies of archived entries, and its counters.

Two proofs, used by export, verify and trim alike:

- every live entry at or below the archive's horizon holds exactly what its archived copy
  holds (Redis never changes an entry in place: another content means another stream);
- on Redis 7, the stream's `entries-added` counter can never be below what the archive
  holds plus the losses recorded plus the live entries above the horizon: a stream deleted
  and created again restarts its counter, however many entries it has since.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from auditkit._archive.layout import ArchiveLayout
from auditkit._archive.manifest import LedgerRecord, ManifestEntry
from auditkit._archive.privacy import Privacy
from auditkit._redis.connection import Client
from auditkit._redis.ids import StreamID
from auditkit._redis.pages import iter_pages
from auditkit._redis.text import text
from auditkit._redis.xinfo import StreamInfo

__all__ = [
    "LiveComparison",
    "archived_rows",
    "compare_live",
    "counter_problem",
    "only_appended",
    "raw_pairs",
    "recorded_losses",
]


@dataclass
class LiveComparison:
    """The live entries at or below the horizon, compared with their archived copies."""

    live_below: int = 0
    conflicts: list[tuple[str, str]] = field(default_factory=list)  # (entry ID, detail)
    compared: bool = True  # False when the privacy rules made the content incomparable
    unreadable: list[str] = field(default_factory=list)
    """Files that could not be read to compare (verify reports them on their own)."""
    outside: int = 0
    """Live entries at or below the horizon that no file's range holds (counted in
    `live_below`): entries a lost file held, for instance."""


def compare_live(
    layout: ArchiveLayout,
    privacy: Privacy | None,
    client: Client,
    stream: str,
    files: list[ManifestEntry],
    info: StreamInfo,
    *,
    upto: StreamID | None = None,
    on_page: Callable[[int], object] | None = None,
) -> LiveComparison:
    """Compare every live entry inside an archived file's range (below `upto`, when given)
    with the file; `privacy` None counts them without comparing (no key for the rules).
    `on_page` is told how many live entries each page read held (a progress bar)."""
    tell = on_page if on_page is not None else _ignore
    result = LiveComparison(compared=privacy is not None)
    if info.first_id is None or not files:
        return result
    previous_last: StreamID | None = None
    for entry in files:
        first, last = StreamID.parse(entry.first_id), StreamID.parse(entry.last_id)
        gap_start = previous_last.next() if previous_last is not None else info.first_id
        previous_last = last
        gap_end = min(first.prev(), upto.prev()) if upto is not None else first.prev()
        if gap_start <= gap_end and gap_end >= info.first_id:
            # Between two files (or before the first): live entries there are in no file.
            gap = 0
            for page in iter_pages(client, stream, start=gap_start, end=gap_end):
                gap += len(page)
                tell(len(page))
            result.outside += gap
            result.live_below += gap
        if last < info.first_id:
            continue  # trimmed: nothing of this file is live
        if upto is not None:
            if first >= upto:
                break
            last = min(last, upto.prev())
        live: dict[str, list[bytes]] = {}
        for page in iter_pages(client, stream, start=first, end=last):
            live.update((str(text(entry_id)), flat) for entry_id, flat in page)
            tell(len(page))
        result.live_below += len(live)
        if not live or privacy is None:
            continue
        try:
            table = layout.storage.read_table(entry.file, columns=["id", "fields"])
        except Exception:  # missing or damaged: the file checks report it
            result.unreadable.append(entry.file)
            continue
        archived = dict(
            zip(table.column("id").to_pylist(), table.column("fields").to_pylist(), strict=True)
        )
        for entry_id, flat in live.items():
            stored = archived.get(entry_id)
            if stored is None:
                result.conflicts.append(
                    (
                        entry_id,
                        f"live entry {entry_id} lies inside {entry.file} but is not archived "
                        "(another stream under the same key?)",
                    )
                )
            elif raw_pairs(stored) != raw_pairs(privacy.apply(flat)):
                result.conflicts.append(
                    (
                        entry_id,
                        f"live entry {entry_id} differs from its archived copy in {entry.file}",
                    )
                )
    return result


def _ignore(count: int) -> None:
    """No progress to tell."""


def counter_problem(
    info: StreamInfo,
    files: list[ManifestEntry],
    ledger: list[LedgerRecord],
    state: dict[str, object],
    live_below: int | None,
) -> str | None:
    """Why the stream's counters say it is not the stream archived, or None.

    `live_below` is how many entries at or below the horizon are live (None when not
    counted: the sum is then not checked)."""
    if not files:
        return None
    horizon = StreamID.parse(files[-1].last_id)
    if info.last_generated_id < horizon:
        return (
            f"its last generated ID {info.last_generated_id} is below the archived horizon "
            f"{horizon} (it was deleted and created again)"
        )
    added = info.entries_added
    if added is None:
        return None  # Redis < 7 keeps no counter
    known = state.get("entries_added")
    if isinstance(known, int) and added < known:
        return (
            f"its entries-added counter is {added:,}, below the {known:,} seen at the last "
            "export (it was deleted and created again)"
        )
    if live_below is None:
        return None
    archived, lost = archived_rows(files), recorded_losses(ledger)
    live_above = info.length - live_below
    if added < archived + lost + live_above:
        return (
            f"its entries-added counter is {added:,}, below the {archived:,} entries archived "
            f"+ {lost:,} recorded lost + {live_above:,} live after the archive's end: a stream "
            "never adds fewer entries than it ever held (it was deleted and created again)"
        )
    return None


def only_appended(state: dict[str, object], info: StreamInfo) -> bool:
    """Whether the stream's Redis 7 counters show it only grew, or lost entries, since the
    export that left `state`: never went back, as a stream deleted and created again does
    unless someone set its counters back by hand (XSETID), which only comparing every
    archived entry still live catches (verify and trim do)."""
    before = {
        key: state.get(key)
        for key in ("entries_added", "last_generated_id", "first_id", "max_deleted_entry_id")
    }
    if info.entries_added is None or not isinstance(before["entries_added"], int):
        return False
    if not isinstance(before["last_generated_id"], str) or not isinstance(before["first_id"], str):
        return False
    if info.entries_added < before["entries_added"]:
        return False
    if info.last_generated_id < StreamID.parse(before["last_generated_id"]):
        return False
    if info.first_id is None or info.first_id < StreamID.parse(before["first_id"]):
        return False
    deleted = before["max_deleted_entry_id"]
    if not isinstance(deleted, str):
        return True
    now = info.max_deleted_entry_id
    return now is not None and now >= StreamID.parse(deleted)


def archived_rows(files: list[ManifestEntry]) -> int:
    return sum(entry.rows for entry in files)


def recorded_losses(ledger: list[LedgerRecord]) -> int:
    return sum(int(r.detail.get("count", 0)) for r in ledger if r.kind == "loss")


def raw_pairs(flat: list[bytes]) -> list[tuple[bytes, bytes]]:
    """[f1, v1, f2, v2, ...] as Redis returns an entry, as (name, value) pairs."""
    return list(zip(flat[0::2], flat[1::2], strict=True))
