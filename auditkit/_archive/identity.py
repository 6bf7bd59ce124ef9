"""Is the live stream the one that was archived? Counters, last ID, and the horizon entry."""

from __future__ import annotations

from auditkit._archive.layout import ArchiveLayout, ExportState
from auditkit._archive.manifest import ManifestEntry
from auditkit._archive.privacy import Privacy
from auditkit._redis.connection import Client
from auditkit._redis.ids import StreamID
from auditkit._redis.pages import iter_pages
from auditkit._redis.xinfo import StreamInfo

__all__ = ["archived_fields", "comparable", "identity_problem", "raw_pairs"]


def identity_problem(
    layout: ArchiveLayout,
    privacy: Privacy,
    client: Client,
    info: StreamInfo,
    entries: list[ManifestEntry],
    state: ExportState | None,
    horizon: StreamID,
) -> str | None:
    """Why the live stream is not the one archived, or None when it is.

    `entries` and `state` are the stream's manifest and export state, read once by the
    caller; `horizon` is the archived ID the caller relies on.
    """
    known = state.entries_added if state is not None else None
    if info.entries_added is not None and known is not None and info.entries_added < known:
        return (
            f"its entries-added counter is {info.entries_added:,}, below the {known:,} seen at "
            "the last export (it was deleted and created again)"
        )
    if info.last_generated_id < horizon:
        return (
            f"its last generated ID {info.last_generated_id} is below the archived horizon "
            f"{horizon}"
        )
    live = [
        entry for page in iter_pages(client, info.key, start=horizon, end=horizon) for entry in page
    ]
    if live and comparable(privacy, state):
        archived = archived_fields(layout, entries, horizon)
        if archived is not None and raw_pairs(privacy.apply(live[0][1])) != archived:
            return f"entry {horizon}, the last archived, now holds other data"
    return None


def archived_fields(
    layout: ArchiveLayout, entries: list[ManifestEntry], entry_id: StreamID
) -> list[tuple[bytes, bytes]] | None:
    """The archived field/value pairs of one entry, or None if it is not archived."""
    text = str(entry_id)
    for entry in reversed(entries):
        if StreamID.parse(entry.first_id) <= entry_id <= StreamID.parse(entry.last_id):
            table = layout.storage.read_table(
                entry.file, columns=["id", "fields"], filters=[("id", "==", text)]
            )
            if table.num_rows == 0:
                return None
            return raw_pairs(table.column("fields")[0].as_py())
    return None


def raw_pairs(flat: list[bytes]) -> list[tuple[bytes, bytes]]:
    """[f1, v1, f2, v2, ...] as Redis returns an entry, as (name, value) pairs."""
    return list(zip(flat[0::2], flat[1::2], strict=True))


def comparable(privacy: Privacy, state: ExportState | None) -> bool:
    """Whether live entries can be compared with archived ones: same privacy rules and key."""
    written = state.privacy if state is not None else {"drop": [], "pseudonymize": []}
    same_rules = written == privacy.spec()
    return bool(same_rules and (privacy.key or not written.get("pseudonymize")))
