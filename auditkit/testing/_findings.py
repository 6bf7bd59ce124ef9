"""`assert_findings`: a findings table checked against what a test expects, read as a list."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

__all__ = ["assert_findings"]

Expectation = str | Mapping[str, Any]
_SHOWN = ("check", "severity", "stream", "id", "detail")


def assert_findings(
    findings: pd.DataFrame,
    expect: Sequence[Expectation] = (),
    allow: Sequence[Expectation] = (),
) -> None:
    """Fail unless every expected finding is there and every other finding is allowed.

    Args:
        findings: a findings table (`ak.audit`, `check_groups`, `schema_drift(...).findings`).
        expect: findings that must be there, each a check name (`"poison-message"`) or a
            dict of column filters (`{"check": "pending-stale", "id": "5-0"}`); each must
            match at least one row.
        allow: findings that may be there; any row neither expected nor allowed fails.

    Raises:
        AssertionError: naming the expected findings that are missing and the unexpected
            ones (check, severity, stream, id, detail), one per line.

    Example:
        >>> findings = pd.DataFrame({"check": ["poison-message", "group-lag"], "id": ["7-0", None]})
        >>> assert_findings(findings, expect=["poison-message"], allow=["group-lag"])
        >>> assert_findings(findings, expect=[{"check": "poison-message", "id": "8-0"}])
        Traceback (most recent call last):
        AssertionError: the findings are not as expected (2 finding(s) in all)
        missing, expected but not found (1):
          - check='poison-message', id='8-0'
        unexpected, neither expected nor allowed (2):
          - check=poison-message | id=7-0
          - check=group-lag | id=
    """
    __tracebackhide__ = True  # pytest shows the message, not this function's insides
    for item in [*expect, *allow]:
        if not isinstance(item, (str, Mapping)):
            raise TypeError(
                f"a finding to expect or allow is a check name or a dict of column filters, "
                f"got `{item!r}`."
            )
        unknown = set(item) - set(findings.columns) if isinstance(item, Mapping) else set()
        if unknown:
            raise ValueError(
                f"`{item!r}` filters on {sorted(unknown)}, which the findings do not have; "
                f"their columns are {list(findings.columns)}."
            )
    rows = findings.reset_index(drop=True)
    matched = pd.Series(False, index=rows.index)
    missing = []
    for item in expect:
        hit = _matches(rows, item)
        if not hit.any():
            missing.append(item)
        matched |= hit
    for item in allow:
        matched |= _matches(rows, item)
    unexpected = rows[~matched]
    if not missing and unexpected.empty:
        return
    lines = [f"the findings are not as expected ({len(rows)} finding(s) in all)"]
    if missing:
        lines.append(f"missing, expected but not found ({len(missing)}):")
        lines += [f"  - {_label(item)}" for item in missing]
    if not unexpected.empty:
        lines.append(f"unexpected, neither expected nor allowed ({len(unexpected)}):")
        lines += [f"  - {_row(row)}" for row in unexpected.to_dict("records")]
    raise AssertionError("\n".join(lines))


def _matches(rows: pd.DataFrame, item: Expectation) -> pd.Series:
    filters = {"check": item} if isinstance(item, str) else item
    hit = pd.Series(True, index=rows.index)
    for column, wanted in filters.items():
        hit &= rows[column].map(lambda value, wanted=wanted: _same(value, wanted))
    return hit


def _same(value: Any, wanted: Any) -> bool:
    if wanted is None:
        return value is None or bool(pd.isna(value))
    return bool(value == wanted) or str(value) == str(wanted)


def _label(item: Expectation) -> str:
    if isinstance(item, str):
        return f"check {item}"
    return ", ".join(f"{k}={v!r}" for k, v in item.items())


def _row(row: Mapping[Any, Any]) -> str:
    return " | ".join(
        f"{column}={'' if _same(row.get(column), None) else row.get(column)}"
        for column in _SHOWN
        if column in row
    )
