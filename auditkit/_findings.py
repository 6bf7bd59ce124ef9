"""Findings: the one table shape every check returns, so they concatenate, filter and plot.

A findings table is a pandas DataFrame (`FindingsFrame`, a subclass that only adds how it
shows in Jupyter: worst first, severity colours, every detail whole). A subclass, not a
wrapper: `ak.audit` returns a DataFrame, and every pandas call works on it as on any.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from auditkit._display import ShownFrame, badge, escape, table_html

__all__ = [
    "FAILING",
    "FINDING_COLUMNS",
    "SEVERITIES",
    "Findings",
    "FindingsFrame",
    "findings_html",
    "sort_findings",
]

FINDING_COLUMNS = ["check", "severity", "stream", "id", "aggregate_id", "detail"]
SEVERITIES = ("critical", "error", "warning", "info")
"""From worst to mildest; `ak.audit` sorts by it."""
FAILING = frozenset(SEVERITIES[:2])
"""The severities that fail a verification: `critical` and `error`."""
COLOURS = {"critical": "#7f1d1d", "error": "#dc2626", "warning": "#d97706", "info": "#2563eb"}


class FindingsFrame(ShownFrame):
    """A findings DataFrame; in Jupyter: worst first, severity colours, details whole."""

    @property
    def _constructor(self) -> type[FindingsFrame]:
        return FindingsFrame

    def _repr_html_(self) -> str:
        if {"check", "severity", "detail"} <= set(self.columns):
            return findings_html(self)
        return table_html(self)  # a selection of columns, a summary: shown as a table


class Findings:
    """Collects findings row by row; `frame()` returns the table."""

    def __init__(self, stream: str | None = None) -> None:
        self.stream = stream
        self.rows: list[dict[str, Any]] = []

    def add(
        self,
        check: str,
        severity: str,
        detail: str,
        *,
        id: str | None = None,
        aggregate_id: Any = None,
        stream: str | None = None,
    ) -> None:
        if severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, got `{severity}`.")
        self.rows.append(
            {
                "check": check,
                "severity": severity,
                "stream": stream if stream is not None else self.stream,
                "id": id,
                "aggregate_id": aggregate_id,
                "detail": detail,
            }
        )

    def frame(self) -> FindingsFrame:
        return FindingsFrame(self.rows, columns=FINDING_COLUMNS)


def sort_findings(frame: pd.DataFrame) -> pd.DataFrame:
    """Worst first, then by check, stream and ID."""
    rank = frame["severity"].map({s: i for i, s in enumerate(SEVERITIES)})
    # A selection of columns (`findings[["check", "severity", "detail"]]`) sorts by those
    # it kept.
    keys = ["_rank", *(c for c in ("check", "stream", "id") if c in frame.columns)]
    return (
        frame.assign(_rank=rank)
        .sort_values(keys, kind="stable", na_position="last")
        .drop(columns="_rank")
        .reset_index(drop=True)
    )


def findings_html(frame: pd.DataFrame, *, title: str | None = None) -> str:
    """Findings as HTML: a count per severity, then every finding, worst first."""
    if frame.empty:
        return f"<p>{escape(title + ': ') if title else ''}no findings.</p>"
    ordered = sort_findings(pd.DataFrame(frame))
    counts = ordered["severity"].value_counts()
    summary = ", ".join(
        f"{badge(f'{counts[s]:,} {s}', COLOURS[s])}" for s in SEVERITIES if s in counts
    )
    if "accepted" in ordered and ordered["accepted"].any():
        summary += f" ({int(ordered['accepted'].sum()):,} accepted)"
    head = f"{escape(title)}: " if title else ""
    head += f"{len(ordered):,} finding" + ("" if len(ordered) == 1 else "s")
    columns = ["severity", *[c for c in ordered.columns if c != "severity"]]

    def row_style(row: dict[str, Any]) -> str:
        colour = COLOURS.get(str(row["severity"]), "#888")
        accepted = " ;opacity:0.55" if row.get("accepted") is True else ""
        return f"border-left:4px solid {colour}{accepted}"

    table = table_html(
        ordered[columns],
        cells={"severity": lambda s: badge(str(s), COLOURS.get(str(s), "#888"))},
        row_style=row_style,
    )
    return f"<div><p>{head} {summary}</p>{table}</div>"
