"""A task broker's stream: the event type inside a JSON field, as taskiq writes it.

taskiq's Redis stream broker adds each task as one field, `data`, holding the message as
JSON: `task_id`, `task_name` (`module:function`), `labels`, `args`, `kwargs`. A retried
task is sent again with the same `task_id` and a `_retries` label.
"""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

import auditkit as ak

STREAM = "taskiq"
ENVELOPE = {"event_type": "payload.task_name", "aggregate_id": "payload.task_id", "payload": "data"}
TASKS = ("billing.tasks:charge", "mail.tasks:send_receipt", "billing.tasks:refund")


def _messages(n: int = 300, seed: int = 11) -> list[dict[str, Any]]:
    """Task messages; every tenth task is retried once (sent again, same id)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        name = TASKS[i % 3] if i % 7 else TASKS[0]
        message = {
            "task_id": f"{rng.getrandbits(64):016x}",
            "task_name": name,
            "labels": {"queue": "default", "priority": str(i % 3)},
            "labels_types": {"priority": 2},
            "args": [f"ord-{i:04d}"],
            "kwargs": {
                "amount": rng.randint(1, 800) * 0.25,
                "currency": "EUR",
                "email": f"customer{i % 40}@example.com",
            },
        }
        out.append(message)
        if i % 10 == 0:
            retry = json.loads(json.dumps(message))
            retry["labels"]["_retries"] = "1"
            out.append(retry)
    return out


@pytest.fixture
def sent(r) -> list[dict[str, Any]]:
    messages = _messages()
    pipe = r.pipeline(transaction=False)
    for message in messages:
        pipe.xadd(STREAM, {"data": json.dumps(message)})
    pipe.execute()
    return messages


def test_read_arrow_takes_the_type_and_id_from_inside_the_payload(r, sent):
    table = ak.read_arrow(r, STREAM, envelope=ENVELOPE)
    assert table.num_rows == len(sent)
    assert table.column("event_type").to_pylist() == [m["task_name"] for m in sent]
    assert table.column("aggregate_id").to_pylist() == [m["task_id"] for m in sent]
    assert table.column("payload.kwargs.amount").to_pylist() == [
        m["kwargs"]["amount"] for m in sent
    ]
    assert table.column("payload.labels.priority").to_pylist() == [
        m["labels"]["priority"] for m in sent
    ]
    assert table.column("payload_error").null_count == table.num_rows


def test_states_count_the_sends_of_each_task(r, sent):
    tasks = ak.Projection.declarative(
        last={"retries": "payload.labels._retries"},
        count={"sends": "*"},
        sum={"charged": {"billing.tasks:charge": "payload.kwargs.amount"}},
        envelope=ak.Envelope.of(ENVELOPE),
    )
    states = tasks.states_at((r, STREAM)).set_index("aggregate_id")
    sends = Counter(m["task_id"] for m in sent)
    charged: dict[str, float] = defaultdict(float)
    for m in sent:
        charged[m["task_id"]] += m["kwargs"]["amount"] if m["task_name"] == TASKS[0] else 0.0
    assert states["sends"].to_dict() == dict(sends)
    assert states["charged"].to_dict() == dict(charged)
    retried = {task for task, count in sends.items() if count == 2}
    assert set(states.index[states["retries"].notna()]) == retried


def test_audit_drift_and_archive(r, sent, round_trip):
    findings = ak.audit(r, STREAM, envelope=ENVELOPE)
    assert set(findings["check"]) <= {"no-persistence"}, findings
    drift = ak.schema_drift((r, STREAM), envelope=ak.Envelope.of(ENVELOPE))
    counts = drift.timeline.groupby("event_type")["events"].sum().to_dict()
    assert counts == dict(Counter(m["task_name"] for m in sent))
    round_trip(STREAM, ak.Envelope.of(ENVELOPE))


def test_a_pseudonymised_archive_holds_no_email(sent, pseudonymise):
    emails = sorted({m["kwargs"]["email"] for m in sent})
    pseudonymise(STREAM, ak.Envelope.of(ENVELOPE), "payload.kwargs.email", emails, may_refuse=True)


def test_inspect_proposes_the_paths_in_the_payload(r, sent, tmp_path: Path):
    found = ak.inspect(r, STREAM)
    assert found.format == "json"
    assert found.envelope.payload == "data"
    assert found.envelope.event_type == "payload.task_name"
    assert found.envelope.aggregate_id == "payload.task_id"
    path = tmp_path / "taskiq.toml"
    path.write_text(found.toml())
    assert ak.read_arrow(r, STREAM, envelope=path).equals(
        ak.read_arrow(r, STREAM, envelope=ENVELOPE)
    )


def test_a_wrong_envelope_names_the_fields_the_stream_has(r, sent):
    with pytest.raises(ak.EnvelopeMismatch) as caught:
        ak.read_arrow(r, STREAM)
    message = str(caught.value)
    assert "field `type`" in message and "`data`" in message
    # The right payload field, but the type looked for as a field, not inside it.
    with pytest.raises(ak.EnvelopeMismatch) as caught:
        ak.read_arrow(r, STREAM, envelope={"payload": "data", "event_type": "task_name"})
    assert "event_type (field `task_name`) is in 0 of" in str(caught.value)
    assert "`data`" in str(caught.value)


def test_arguments_of_mixed_types_keep_the_other_fields(r):
    messages = [
        {"task_id": f"t{i}", "task_name": TASKS[0], "args": [i, "EUR"], "kwargs": {"n": i}}
        for i in range(5)
    ]
    for message in messages:
        r.xadd(STREAM, {"data": json.dumps(message)})
    table = ak.read_arrow(r, STREAM, envelope=ENVELOPE)
    assert table.column("event_type").to_pylist() == [TASKS[0]] * 5
    assert table.column("aggregate_id").to_pylist() == [f"t{i}" for i in range(5)]
    assert table.column("payload.kwargs.n").to_pylist() == list(range(5))
