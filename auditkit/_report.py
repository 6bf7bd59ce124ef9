"""A self-contained HTML report: streams, audit findings, schema drift, with plots inline."""

from __future__ import annotations

import base64
import html
import io
import time
from pathlib import Path
from typing import Any

import pandas as pd

from auditkit._audit.audit import audit
from auditkit._drift.report import DriftReport, schema_drift
from auditkit._load.reader import read_pandas
from auditkit._redis.connection import Client, address_of
from auditkit._redis.streams import streams

__all__ = ["write_report"]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; color: #222; }
h1 { font-size: 1.6rem; }
h2 { font-size: 1.25rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.critical, td.error { color: #a40000; font-weight: 600; }
td.warning { color: #8a5a00; } img { max-width: 100%; } .muted { color: #777; }
"""


def write_report(
    client: Client,
    pattern: str,
    folder: str | Path,
    *,
    findings: pd.DataFrame | None = None,
    drift: DriftReport | None = None,
    title: str = "auditkit report",
) -> Path:
    """Write `<folder>/index.html` about the streams matching `pattern`; returns its path.

    `findings` defaults to `audit(client, pattern)`, `drift` to a weekly `schema_drift`.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    overview = streams(client, pattern)
    if findings is None:
        findings = audit(client, pattern)
    if drift is None:
        drift = schema_drift((client, pattern), window="week")
    events = read_pandas(client, pattern, progress=False)
    sections = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p class=muted>{html.escape(address_of(client))} "
        f"· {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} · streams matching "
        f"<code>{html.escape(pattern)}</code></p>",
        "<h2>Streams</h2>",
        _table(overview[["key", "length", "first_ts", "last_ts", "groups", "entries_added"]]),
    ]
    figure, axis = plt.subplots(figsize=(10, 3.5))
    daily = events.groupby([events["ts"].dt.floor("D"), "stream"]).size().unstack(fill_value=0)
    daily.plot(ax=axis, linewidth=1.2)
    axis.set_title("Events per day, per stream (record time, UTC)")
    axis.set_xlabel("day")
    axis.set_ylabel("events per day")
    figure.tight_layout()
    sections.append(_image(figure))
    plt.close(figure)
    sections.append(f"<h2>Audit: {len(findings)} finding(s)</h2>")
    if len(findings):
        summary = findings.groupby(["severity", "check"], sort=False).size().rename("findings")
        sections.append(_table(summary.reset_index()))
        sections.append("<p>The first 25, worst first:</p>")
        sections.append(_table(findings.head(25), severity=True))
    else:
        sections.append("<p>No finding.</p>")
    sections.append(f"<h2>Schema drift: {len(drift.findings)} finding(s)</h2>")
    if len(drift.findings):
        sections.append(_table(drift.findings[["check", "severity", "detail"]], severity=True))
    if len(drift.timeline):
        for event_type in drift.timeline.groupby("event_type")["events"].sum().nlargest(2).index:
            figure = drift.plot(event_type)
            sections.append(_image(figure))
            plt.close(figure)
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    page = (
        f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body>{''.join(sections)}</body></html>"
    )
    path = target / "index.html"
    path.write_text(page)
    return path


def _table(frame: pd.DataFrame, *, severity: bool = False) -> str:
    rows = []
    header = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    for record in frame.itertuples(index=False):
        cells = []
        for column, value in zip(frame.columns, record, strict=True):
            text = (
                "" if value is None or (isinstance(value, float) and value != value) else str(value)
            )
            css = f" class={html.escape(text)}" if severity and column == "severity" else ""
            cells.append(f"<td{css}>{html.escape(text)}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><tr>{header}</tr>{''.join(rows)}</table>"


def _image(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    data = base64.b64encode(buffer.getvalue()).decode()
    return f'<img alt="plot" src="data:image/png;base64,{data}">'
