"""Is the live stream the one that was archived? Counters, last ID, and the horizon entry."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from auditkit._redis.connection import Client, read_with_retry
from auditkit._redis.ids import StreamID
from auditkit._redis.pages import iter_pages

if TYPE_CHECKING:
    from auditkit._archive.archive import Archive

__all__ = ["archived_fields", "comparable", "identity_problem", "raw_pairs", "stream_info"]


def stream_info(client: Client, stream: str) -> dict[str, Any]:
    info: dict[str, Any] = read_with_retry(
        client, lambda: client.xinfo_stream(stream), stream=stream, command="XINFO STREAM"
    )
    for key in ("last-generated-id", "max-deleted-entry-id", "recorded-first-entry-id"):
        if isinstance(info.get(key), bytes):
            info[key] = info[key].decode()
    return info


def identity_problem(
    archive: Archive, client: Client, stream: str, info: dict[str, Any], horizon: StreamID
) -> str | None:
    """Why the live stream is not the one archived, or None when it is."""
    state = archive.storage.read_json(archive._state_path(stream)) or {}
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
    if live and comparable(archive, stream):
        archived = archived_fields(archive, stream, horizon)
        if archived is not None and raw_pairs(archive.privacy.apply(live[0][1])) != archived:
            return f"entry {horizon}, the last archived, now holds other data"
    return None


def archived_fields(
    archive: Archive, stream: str, entry_id: StreamID
) -> list[tuple[bytes, bytes]] | None:
    """The archived field/value pairs of one entry, or None if it is not archived."""
    text = str(entry_id)
    for entry in reversed(archive.entries(stream)):
        if StreamID.parse(entry.first_id) <= entry_id <= StreamID.parse(entry.last_id):
            table = archive.storage.read_table(
                entry.file, columns=["id", "fields"], filters=[("id", "==", text)]
            )
            if table.num_rows == 0:
                return None
            return raw_pairs(table.column("fields")[0].as_py())
    return None


def raw_pairs(flat: list[bytes]) -> list[tuple[bytes, bytes]]:
    """[f1, v1, f2, v2, ...] as Redis returns an entry, as (name, value) pairs."""
    return list(zip(flat[0::2], flat[1::2], strict=True))


def comparable(archive: Archive, stream: str) -> bool:
    """Whether live entries can be compared with archived ones: same privacy rules and key."""
    state = archive.storage.read_json(archive._state_path(stream)) or {}
    written = state.get("privacy") or {"drop": [], "pseudonymize": []}
    same_rules = written == archive.privacy.spec()
    return bool(same_rules and (archive.privacy.key or not written["pseudonymize"]))
