"""The payments incident, reproduced from its sample: the audit finds it, the notebook
explains it."""

from pathlib import Path

import auditkit as ak
from auditkit.testing import assert_findings, run_notebook, seed

PROJECT = Path(__file__).resolve().parent.parent
SAMPLE = PROJECT / "samples" / "payments.jsonl"
NOTEBOOK = PROJECT / "notebooks" / "payments_audit.ipynb"
ENVELOPE = {"payload": "body", "event_type": "payload.task", "aggregate_id": "payload.payment_id"}


def test_the_sample_reproduces_the_incident(auditkit_redis):
    seed(auditkit_redis, "payments", SAMPLE)
    findings = ak.audit(auditkit_redis, "payments", envelope=ENVELOPE, poison_after=3)
    assert_findings(
        findings,
        expect=[
            {"check": "poison-message", "aggregate_id": "pay-009"},
            {"check": "poison-message", "aggregate_id": "pay-012"},
            {"check": "pending-stale", "aggregate_id": "pay-015"},
            {"check": "group-lag", "severity": "info"},
        ],
        allow=[{"check": "consumer-idle", "severity": "info"}],
    )


def test_the_notebook_names_the_failing_task(auditkit_redis, auditkit_redis_url):
    seed(auditkit_redis, "payments", SAMPLE)
    result = run_notebook(
        NOTEBOOK,
        parameters={"REDIS_URL": auditkit_redis_url, "STREAM": "payments", "POISON_AFTER": 3},
    )
    assert result["failing_tasks"] == {"refund": 2}
    assert_findings(
        result["findings"],
        expect=["poison-message", "pending-stale", "group-lag"],
        allow=["consumer-idle"],
    )
    assert "2 poison message(s)" in result.text
