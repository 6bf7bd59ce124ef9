"""`ak.report`: one self-contained HTML file about any streams, with its findings beside it.

It gathers what an auditor needs (findings of the audit, schema drift and archive
verification, the events behind each finding, run metadata) and hands it to `render`;
`evidence` picks the events, `plots` draws the time series.
"""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from auditkit._archive.archive import Archive
from auditkit._audit.audit import audit, stream_history
from auditkit._audit.groups import check_groups
from auditkit._drift.report import DriftReport, schema_drift
from auditkit._exceptions import AuditKitError, NoEvents
from auditkit._findings import FAILING, FINDING_COLUMNS, sort_findings
from auditkit._load.envelope import Envelope, EnvelopeSpec
from auditkit._load.reader import read_arrow
from auditkit._redis.connection import Client, address_of
from auditkit._redis.streams import resolve_streams, streams
from auditkit._report import evidence, plots
from auditkit._report.render import Page, render
from auditkit._secrets import redact

__all__ = ["AuditReport", "report"]


@dataclass(frozen=True)
class AuditReport:
    """What `ak.report` wrote: the HTML file, the findings beside it, and the verdict.

    Attributes:
        html: the report, one self-contained file (`report.html`).
        csv: every finding as CSV (`findings.csv`).
        parquet: every finding as Parquet (`findings.parquet`).
        findings: the findings, worst first (the columns of `ak.audit`).
        verdict: `"fail"` when a finding is critical or an error, else `"pass"`.
    """

    html: Path
    csv: Path
    parquet: Path
    findings: pd.DataFrame = field(repr=False)
    verdict: str

    @property
    def ok(self) -> bool:
        """True when the verdict is `pass`."""
        return self.verdict == "pass"

    def __repr__(self) -> str:
        counts = self.findings["severity"].value_counts().to_dict()
        return f"<AuditReport {self.verdict} findings={counts} html={str(self.html)!r}>"


def report(
    client: Client,
    streams: str | Sequence[str],
    *,
    output: str | os.PathLike[str],
    archive: Archive | str | os.PathLike[str] | None = None,
    envelope: EnvelopeSpec = None,
    findings: pd.DataFrame | None = None,
    window: str = "week",
    title: str = "auditkit report",
    evidence_rows: int = 20,
) -> AuditReport:
    """Audit streams and write an auditor's HTML report, with the findings as CSV and Parquet.

    The report is one HTML file that works offline: the verdict first, every finding in a
    table that sorts, filters and searches, each linked to the events behind it, plots
    over continuous time, the run's metadata and a catalogue of the checks.

    Args:
        client: the Redis holding the streams.
        streams: a key, a glob pattern, or a list of keys and patterns.
        output: the folder to write `report.html`, `findings.csv` and `findings.parquet`
            to (created when missing).
        archive: an Archive (or its folder or URL): its verification joins the findings
            and the run metadata shows each archived stream's checkpoint.
        envelope: how to read the streams (an Envelope, a dict, a preset name, a TOML file).
        findings: audit findings already computed (the default runs `ak.audit` on each
            stream); schema drift is added either way.
        window: the schema drift window (see `ak.schema_drift`).
        title: the report's title.
        evidence_rows: at most this many events shown for each finding's evidence.

    Returns:
        An AuditReport: the paths written, the findings and the verdict.

    Raises:
        StreamNotFound: a key does not exist, or a pattern matches no stream.
        ArchiveError: `archive` holds none of the streams (it does not exist, say).

    Example:
        >>> result = report(r, "orders", output="audit-report")
        >>> result.verdict, result.html.name
        ('fail', 'report.html')
    """
    if not isinstance(evidence_rows, int) or isinstance(evidence_rows, bool) or evidence_rows < 1:
        raise ValueError(f"evidence_rows must be a positive integer, got `{evidence_rows!r}`.")
    started = time.time()
    keys = _keys(client, streams)
    arc = archive if archive is None or isinstance(archive, Archive) else Archive(archive)
    if findings is None:
        findings = _audit(client, keys, arc, envelope)
    # A stream the archive holds is reported over its whole history, archive then live.
    held = set(arc.streams()) if arc is not None else set()
    history: dict[str, pa.Table] = {}
    for key in keys:
        table = stream_history(arc, client, key) if arc is not None and key in held else None
        if table is not None:
            history[key] = table
    drifts, drift_notes = _drift(client, keys, envelope, window, history)
    parts = [findings, *(d.findings for d in drifts.values())]
    parts = [p[FINDING_COLUMNS] for p in parts if len(p)]
    every = (
        sort_findings(pd.concat(parts, ignore_index=True))
        if parts
        else pd.DataFrame(columns=FINDING_COLUMNS)
    )
    tables = {
        key: history[key]
        if key in history
        else read_arrow(client, key, envelope=envelope, keep_payload=True)
        for key in keys
    }
    verdict = "fail" if every["severity"].isin(FAILING).any() else "pass"

    target = Path(output)
    target.mkdir(parents=True, exist_ok=True)
    csv, parquet, html = (
        target / "findings.csv",
        target / "findings.parquet",
        target / "report.html",
    )
    every.to_csv(csv, index=False)
    every.astype({c: "string" for c in FINDING_COLUMNS}).to_parquet(parquet, index=False)
    found = evidence.collect(client, every, tables, drifts, envelope=envelope, rows=evidence_rows)
    page = Page(
        title=title,
        verdict=verdict,
        findings=every,
        links=found.links,
        evidence=found.sections,
        plots=plots.draw(tables),
        metadata=_metadata(client, keys, arc, envelope, window, started),
        streams=_overview(client, keys),
        checkpoints=_checkpoints(arc, keys),
        notes=drift_notes,
        files={"CSV": csv.name, "Parquet": parquet.name},
    )
    html.write_text(render(page), encoding="utf-8")
    return AuditReport(html=html, csv=csv, parquet=parquet, findings=every, verdict=verdict)


def _keys(client: Client, given: str | Sequence[str]) -> list[str]:
    """Each pattern scanned, each key checked: an unknown one raises StreamNotFound."""
    items = [given] if isinstance(given, str) else list(given)
    keys: list[str] = []
    for item in items:
        keys.extend(resolve_streams(client, item))
    return list(dict.fromkeys(keys))


def _audit(
    client: Client, keys: list[str], archive: Archive | None, envelope: EnvelopeSpec
) -> pd.DataFrame:
    return audit(client, keys, archive=archive, envelope=envelope)


def _drift(
    client: Client,
    keys: list[str],
    envelope: EnvelopeSpec,
    window: str,
    history: dict[str, pa.Table],
) -> tuple[dict[str, DriftReport], list[str]]:
    reports: dict[str, DriftReport] = {}
    notes: list[str] = []
    for key in keys:
        try:
            source: Any = history.get(key, (client, key))
            reports[key] = schema_drift(source, window=window, envelope=envelope)
        except NoEvents as exc:  # a stream with no event types has no schema to drift
            notes.append(f"Schema drift of `{key}` not checked: {exc}")
    return reports, notes


def _overview(client: Client, keys: list[str]) -> pd.DataFrame:
    frames = [streams(client, key) for key in keys]
    frame = pd.concat([f for f in frames if len(f)], ignore_index=True)
    frame = frame[frame["key"].isin(keys)]
    columns = ["key", "length", "first_id", "last_id", "first_ts", "last_ts", "groups"]
    return frame[[c for c in columns if c in frame.columns]].reset_index(drop=True)


def _metadata(
    client: Client,
    keys: list[str],
    archive: Archive | None,
    envelope: EnvelopeSpec,
    window: str,
    started: float,
) -> dict[str, Any]:
    server = _server(client)
    return {
        "generated": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started)),
        "took": f"{time.time() - started:.1f} s",
        "auditkit": _version("auditkit"),
        "Redis": server.get("redis_version", "unknown"),
        "pyarrow": pa.__version__,
        "DuckDB": _version("duckdb"),
        "pandas": pd.__version__,
        "server": redact(address_of(client)),
        "server mode": server.get("redis_mode", "unknown"),
        "server settings": _settings(client),
        "streams": ", ".join(keys),
        "archive": redact(str(archive.root)) if archive is not None else "none",
        "thresholds": _thresholds(window),
        "envelope": Envelope.of(envelope).to_toml(),
    }


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


def _server(client: Client) -> dict[str, Any]:
    try:
        info = client.info("server")
    except Exception:  # an ACL may refuse INFO: the report still says what it can
        return {}
    if info and all(isinstance(v, dict) for v in info.values()):  # a cluster: one per node
        info = next(iter(info.values()))
    return dict(info)


def _settings(client: Client) -> str:
    values = []
    for name in ("appendonly", "appendfsync", "save", "maxmemory-policy"):
        try:
            reply: Any = client.config_get(name)
        except Exception:  # CONFIG refused or renamed: durability-unknown says so
            return "unknown (CONFIG GET refused)"
        if isinstance(reply, dict) and reply and all(isinstance(v, dict) for v in reply.values()):
            reply = next(iter(reply.values()))
        values.append(f"{name} {reply.get(name, '?') or '(empty)'}")
    return "; ".join(values)


def _thresholds(window: str) -> str:
    """The defaults the checks ran with, read from their signatures so they cannot drift."""
    shown = [f"drift window {window}"]
    for function in (audit, check_groups):
        for name, parameter in inspect.signature(function).parameters.items():
            default = parameter.default
            if isinstance(default, timedelta) or (
                isinstance(default, int) and not isinstance(default, bool)
            ):
                text = _human(default) if isinstance(default, timedelta) else f"{default:,}"
                shown.append(f"{name} {text}")
    return "; ".join(dict.fromkeys(shown))


def _human(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def _checkpoints(archive: Archive | None, keys: list[str]) -> dict[str, str]:
    if archive is None:
        return {}
    held = set(archive.streams())
    out: dict[str, str] = {}
    for key in keys:
        if key not in held:
            out[key] = "not archived"
            continue
        try:
            out[key] = str(archive.checkpoint(key))
        except AuditKitError as exc:
            out[key] = f"no checkpoint: {exc}"
    return out
