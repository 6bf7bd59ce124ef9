"""assert_findings: passes on what is expected and allowed, and otherwise says what differs."""

from __future__ import annotations

import pandas as pd
import pytest

from auditkit.testing import assert_findings

FINDINGS = pd.DataFrame(
    {
        "check": ["poison-message", "pending-stale", "group-lag"],
        "severity": ["error", "warning", "info"],
        "stream": ["jobs", "jobs", "jobs"],
        "id": ["5-0", "9-0", None],
        "aggregate_id": ["job-1", "job-2", None],
        "detail": ["delivered 8 times", "pending for 50 min", "3 entries not yet delivered"],
    }
)


def test_expected_and_allowed_findings_pass():
    assert_findings(FINDINGS, expect=["poison-message", "pending-stale"], allow=["group-lag"])
    assert_findings(
        FINDINGS,
        expect=[{"check": "poison-message", "id": "5-0", "aggregate_id": "job-1"}],
        allow=[{"severity": "warning"}, {"check": "group-lag", "id": None}],
    )
    assert_findings(FINDINGS.iloc[0:0])  # nothing expected, nothing found


def test_the_message_lists_missing_and_unexpected_findings():
    with pytest.raises(AssertionError) as failed:
        assert_findings(FINDINGS, expect=["poison-message", {"check": "pending-trimmed"}])
    message = str(failed.value)
    assert "missing, expected but not found (1):\n  - check='pending-trimmed'" in message
    assert "unexpected, neither expected nor allowed (2):" in message
    assert "check=pending-stale | severity=warning | stream=jobs | id=9-0 | " in message
    assert "detail=pending for 50 min" in message
    assert "check=group-lag | severity=info | stream=jobs | id= | " in message
    assert "poison-message |" not in message  # expected and found: not listed


def test_a_filter_that_matches_nothing_is_missing_even_when_the_check_is_there():
    with pytest.raises(AssertionError, match=r"check='poison-message', id='6-0'"):
        assert_findings(FINDINGS, expect=[{"check": "poison-message", "id": "6-0"}], allow=["*"])


def test_filters_on_columns_the_findings_lack_are_refused():
    with pytest.raises(ValueError, match=r"\['consumer'\]"):
        assert_findings(FINDINGS, expect=[{"consumer": "w1"}])
    with pytest.raises(TypeError, match="check name or a dict"):
        assert_findings(FINDINGS, expect=[3])  # type: ignore[list-item]
