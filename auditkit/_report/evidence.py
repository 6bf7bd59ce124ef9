"""The events behind each finding: an aggregate's events, a pending entry and its payload,
the samples of a drift window. Each finding gets one anchor in the report, or none."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from auditkit._audit.groups import pending_entries
from auditkit._drift.report import DriftReport
from auditkit._load.envelope import EnvelopeSpec
from auditkit._redis.connection import Client
from auditkit._report.catalogue import entry

__all__ = ["Evidence", "Section", "collect"]

PENDING_CHECKS = frozenset({"poison-message", "pending-stale", "pending-trimmed"})
_ENVELOPE = ["id", "ts", "event_type", "schema_version", "aggregate_id", "occurred_at"]
_QUOTED = re.compile(r"`([^`]+)`")
_FIELD = re.compile(r"field `([^`]+)`")


@dataclass
class Section:
    """One piece of evidence: a heading, what it shows, its tables, the findings it backs."""

    anchor: str
    title: str
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    hits: set[str] = field(default_factory=set)
    findings: list[int] = field(default_factory=list)


@dataclass
class Evidence:
    """Per finding row, the anchor it links to (or None); the sections, in finding order."""

    links: list[str | None]
    sections: list[Section]


def collect(
    client: Client,
    findings: pd.DataFrame,
    tables: dict[str, pa.Table],
    drifts: dict[str, DriftReport],
    *,
    envelope: EnvelopeSpec,
    rows: int,
) -> Evidence:
    """Pick the evidence of every finding, at most `rows` events per section."""
    wanted = _wanted(findings, tables)
    frames = {key: _rows(tables[key], *wanted[key]) for key in wanted}
    pending: dict[str, pd.DataFrame] = {}
    sections: dict[str, Section] = {}
    links: list[str | None] = []
    for number, row in enumerate(findings.to_dict("records")):
        stream, check = row["stream"], row["check"]
        entry_id, aggregate = _given(row["id"]), _given(row["aggregate_id"])
        family = entry(check).family
        anchor: str | None = None
        if stream is None or stream not in tables:
            anchor = "archive" if family == "archive" else "run" if stream is None else None
        elif check in PENDING_CHECKS and entry_id is not None:
            anchor = f"ev-pending-{_slug(stream)}-{entry_id}"
            if anchor not in sections:
                if stream not in pending:
                    pending[stream] = pending_entries(client, stream, envelope=envelope)
                sections[anchor] = _pending(
                    anchor, stream, entry_id, pending[stream], frames[stream]
                )
        elif aggregate is not None:
            anchor = f"ev-aggregate-{_slug(stream)}-{_slug(aggregate)}"
            if anchor not in sections:
                sections[anchor] = Section(anchor, f"Aggregate `{aggregate}` in `{stream}`")
                events = frames[stream]
                events = events[events["aggregate_id"].astype("string") == aggregate]
                sections[anchor].tables.append(("", events))
        elif stream in drifts and "schema drift" in family:
            anchor = f"ev-drift-{number}"
            sections[anchor] = _drift(
                anchor, stream, row, tables[stream], drifts[stream], rows=rows
            )
        elif entry_id is not None:
            anchor = f"ev-entry-{_slug(stream)}-{entry_id}"
            if anchor not in sections:
                events = frames[stream]
                sections[anchor] = Section(anchor, f"Entry {entry_id} in `{stream}`")
                sections[anchor].tables.append(("", events[events["id"] == entry_id]))
        elif family == "archive":
            anchor = "archive"
        if anchor in sections:
            sections[anchor].findings.append(number)
            if entry_id is not None:
                sections[anchor].hits.add(entry_id)
        links.append(anchor)
    for section in sections.values():
        section.tables = [
            (caption, _capped(frame, section, rows)) for caption, frame in section.tables
        ]
    return Evidence(links, list(sections.values()))


def _given(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and value != value) or value is pd.NA:
        return None
    return str(value)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.:-]+", "_", text)


def _wanted(
    findings: pd.DataFrame, tables: dict[str, pa.Table]
) -> dict[str, tuple[set[str], set[str]]]:
    """Per stream, the aggregates and entry IDs the findings name: read once, not per finding."""
    wanted: dict[str, tuple[set[str], set[str]]] = {key: (set(), set()) for key in tables}
    for row in findings.to_dict("records"):
        if row["stream"] not in wanted:
            continue
        aggregates, ids = wanted[row["stream"]]
        if (aggregate := _given(row["aggregate_id"])) is not None:
            aggregates.add(aggregate)
        if (entry_id := _given(row["id"])) is not None:
            ids.add(entry_id)
    return wanted


def _rows(table: pa.Table, aggregates: set[str], ids: set[str]) -> pd.DataFrame:
    """The table's rows of those aggregates or IDs, with the columns a reader needs."""
    mask = pc.is_in(table.column("id"), pa.array(sorted(ids), pa.string()))
    if aggregates and "aggregate_id" in table.column_names:
        column = pc.cast(table.column("aggregate_id"), pa.string())
        mask = pc.or_(mask, pc.is_in(column, pa.array(sorted(aggregates), pa.string())))
    picked = table.filter(pc.fill_null(mask, False))
    return _readable(picked)


def _readable(table: pa.Table) -> pd.DataFrame:
    """Envelope columns first, then the payload's text (or, with no payload, the fields)."""
    names = table.column_names
    shown = [c for c in _ENVELOPE if c in names]
    if "payload" in names:
        shown.append("payload")
    else:
        rest = [c for c in names if c not in shown and c not in ("stream", "seq")]
        shown.extend(rest[:8])
    if "payload_error" in names and "payload_error" not in shown:
        shown.append("payload_error")
    frame: pd.DataFrame = table.select(shown).to_pandas()
    if "aggregate_id" not in frame.columns:
        frame["aggregate_id"] = None
    return frame


def _pending(
    anchor: str, stream: str, entry_id: str, pending: pd.DataFrame, events: pd.DataFrame
) -> Section:
    section = Section(anchor, f"Pending entry {entry_id} in `{stream}`")
    rows = pending[pending["id"] == entry_id]
    columns = [c for c in ("group", "consumer", "id", "idle_ms", "deliveries") if c in rows]
    section.tables.append(("Who holds it (XPENDING)", rows[columns]))
    message = events[events["id"] == entry_id]
    caption = (
        "The message and its payload"
        if len(message)
        else "The message no longer exists in the stream: it was trimmed or deleted"
    )
    section.tables.append((caption, message))
    return section


def _drift(
    anchor: str, stream: str, row: dict[Any, Any], table: pa.Table, drift: DriftReport, *, rows: int
) -> Section:
    """Samples of the event types the finding names, in the windows it names: some of each
    schema version and of events with and without the field it names."""
    detail = str(row["detail"])
    quoted = set(_QUOTED.findall(detail))
    timeline = drift.timeline
    types = [t for t in timeline["event_type"].dropna().unique() if t in quoted]
    section = Section(anchor, f"Samples for `{row['check']}` in `{stream}`")
    if not types or "event_type" not in table.column_names:
        section.tables.append(("The finding names no event type to sample", pd.DataFrame()))
        return section
    cells = timeline[timeline["event_type"].isin(types)]
    named = cells[[str(w) in detail for w in cells["window"]]]
    mask = pc.is_in(table.column("event_type"), pa.array(types, pa.string()))
    where = f"events of type {', '.join(f'`{t}`' for t in types)}"
    if len(named):
        first, last = named["first_ts"].min(), named["last_ts"].max()
        ts = table.column("ts")
        mask = pc.and_(mask, pc.greater_equal(ts, pa.scalar(first, ts.type)))
        mask = pc.and_(mask, pc.less_equal(ts, pa.scalar(last, ts.type)))
        where += f" in {', '.join(f'`{w}`' for w in named['window'].unique())}"
    picked = table.filter(pc.fill_null(mask, False))
    frame = _readable(picked)
    strata = (
        [frame["schema_version"].astype("string").fillna("")] if "schema_version" in frame else []
    )
    for path in _FIELD.findall(detail):
        column = f"payload.{path}"
        if column in table.column_names and column not in frame.columns:
            values = picked.column(column).to_pandas().astype("string")
            frame.insert(min(6, len(frame.columns)), column, values)
            strata.append(values.isna().map({True: "absent", False: "present"}))
            if "payload" in frame:  # written as text or not: `"15"` for `15` shows here
                text = f'"{re.escape(path.rsplit(".", 1)[-1])}"\\s*:\\s*"'
                as_text = frame["payload"].astype("string").str.contains(text, regex=True)
                strata.append(as_text.map({True: "text", False: "not text"}))
    if strata and len(frame) > rows:
        # A few of each version and of events with and without the field, in stream order:
        # the first rows alone would often show one side of the change only.
        groups = frame.groupby(strata, sort=False, dropna=False)
        share = max(1, rows // max(1, groups.ngroups))
        frame = frame.loc[sorted(groups.head(share).index)].assign()
        frame.attrs["total"] = len(picked)
    section.tables.append((f"Samples of {where}", frame))
    return section


def _capped(frame: pd.DataFrame, section: Section, rows: int) -> pd.DataFrame:
    """At most `rows` rows, around the first row a finding names; the caption says so."""
    frame = frame.reset_index(drop=True)
    if "payload_error" in frame and frame["payload_error"].isna().all():
        frame = frame.drop(columns="payload_error")
    total = len(frame)
    if total <= rows:
        sampled = int(frame.attrs.get("total", total))
        frame.attrs["shown"] = (
            f"{total:,} of {sampled:,}, some of each schema version and of events with and "
            "without the field"
            if sampled > total
            else f"all {total:,}"
            if total > 1
            else ""
        )
        return frame
    hits: list[int] = list(frame.index[frame["id"].isin(section.hits)]) if "id" in frame else []
    start = max(0, min(int(hits[0]) - rows // 2, total - rows)) if len(hits) else 0
    capped = frame.iloc[start : start + rows]
    where = "around the finding's entry" if len(hits) else "the first ones"
    capped.attrs["shown"] = (
        f"{rows:,} of {total:,}, {where}: the report shows at most {rows:,} rows per table"
    )
    return capped
