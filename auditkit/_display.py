"""How results show in Jupyter: HTML tables and cards, every value escaped, nothing cut.

pandas cuts a cell at 50 characters and shows durations in raw milliseconds; a finding's
detail is the finding, so these tables show whole values, and `*_ms` columns in human units
(the milliseconds stay in the cell's tooltip). Inline styles only: notebook viewers that
drop `<style>` elements (GitHub's, for one) keep them.

Nothing here reads storage or Redis: a repr must be instant and must not fail.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable
from typing import Any

import pandas as pd

__all__ = [
    "MAX_ROWS",
    "ShownFrame",
    "badge",
    "card_html",
    "escape",
    "human_bytes",
    "human_ms",
    "table_html",
]

MAX_ROWS = 500
"""Rows a table shows; a note says how many more the frame holds."""

_CELL = "text-align:left;vertical-align:top;padding:1px 6px"
_DETAIL = _CELL + ";white-space:pre-wrap;word-break:break-word;max-width:80ch"


class ShownFrame(pd.DataFrame):
    """A DataFrame like any other, shown in Jupyter with whole values and human durations.

    Its slices, copies and concatenations keep the class (pandas' `_constructor`), so a
    filtered result shows the same way; everything else is pandas' own."""

    @property
    def _constructor(self) -> type[ShownFrame]:
        return ShownFrame

    def _repr_html_(self) -> str:
        return table_html(self)


def escape(value: Any) -> str:
    """Any value as HTML text: escaped, quotes included."""
    return html.escape(str(value), quote=True)


def human_ms(ms: Any) -> str:
    """Milliseconds as a person reads them: `850 ms`, `12.5 s`, `4 min 5 s`, `3.2 h`, `2.1 d`."""
    value = float(ms)
    if value < 1_000:
        return f"{value:.0f} ms"
    seconds = value / 1_000
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3_600:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    if seconds < 86_400:
        return f"{seconds / 3_600:.1f} h"
    return f"{seconds / 86_400:.1f} d"


def human_bytes(size: int) -> str:
    """A size in B, KiB, MiB, GiB."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover - the loop always returns


def badge(text: str, colour: str) -> str:
    """A small coloured label."""
    return (
        f'<span style="background:{colour};color:#fff;border-radius:3px;padding:0 6px;'
        f'font-size:90%;white-space:nowrap">{escape(text)}</span>'
    )


def table_html(
    frame: pd.DataFrame,
    *,
    max_rows: int = MAX_ROWS,
    cells: dict[str, Any] | None = None,
    row_style: Any = None,
) -> str:
    """`frame` as an HTML table: every value whole and escaped, `*_ms` columns in human units.

    Args:
        cells: column -> a function of the value returning the cell's HTML (escaped by it).
        row_style: a function of the row (a dict) returning a style for its `<tr>`.
    """
    cells = cells or {}
    shown = frame.head(max_rows)
    with_index = not isinstance(frame.index, pd.RangeIndex)
    head = "".join(f'<th style="{_CELL}">{escape(c)}</th>' for c in shown.columns)
    if with_index:
        name = frame.index.name if frame.index.name is not None else ""
        head = f'<th style="{_CELL}">{escape(name)}</th>' + head
    rows = []
    for index, row in zip(shown.index, shown.to_dict("records"), strict=True):
        style = f' style="{row_style(row)}"' if row_style is not None else ""
        parts = [f'<th style="{_CELL}">{escape(index)}</th>'] if with_index else []
        for column in shown.columns:
            parts.append(_cell(column, row[column], cells))
        rows.append(f"<tr{style}>{''.join(parts)}</tr>")
    more = len(frame) - len(shown)
    note = (
        f"<p>… and {more:,} more rows (the DataFrame holds all {len(frame):,}).</p>"
        if more > 0
        else ""
    )
    return (
        '<table class="auditkit" style="border-collapse:collapse">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>{note}"
    )


def card_html(
    title: str,
    *,
    status: tuple[str, str] | None = None,
    facts: Iterable[tuple[str, Any]] = (),
    sections: Iterable[tuple[str, str]] = (),
) -> str:
    """A result's display: a title with a coloured status, facts as a list, then sections.

    `title` and facts' labels and values are escaped; sections are HTML made here."""
    top = f"<strong>{escape(title)}</strong>"
    if status is not None:
        top += " " + badge(*status)
    items = "".join(
        f"<tr><th style='{_CELL}'>{escape(label)}</th><td style='{_CELL}'>{escape(value)}</td></tr>"
        for label, value in facts
    )
    body = f"<table style='border-collapse:collapse'>{items}</table>" if items else ""
    for heading, content in sections:
        body += f"<details open><summary>{escape(heading)}</summary>{content}</details>"
    return f'<div class="auditkit"><p>{top}</p>{body}</div>'


def _cell(column: Any, value: Any, cells: dict[str, Any]) -> str:
    name = str(column)
    if name in cells:
        return f'<td style="{_CELL}">{cells[name](value)}</td>'
    if _missing(value):
        return f'<td style="{_CELL};opacity:0.5">&ndash;</td>'
    if name.endswith("_ms") and isinstance(value, (int, float)) and not isinstance(value, bool):
        return f'<td style="{_CELL}" title="{escape(value)} ms">{escape(human_ms(value))}</td>'
    # Stream IDs (`ms-seq`) read as one word; details and reasons wrap.
    style = _DETAIL if name == "detail" else _CELL
    if name == "id" or (name.endswith("_id") and name != "aggregate_id"):
        style += ";white-space:nowrap"
    return f'<td style="{style}">{escape(value)}</td>'


def _missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)
