"""Findings: the one table shape every check returns, so they concatenate, filter and plot."""

from __future__ import annotations

from typing import Any

import pandas as pd

__all__ = ["FAILING", "FINDING_COLUMNS", "SEVERITIES", "Findings", "sort_findings"]

FINDING_COLUMNS = ["check", "severity", "stream", "id", "aggregate_id", "detail"]
SEVERITIES = ("critical", "error", "warning", "info")
"""From worst to mildest; `ak.audit` sorts by it."""
FAILING = frozenset(SEVERITIES[:2])
"""The severities that fail a verification: `critical` and `error`."""


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

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=FINDING_COLUMNS)


def sort_findings(frame: pd.DataFrame) -> pd.DataFrame:
    """Worst first, then by check, stream and ID."""
    rank = frame["severity"].map({s: i for i, s in enumerate(SEVERITIES)})
    return (
        frame.assign(_rank=rank)
        .sort_values(["_rank", "check", "stream", "id"], kind="stable", na_position="last")
        .drop(columns="_rank")
        .reset_index(drop=True)
    )
