"""A stream of flat fields, as an event-log export writes it: no payload field at all.

The rows of a process-mining CSV export (the XES names `case:concept:name`,
`concept:name`, `time:timestamp`, `org:resource`), each written with XADD as it comes:
sorted by case, not by time, so record time says nothing and effective time says all.
Times carry their UTC offsets; `amount` is a number, or an empty string where an activity
has none.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import auditkit as ak

STREAM = "p2p:log"
ENVELOPE = {
    "preset": "flat",
    "event_type": "concept:name",
    "aggregate_id": "case:concept:name",
    "occurred_at": "time:timestamp",
}
ZONES = [timezone(timedelta(hours=h)) for h in (1, 2, 0, -5)]


def _log(cases: int = 60, seed: int = 3) -> list[dict[str, Any]]:
    """Purchase-to-pay cases: Create Order (amount), Approve, Pay (amount, in one or two
    parts), sometimes Cancel; times in the writer's local zones, amounts in quarters."""
    rng = random.Random(seed)
    start = datetime(2026, 3, 2, 8, tzinfo=UTC)
    rows = []
    for c in range(cases):
        case = f"PO-{c:05d}"
        at = start + timedelta(hours=3 * c + rng.randint(0, 5), minutes=rng.randint(0, 59))
        total = rng.randint(40, 4000) * 0.25
        steps: list[tuple[str, float | None]] = [("Create Order", total), ("Approve", None)]
        if c % 9 == 4:
            steps.append(("Cancel", None))
        elif c % 4 == 1:
            steps += [("Pay", total - 10.0), ("Pay", 10.0)]
        else:
            steps.append(("Pay", total))
        for activity, amount in steps:
            at += timedelta(hours=rng.randint(1, 30), minutes=rng.randint(0, 59))
            rows.append(
                {
                    "case:concept:name": case,
                    "concept:name": activity,
                    # Exporters write UTC as `Z`, other zones as offsets.
                    "time:timestamp": at.astimezone(rng.choice(ZONES))
                    .isoformat()
                    .replace("+00:00", "Z"),
                    "org:resource": rng.choice(["anna", "ben", "chen", "system"]),
                    "amount": "" if amount is None else f"{amount:.2f}",
                }
            )
    return rows


def _when(row: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(row["time:timestamp"])


def _open(rows: list[dict[str, Any]], until: datetime | None = None) -> dict[str, float]:
    """Per case: ordered less paid, over the events that happened by `until`."""
    balance: dict[str, float] = defaultdict(float)
    for row in rows:
        if until is not None and _when(row) > until:
            continue
        case, activity = row["case:concept:name"], row["concept:name"]
        balance.setdefault(case, 0.0)
        if activity == "Create Order":
            balance[case] += float(row["amount"])
        elif activity == "Pay":
            balance[case] -= float(row["amount"])
    return dict(balance)


@pytest.fixture
def log(r) -> list[dict[str, Any]]:
    rows = _log()
    pipe = r.pipeline(transaction=False)
    for row in rows:
        pipe.xadd(STREAM, row)
    pipe.execute()
    return rows


def _projection() -> ak.Projection:
    return ak.Projection.declarative(
        last={"status": "event_type", "by": "payload.org:resource"},
        sum={"open": {"Create Order": "payload.amount", "Pay": "-payload.amount"}},
        envelope=ak.Envelope.of(ENVELOPE),
    )


def test_load_types_the_fields(r, log):
    table = ak.read_arrow(r, STREAM, envelope=ENVELOPE)
    assert table.num_rows == len(log)
    assert table.column("event_type").to_pylist() == [row["concept:name"] for row in log]
    assert table.column("aggregate_id").to_pylist() == [row["case:concept:name"] for row in log]
    # The offsets are honoured: every time is the same instant, in UTC.
    assert table.column("occurred_at").to_pylist() == [_when(row) for row in log]
    assert table.schema.field("payload.amount").type == pa.float64()
    amounts = [float(row["amount"]) if row["amount"] else None for row in log]
    assert table.column("payload.amount").to_pylist() == amounts
    assert table.column("payload.org:resource").to_pylist() == [row["org:resource"] for row in log]
    assert "payload.concept:name" not in table.column_names  # taken by the envelope
    assert table.column("payload_error").null_count == table.num_rows


def test_states_at_now_sum_each_case(r, log):
    states = _projection().states_at((r, STREAM)).set_index("aggregate_id")
    assert states["open"].to_dict() == _open(log)
    last = {}
    for row in log:
        last[row["case:concept:name"]] = row["concept:name"]
    assert states["status"].to_dict() == last


def test_states_at_an_effective_time(r, log):
    # The export runs case by case: only effective time orders the events.
    cut = datetime(2026, 3, 6, 12, tzinfo=UTC)
    assert sorted(log, key=_when) != log
    states = _projection().states_at((r, STREAM), at=cut, clock="effective")
    expected = _open(log, until=cut)
    assert 0 < len(expected) < len(_open(log))
    assert states.set_index("aggregate_id")["open"].to_dict() == expected
    # The same cut in local time (UTC+2) is the same instant.
    local = cut.astimezone(timezone(timedelta(hours=2))).isoformat()
    again = _projection().states_at((r, STREAM), at=local, clock="effective")
    assert again.set_index("aggregate_id")["open"].to_dict() == expected
    one = next(iter(expected))
    assert (
        _projection().state_at((r, STREAM), one, at=cut, clock="effective")["open"]
        == (expected[one])
    )


def test_drift_sees_the_activities_and_their_fields(r, log):
    drift = ak.schema_drift((r, STREAM), envelope=ak.Envelope.of(ENVELOPE))
    counts = drift.timeline.groupby("event_type")["events"].sum().to_dict()
    assert counts == dict(Counter(row["concept:name"] for row in log))
    fields = drift.fields
    pay = fields[fields["event_type"] == "Pay"]
    assert {"amount", "org:resource"} <= set(pay["field"])


def test_archive_round_trips_the_rows(r, log, round_trip):
    archive = round_trip(STREAM, ak.Envelope.of(ENVELOPE))
    archived = archive.events_table(stream=STREAM)
    assert sorted(archived.column("aggregate_id").to_pylist()) == sorted(
        row["case:concept:name"] for row in log
    )


def test_a_pseudonymised_archive_holds_no_resource(log, pseudonymise):
    # Flat fields are named as the entries name them.
    people = sorted({row["org:resource"] for row in log})
    pseudonymise(STREAM, ak.Envelope.of(ENVELOPE), "org:resource", people)


def test_a_rule_named_as_the_column_holds_no_resource(log, pseudonymise):
    people = sorted({row["org:resource"] for row in log})
    pseudonymise(STREAM, ak.Envelope.of(ENVELOPE), "payload.org:resource", people, may_refuse=True)


def test_inspect_proposes_the_export_names(r, log, tmp_path: Path):
    found = ak.inspect(r, STREAM)
    assert found.format == "flat"
    envelope = found.envelope
    assert envelope.event_type == "concept:name"
    assert envelope.aggregate_id == "case:concept:name"
    assert envelope.occurred_at == "time:timestamp"
    assert envelope.decoder == "flat"
    assert ak.read_arrow(r, STREAM, envelope=envelope).equals(
        ak.read_arrow(r, STREAM, envelope=ENVELOPE)
    )
    path = tmp_path / "p2p.toml"
    path.write_text(found.toml())
    assert ak.Envelope.of(path) == envelope


def test_a_wrong_envelope_names_the_fields_the_stream_has(r, log):
    with pytest.raises(ak.EnvelopeMismatch) as caught:
        ak.read_arrow(r, STREAM)
    message = str(caught.value)
    assert "field `type`" in message
    assert "`case:concept:name`" in message and "`time:timestamp`" in message
    assert "flat decoder" in message  # the hint that fits a stream without a payload field
    with pytest.raises(ak.EnvelopeMismatch, match="field `type`"):
        ak.read_arrow(r, STREAM, envelope="flat")
    with pytest.raises(ak.EnvelopeMismatch, match="field `event`"):
        ak.read_arrow(r, STREAM, envelope="bullmq")
