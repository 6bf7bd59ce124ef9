"""Trim: remove from the stream only what the archive holds, proven again right before.

The cut comes from the manifest read and re-verified under the lease, never from a marker
an earlier verify left (a marker can be forged or stale). Before XTRIM, every live entry
that goes is compared byte for byte with its archived copy, the files' hashes and the chain
are checked, the stream's counters must show it is the stream archived, every recorded
loss must be acknowledged, and no consumer group may lose an entry it was not delivered or
has not acknowledged (unless told so, separately for each).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from auditkit._archive.checkpoint import Anchor, check_anchor
from auditkit._archive.export import recorded_privacy, require_format
from auditkit._archive.identity import (
    archived_rows,
    compare_live,
    counter_problem,
    recorded_losses,
)
from auditkit._archive.layout import ArchiveLayout, StreamWriter
from auditkit._archive.manifest import Chain, ManifestEntry
from auditkit._archive.privacy import Privacy
from auditkit._archive.verify import acknowledged, check_offline
from auditkit._display import card_html
from auditkit._exceptions import ArchiveError, TrimRefused
from auditkit._progress import progress_bar
from auditkit._redis.connection import Client, node_for, redis_errors
from auditkit._redis.ids import StreamID
from auditkit._redis.pages import iter_pages
from auditkit._redis.text import text
from auditkit._redis.xinfo import StreamInfo, group_infos, stream_info

__all__ = ["TrimPlan", "plan_trim"]


@dataclass(frozen=True, slots=True)
class TrimPlan:
    """What a trim removes: every check passed, nothing removed yet."""

    stream: str
    minid: str
    """XTRIM MINID: the entries below it go."""
    entries: int
    first_id: str | None
    last_id: str | None
    horizon: str
    """The last archived ID (verified again for this plan)."""

    def __str__(self) -> str:
        if not self.entries:
            return (
                f"{self.stream}: nothing to trim below {self.minid} (archived up to {self.horizon})"
            )
        return (
            f"{self.stream}: {self.entries:,} entries, {self.first_id} .. {self.last_id}, "
            f"would go (XTRIM MINID {self.minid}); archived and verified up to {self.horizon}"
        )

    def _repr_html_(self) -> str:
        status = (
            (f"{self.entries:,} entries would go", "#d97706")
            if self.entries
            else ("nothing to trim", "#6b7280")
        )
        facts = [
            ("stream", self.stream),
            ("entries", f"{self.first_id} .. {self.last_id}" if self.entries else "none"),
            ("XTRIM MINID", self.minid),
            ("archived and verified up to", self.horizon),
        ]
        return card_html("Trim plan (nothing removed yet)", status=status, facts=facts)


def plan_trim(
    layout: ArchiveLayout,
    writer: StreamWriter,
    privacy: Privacy,
    client: Client,
    *,
    limit: StreamID | None,
    allow_pending: bool,
    allow_undelivered: bool,
    anchor: Anchor | None = None,
    progress: bool | None = False,
) -> TrimPlan:
    """Check everything a trim needs, under the writer's lease; raise TrimRefused if not."""
    stream = writer.stream
    require_format(layout)
    try:
        writer.require_sound("trimmed")
    except ArchiveError as exc:
        raise TrimRefused(f"Refusing to trim `{stream}`: {exc}", stream=stream) from None
    chain, files = writer.chain, writer.chain.files
    if not files:
        raise TrimRefused(
            f"Nothing of `{stream}` is archived in {layout.storage.url}; export first.",
            stream=stream,
        )
    # The files may have changed since they were written: trimming leaves them the only
    # copy, so their hashes, row counts and the chain are checked again, now.
    broken = check_offline(layout, stream, chain, writer.files, progress=progress)
    if not broken.empty:
        first = broken.iloc[0]
        raise TrimRefused(
            f"Refusing to trim `{stream}`: the archive no longer matches its manifest "
            f"({first['check']}: {first['detail']}; {len(broken)} finding(s)). Run "
            "`auditkit verify` for the full report.",
            stream=stream,
        )
    if anchor is not None:
        _refuse_unanchored(layout, stream, anchor)
    role = _role(client, stream)
    if role != "master":
        raise TrimRefused(
            f"The server is a {role}; trim the primary instead (a replica's stream follows "
            "its primary).",
            stream=stream,
        )
    try:
        rules = privacy.for_files(files).for_archive(recorded_privacy(files), True, stream, "trim")
    except ArchiveError as exc:
        raise TrimRefused(
            f"Refusing to trim `{stream}`: its live entries cannot be compared with the "
            f"archive. {exc}",
            stream=stream,
        ) from None
    horizon = StreamID.parse(files[-1].last_id)
    minid = horizon.next()
    if limit is not None and limit < minid:
        minid = limit
    info = stream_info(client, stream)
    total = info.length if info.last_generated_id <= horizon else None
    with progress_bar(
        total=total, desc=f"trim {stream} live", unit="entry", enabled=progress
    ) as bar:
        live = compare_live(layout, rules, client, stream, files, info, on_page=bar.update)
    state = chain.header.state if chain.header is not None else {}
    problem = counter_problem(info, files, chain.ledger, state, live.live_below)
    if problem is not None:
        raise TrimRefused(f"Refusing to trim `{stream}`: {problem}.", stream=stream)
    if live.conflicts:
        _, detail = live.conflicts[0]
        raise TrimRefused(
            f"Refusing to trim `{stream}`: {detail} ({len(live.conflicts):,} entries differ). "
            "Run `auditkit verify` for the full report.",
            stream=stream,
        )
    # Each reason that stands is named, so one dry run tells an operator everything to fix.
    reasons = _losses(chain, info, live.live_below, stream)
    if not allow_pending:
        reasons += _pending(client, stream, minid)
    if not allow_undelivered:
        reasons += _undelivered(client, stream, minid)
    first_id, last_id, count, outside = _range_below(client, stream, minid, files)
    if outside:
        where, number = outside
        reasons.append(
            f"Refusing to trim `{stream}`: {number:,} live entries below the cut {minid} lie "
            f"in no archived file (the first {where}): removing them would lose them. The "
            "manifest does not cover them (a file lost, then the manifest rebuilt?); export "
            "cannot archive them again below its horizon. Restore the missing file from a "
            "backup, or trim only below them with before=."
        )
    if len(reasons) == 1:
        raise TrimRefused(reasons[0], stream=stream)
    if reasons:
        listed = " ".join(f"({n}) {reason}" for n, reason in enumerate(reasons, 1))
        raise TrimRefused(
            f"Refusing to trim `{stream}` for {len(reasons)} reasons: {listed}", stream=stream
        )
    return TrimPlan(stream, str(minid), count, first_id, last_id, str(horizon))


def _refuse_unanchored(layout: ArchiveLayout, stream: str, anchor: Anchor) -> None:
    """Refuse unless the archive extends the checkpoints kept outside it (verify's check)."""
    problems: list[str] = []

    def note(check: str, severity: str, detail: str, entry_id: str | None = None) -> None:
        if severity in ("warning", "error", "critical"):
            problems.append(f"{detail} ({check})")

    check_anchor(layout, stream, anchor, note)
    if problems:
        raise TrimRefused(
            f"Refusing to trim `{stream}`: {'; '.join(problems)}. Trimming would leave this "
            "archive the only copy; run `auditkit verify --since` for the full report.",
            stream=stream,
        )


def _losses(chain: Chain, info: StreamInfo, live_below: int, stream: str) -> list[str]:
    """A refusal while a loss is recorded and not acknowledged, or counted and not recorded."""
    acks = acknowledged(chain)
    open_losses = [r for r in chain.ledger if r.kind == "loss" and r.n not in acks]
    if open_losses:
        record = open_losses[0]
        return [
            f"Refusing to trim `{stream}`: the ledger records {len(open_losses)} loss(es) not "
            f"acknowledged, such as record {record.n} ({record.detail.get('count'):,} entries "
            f"after {record.detail.get('after') or 'the start'}). Look into it, then "
            f"acknowledge it: `auditkit acknowledge {stream} {record.n} --reason TEXT` "
            "(Archive.acknowledge)."
        ]
    if info.entries_added is None:
        return []
    files = chain.files
    missing = (
        info.entries_added
        - archived_rows(files)
        - recorded_losses(chain.ledger)
        - (info.length - live_below)
    )
    if missing > 0:
        return [
            f"Refusing to trim `{stream}`: {missing:,} entries left the stream before they "
            "could be archived and no ledger records it yet. Run `auditkit verify` (or "
            "export) to record it, look into it, and acknowledge it."
        ]
    return []


def _range_below(
    client: Client, stream: str, minid: StreamID, files: list[ManifestEntry]
) -> tuple[str | None, str | None, int, tuple[str, int] | None]:
    """The first and last live entry below `minid`, how many there are, and the first of
    those no archived file's range holds with their number (None when every one is held)."""
    first = last = None
    count = 0
    outside_first, outside = None, 0
    if minid == StreamID.MIN:
        return None, None, 0, None
    starts = [StreamID.parse(e.first_id) for e in files]
    ends = [StreamID.parse(e.last_id) for e in files]
    for page in iter_pages(client, stream, end=minid.prev()):
        if first is None:
            first = text(page[0][0])
        last = text(page[-1][0])
        count += len(page)
        for entry_id, _ in page:
            at = StreamID.parse(entry_id)
            i = bisect.bisect_right(starts, at) - 1
            if i < 0 or at > ends[i]:
                outside += 1
                outside_first = outside_first or str(at)
    held = None if not outside else (outside_first or "", outside)
    return first, last, count, held


def _role(client: Client, stream: str) -> str:
    """The role of the server that holds `stream` (in a cluster: the node of its slot)."""
    with redis_errors(client, command="INFO replication"):
        return str(node_for(client, stream).info("replication").get("role", "unknown"))


def _pending(client: Client, stream: str, minid: StreamID) -> list[str]:
    """A refusal per group with entries delivered and not acknowledged below `minid`."""
    reasons = []
    for group in group_infos(client, stream):
        name = group["name"]
        if not group.get("pending"):
            continue
        with redis_errors(client, stream=stream, command="XPENDING"):
            summary = client.xpending(stream, group["raw_name"])
        lowest = summary.get("min")
        if lowest is not None and StreamID.parse(lowest) < minid:
            reasons.append(
                f"Consumer group `{name}` of `{stream}` has {summary['pending']:,} pending "
                f"entries, the oldest {text(lowest)}, below the trim point {minid}: they "
                "were delivered and not acknowledged. Let the consumers acknowledge them (or "
                "XCLAIM and handle them), or pass allow_pending=True (--allow-pending)."
            )
    return reasons


def _undelivered(client: Client, stream: str, minid: StreamID) -> list[str]:
    """A refusal per group not yet delivered entries below `minid`."""
    reasons = []
    for group in group_infos(client, stream):
        delivered = StreamID.parse(group["last-delivered-id"] or "0-0")
        if delivered.next() >= minid:
            continue
        end = minid.prev()
        pages = iter_pages(client, stream, start=delivered.next(), end=end)
        count = sum(len(page) for page in pages)
        if count:
            reasons.append(
                f"Consumer group `{group['name']}` of `{stream}` has not been delivered "
                f"{count:,} entries below the trim point {minid} (it read up to {delivered}); "
                "trimming would remove them before its consumers see them. Let the group "
                "catch up, trim with before= below its position, or pass "
                "allow_undelivered=True (--allow-undelivered)."
            )
    return reasons
