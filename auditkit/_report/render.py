"""The report's HTML: one file, inline CSS and JavaScript, nothing fetched from anywhere.

The findings table sorts (click a header), filters by severity and check, and searches,
with plain JavaScript; printed, its header repeats on every page and no row is split.
"""

from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from auditkit._findings import SEVERITIES
from auditkit._report.catalogue import CATALOGUE, entry
from auditkit._report.evidence import Section
from auditkit._report.plots import Plot

__all__ = ["Page", "render"]

_QUOTED = re.compile(r"`([^`]+)`")
_LINK_WORDS = {"run": "server", "archive": "archive"}
_STREAM_ID = re.compile(r"^(\d+)-(\d+)$")


@dataclass
class Page:
    """Everything the report shows, gathered by `report`."""

    title: str
    verdict: str
    findings: pd.DataFrame
    links: list[str | None]
    evidence: list[Section]
    plots: list[Plot]
    metadata: dict[str, Any]
    streams: pd.DataFrame
    checkpoints: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)


def render(page: Page) -> str:
    """The whole HTML document."""
    body = [
        _verdict(page),
        _nav(),
        _findings(page),
        _plots(page.plots),
        _evidence(page),
        _archive(page.checkpoints),
        _catalogue(page.findings),
        _run(page),
    ]
    title = html.escape(page.title)
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f'<link rel=icon href="data:,"><title>{title}</title><style>{_STYLE}</style></head>'
        f"<body><h1>{title}</h1>{''.join(body)}<script>{_SCRIPT}</script></body></html>\n"
    )


def quoted(text: str) -> str:
    """Escape text for HTML; a value in backticks becomes `<code>`."""
    return _QUOTED.sub(r"<code>\1</code>", html.escape(text, quote=False))


def _verdict(page: Page) -> str:
    counts = page.findings["severity"].value_counts()
    parts = [f'<span class="badge {s}">{int(counts.get(s, 0)):,} {s}</span>' for s in SEVERITIES]
    word = "FAIL" if page.verdict == "fail" else "PASS"
    why = (
        "at least one finding is critical or an error"
        if page.verdict == "fail"
        else "no finding is critical or an error"
    )
    streams = ", ".join(f"<code>{html.escape(str(k))}</code>" for k in page.streams["key"])
    downloads = " · ".join(
        f'<a href="{html.escape(name)}" download>{html.escape(kind)}</a>'
        for kind, name in page.files.items()
    )
    return (
        f'<section id=verdict class="verdict {page.verdict}"><div class=word>{word}</div>'
        f"<div><p><strong>{len(page.findings):,} finding(s)</strong>: {''.join(parts)}</p>"
        f"<p>Verdict: {word.lower()}, because {why}. Streams: {streams}. "
        f"Generated {html.escape(str(page.metadata.get('generated', '')))} from "
        f"{html.escape(str(page.metadata.get('server', '')))}.</p>"
        f"<p>Every finding, also as {downloads} (files beside this report).</p></div></section>"
    )


def _nav() -> str:
    links = [
        ("findings-section", "Findings"),
        ("plots", "Plots"),
        ("evidence", "Evidence"),
        ("archive", "Archive"),
        ("checks", "Checks"),
        ("run", "Run"),
    ]
    items = "".join(f'<a href="#{a}">{t}</a>' for a, t in links)
    return f"<nav>{items}</nav>"


def _findings(page: Page) -> str:
    frame = page.findings
    checks = sorted(frame["check"].unique())
    severities = "".join(
        f'<label><input type=checkbox class=sev value="{s}" checked> {s}</label>'
        for s in SEVERITIES
    )
    options = "".join(f'<option value="{html.escape(c)}">{html.escape(c)}</option>' for c in checks)
    controls = (
        "<div class=controls>"
        f"<span>Severity: {severities}</span>"
        f'<label>Check: <select id=check-filter><option value="">all checks</option>'
        f"{options}</select></label>"
        '<label>Search: <input id=search type=search placeholder="text in any column"></label>'
        f"<span id=shown>{len(frame):,} of {len(frame):,} shown</span></div>"
    )
    header = (
        "<thead><tr><th data-type=number>#</th><th>severity</th><th>check</th><th>stream</th>"
        "<th>ID</th><th>aggregate</th><th>detail</th><th>evidence</th></tr></thead>"
    )
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    rows = []
    for number, (row, link) in enumerate(
        zip(frame.to_dict("records"), page.links, strict=True), start=1
    ):
        severity, check = str(row["severity"]), str(row["check"])
        entry_id = _text(row["id"])
        evidence = (
            f'<a href="#{html.escape(link)}">{_LINK_WORDS.get(link, "events")}</a>'
            if link
            else "<span class=muted>none</span>"
        )
        rows.append(
            f'<tr id="f-{number - 1}" data-severity="{severity}" '
            f'data-check="{html.escape(check)}">'
            f"<td class=nowrap data-sort={number}>{number}</td>"
            f'<td class="sev nowrap {severity}" data-sort={rank.get(severity, 9)}>{severity}</td>'
            f'<td class=nowrap><a href="#check-{html.escape(check)}">{html.escape(check)}</a></td>'
            f"<td class=nowrap>{html.escape(_text(row['stream']))}</td>"
            f'<td class="nowrap id" data-sort="{_id_key(entry_id)}">{html.escape(entry_id)}</td>'
            f"<td class=nowrap>{html.escape(_text(row['aggregate_id']))}</td>"
            f"<td>{quoted(_text(row['detail']))}</td><td class=nowrap>{evidence}</td></tr>"
        )
    table = f"<table id=findings class=sortable>{header}<tbody>{''.join(rows)}</tbody></table>"
    notes = "".join(f"<p class=note>{quoted(n)}</p>" for n in page.notes)
    empty = "<p>No finding.</p>" if frame.empty else ""
    return (
        f"<section id=findings-section><h2>Findings</h2>{controls}{empty}{table}{notes}</section>"
    )


def _plots(plots: list[Plot]) -> str:
    if not plots:
        return "<section id=plots><h2>Plots</h2><p>No events to plot.</p></section>"
    figures = "".join(
        f'<figure><img alt="{html.escape(p.title.replace("`", ""))}" src="{p.src}">'
        f"<figcaption>{quoted(p.title)}: {quoted(p.caption)}</figcaption></figure>"
        for p in plots
    )
    return f"<section id=plots><h2>Plots</h2>{figures}</section>"


def _evidence(page: Page) -> str:
    parts = [
        "<section id=evidence><h2>Evidence</h2><p>The events behind the findings, from the "
        "live streams. Rows a finding names are highlighted.</p>"
    ]
    for section in page.evidence:
        back = ", ".join(f'<a href="#f-{n}">#{n + 1}</a>' for n in section.findings)
        parts.append(
            f'<article id="{html.escape(section.anchor)}"><h3>{quoted(section.title)}</h3>'
            f"<p class=muted>Finding(s) {back}</p>"
        )
        for caption, frame in section.tables:
            shown = frame.attrs.get("shown")
            label = "; ".join(filter(None, [quoted(caption), f"{shown} shown" if shown else ""]))
            if label:
                parts.append(f"<p>{label}</p>")
            parts.append(_table(frame, hits=section.hits) if len(frame) else "")
        parts.append("</article>")
    if not page.evidence:
        parts.append("<p>No finding names events.</p>")
    parts.append("</section>")
    return "".join(parts)


def _archive(checkpoints: dict[str, str]) -> str:
    if not checkpoints:
        body = "<p>No archive was given: archive verification did not run.</p>"
    else:
        body = "".join(
            f"<h3><code>{html.escape(k)}</code></h3><pre>{html.escape(v)}</pre>"
            for k, v in checkpoints.items()
        )
        body = (
            "<p>Each archived stream's checkpoint: keep it outside the archive; a later "
            "<code>auditkit verify --since</code> fails unless the archive extends it.</p>" + body
        )
    return f"<section id=archive><h2>Archive</h2>{body}</section>"


def _catalogue(findings: pd.DataFrame) -> str:
    counts = findings["check"].value_counts()
    names = sorted(set(CATALOGUE) | set(findings["check"]), key=lambda c: (entry(c).family, c))
    rows = []
    for name in names:
        item = entry(name)
        fired = int(counts.get(name, 0))
        rows.append(
            f'<tr id="check-{html.escape(name)}" class="{"fired" if fired else ""}">'
            f"<td class=nowrap><code>{html.escape(name)}</code></td>"
            f"<td>{html.escape(item.family)}</td><td>{fired or ''}</td>"
            f"<td>{quoted(item.means)}</td><td>{quoted(item.matters)}</td>"
            f"<td>{quoted(item.fix)}</td></tr>"
        )
    return (
        "<section id=checks><h2>Checks</h2><p>Every check the audit, schema drift and archive "
        "verification can report; the ones found in this run are highlighted.</p>"
        "<table class=catalogue><thead><tr><th>check</th><th>family</th><th>found</th>"
        "<th>what it means</th><th>why it matters</th><th>how to fix</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></section>"
    )


def _run(page: Page) -> str:
    rows = []
    for name, value in page.metadata.items():
        text = str(value)
        cell = f"<pre>{html.escape(text)}</pre>" if "\n" in text else html.escape(text)
        rows.append(f"<tr><th>{html.escape(name)}</th><td>{cell}</td></tr>")
    return (
        "<section id=run><h2>Run</h2><table class=meta><tbody>"
        f"{''.join(rows)}</tbody></table><h3>Streams</h3>{_table(page.streams)}</section>"
    )


def _table(frame: pd.DataFrame, *, hits: set[str] | None = None) -> str:
    header = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for record in frame.to_dict("records"):
        hit = hits is not None and _text(record.get("id")) in hits
        cells = "".join(
            f'<td class="{"nowrap" if c in ("id", "ts", "first_id", "last_id") else ""}">'
            f"{html.escape(_text(v))}</td>"
            for c, v in record.items()
        )
        rows.append(f'<tr class="{"hit" if hit else ""}">{cells}</tr>')
    return (
        f"<table class=data><thead><tr>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _text(value: Any) -> str:
    if value is None or value is pd.NA or value is pd.NaT:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    if isinstance(value, pd.Timestamp):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    return str(value)


def _id_key(entry_id: str) -> str:
    """A stream ID as text that sorts like the ID (time, then sequence)."""
    match = _STREAM_ID.match(entry_id)
    if match is None:
        return entry_id
    return f"{int(match[1]):020d}-{int(match[2]):020d}"


_STYLE = """
:root { --crit: #8b0000; --err: #b3261e; --warn: #8a5a00; --info: #3b5b8c; }
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5rem auto;
  max-width: 84rem; padding: 0 1rem; color: #1d1d1d; line-height: 1.4; }
h1 { font-size: 1.6rem; margin: 0 0 0.8rem; }
h2 { font-size: 1.25rem; margin-top: 2.2rem; border-bottom: 1px solid #ccc; }
h3 { font-size: 1rem; margin: 1.2rem 0 0.3rem; }
nav { display: flex; gap: 1rem; margin: 0.8rem 0; font-size: 0.95rem; }
.verdict { display: flex; gap: 1.5rem; align-items: center; padding: 0.8rem 1.2rem;
  border-radius: 6px; border: 2px solid; }
.verdict.fail { background: #fdecea; border-color: var(--err); }
.verdict.pass { background: #e8f5e9; border-color: #2e7d32; }
.verdict .word { font-size: 2.4rem; font-weight: 700; letter-spacing: 0.05em; }
.verdict.fail .word { color: var(--err); } .verdict.pass .word { color: #2e7d32; }
.verdict p { margin: 0.25rem 0; }
.badge { display: inline-block; padding: 0 0.5rem; margin-right: 0.4rem; border-radius: 3px;
  font-size: 0.85rem; color: #fff; }
.badge.critical { background: var(--crit); } .badge.error { background: var(--err); }
.badge.warning { background: var(--warn); } .badge.info { background: var(--info); }
.controls { display: flex; flex-wrap: wrap; gap: 1.2rem; align-items: center; margin: 0.6rem 0;
  padding: 0.5rem; background: #f6f6f6; border-radius: 4px; font-size: 0.9rem; }
.controls label { white-space: nowrap; }
table { border-collapse: collapse; font-size: 0.82rem; margin: 0.4rem 0; width: 100%; }
th, td { border: 1px solid #ddd; padding: 0.2rem 0.45rem; text-align: left;
  vertical-align: top; }
td { overflow-wrap: anywhere; }
thead th { background: #f0f0f0; position: sticky; top: 0; }
table.sortable thead th { cursor: pointer; user-select: none; white-space: nowrap; }
th[aria-sort=ascending]::after { content: " \\25B2"; }
th[aria-sort=descending]::after { content: " \\25BC"; }
.nowrap, td.id { white-space: nowrap; overflow-wrap: normal; }
td.sev { font-weight: 600; } td.critical { color: var(--crit); } td.error { color: var(--err); }
td.warning { color: var(--warn); } td.info { color: var(--info); }
code { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 0.92em;
  background: #f2f2f2; padding: 0 0.2em; border-radius: 2px; }
pre { white-space: pre-wrap; font-size: 0.8rem; background: #f6f6f6; padding: 0.4rem;
  margin: 0; }
tr.hit td { background: #fff4cc; } tr.fired td { background: #fff8e1; }
:target { outline: 3px solid #f0b400; }
.muted { color: #777; } .note { color: var(--warn); }
figure { margin: 1rem 0; } figure img { max-width: 100%; }
figcaption { font-size: 0.85rem; color: #555; }
table.meta th { width: 12rem; }
article { margin-bottom: 1.2rem; }
thead { display: table-header-group; }
tr { break-inside: avoid; page-break-inside: avoid; }
@media print {
  body { max-width: none; margin: 0; font-size: 10pt; }
  /* Badges and the verdict are coloured backgrounds: print them, or white text vanishes. */
  .badge, .verdict, tr.hit td, tr.fired td { print-color-adjust: exact;
    -webkit-print-color-adjust: exact; }
  nav, .controls { display: none; }
  thead th { position: static; }
  a { color: inherit; text-decoration: none; }
  h2, h3 { break-after: avoid; }
  figure, .verdict { break-inside: avoid; }
  tr.hidden { display: none; }
}
"""

_SCRIPT = r"""
(function () {
  "use strict";
  var table = document.getElementById("findings");
  if (!table) { return; }
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  var search = document.getElementById("search");
  var check = document.getElementById("check-filter");
  var shown = document.getElementById("shown");
  var boxes = Array.prototype.slice.call(document.querySelectorAll("input.sev"));

  function key(row, index) {
    var cell = row.cells[index];
    return cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort") : cell.textContent;
  }

  function compare(a, b) {
    var x = Number(a), y = Number(b);
    if (a !== "" && b !== "" && !isNaN(x) && !isNaN(y)) { return x - y; }
    return a < b ? -1 : a > b ? 1 : 0;
  }

  Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, index) {
    th.setAttribute("title", "sort by " + th.textContent);
    th.addEventListener("click", function () {
      var ascending = th.getAttribute("aria-sort") !== "ascending";
      Array.prototype.forEach.call(table.tHead.rows[0].cells, function (other) {
        other.removeAttribute("aria-sort");
      });
      th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      rows.sort(function (a, b) {
        var order = compare(key(a, index), key(b, index));
        return ascending ? order : -order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });

  // The text a search looks in: every cell but the evidence link's word.
  function searchable(row) {
    var cells = Array.prototype.slice.call(row.cells, 0, row.cells.length - 1);
    return cells.map(function (cell) { return cell.textContent; }).join(" ").toLowerCase();
  }

  function filter() {
    var severities = {};
    boxes.forEach(function (box) { severities[box.value] = box.checked; });
    var wanted = check.value;
    var text = search.value.trim().toLowerCase();
    var count = 0;
    rows.forEach(function (row) {
      var visible = severities[row.getAttribute("data-severity")] !== false
        && (!wanted || row.getAttribute("data-check") === wanted)
        && (!text || searchable(row).indexOf(text) !== -1);
      row.hidden = !visible;
      row.classList.toggle("hidden", !visible);
      if (visible) { count += 1; }
    });
    shown.textContent = count.toLocaleString("en") + " of "
      + rows.length.toLocaleString("en") + " shown";
  }

  boxes.forEach(function (box) { box.addEventListener("change", filter); });
  check.addEventListener("change", filter);
  search.addEventListener("input", filter);
})();
"""
