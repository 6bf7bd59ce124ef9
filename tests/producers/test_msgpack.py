"""A service that packs its event payloads with msgpack, as written by the msgpack library.

Fields `type`, `aggregate_id` and `payload`, the payload a msgpack map: times as msgpack's
Timestamp extension (`packb(datetime=True)`, as msgpack libraries in other languages write
them too), raw bytes as bin, and integer keys, which msgpack allows and JSON does not.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest
from _producers import require

import auditkit as ak

msgpack = require("msgpack")

STREAM = "ledger"
ENVELOPE = {"decoder": "msgpack", "occurred_at": "payload.at"}


def _events(n: int = 240, seed: int = 5) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=3)
    out = []
    for i in range(n):
        kind = "Deposited" if i % 3 else "Withdrawn"
        out.append(
            {
                "type": kind,
                "aggregate_id": f"acct-{i % 12}",
                "payload": {
                    "amount": rng.randint(1, 400) * 0.25,
                    "at": start + timedelta(seconds=i),
                    "ref": bytes([i % 256, 0xFF]),
                    "meta": {1: "web" if i % 2 else "app"},
                },
            }
        )
    return out


@pytest.fixture
def events(r) -> list[dict[str, Any]]:
    rows = _events()
    pipe = r.pipeline(transaction=False)
    for event in rows:
        packed = msgpack.packb(event["payload"], datetime=True)
        pipe.xadd(STREAM, {**event, "payload": packed})
    pipe.execute()
    return rows


def test_read_arrow_decodes_the_maps(r, events):
    table = ak.read_arrow(r, STREAM, envelope=ENVELOPE)
    assert table.num_rows == len(events)
    assert table.column("payload_error").null_count == table.num_rows
    assert table.column("event_type").to_pylist() == [e["type"] for e in events]
    assert table.schema.field("payload.amount").type == pa.float64()
    assert table.column("payload.amount").to_pylist() == [e["payload"]["amount"] for e in events]
    # The Timestamp extension is a time: the effective time, to the microsecond.
    assert table.column("occurred_at").to_pylist() == [e["payload"]["at"] for e in events]
    assert table.column("payload.meta.1").to_pylist() == [e["payload"]["meta"][1] for e in events]
    assert table.column("payload.ref").to_pylist()[1] == "base64:Af8="


def test_states_and_archive(r, events, round_trip):
    accounts = ak.Projection.declarative(
        sum={"balance": {"Deposited": "payload.amount", "Withdrawn": "-payload.amount"}},
        envelope=ak.Envelope.of(ENVELOPE),
    )
    balance: dict[str, float] = defaultdict(float)
    for e in events:
        sign = 1 if e["type"] == "Deposited" else -1
        balance[e["aggregate_id"]] += sign * e["payload"]["amount"]
    states = accounts.states_at((r, STREAM)).set_index("aggregate_id")
    assert states["balance"].to_dict() == dict(balance)
    drift = ak.schema_drift((r, STREAM), envelope=ak.Envelope.of(ENVELOPE))
    counts = drift.timeline.groupby("event_type")["events"].sum().to_dict()
    assert counts == dict(Counter(e["type"] for e in events))
    round_trip(STREAM, ak.Envelope.of(ENVELOPE))


def test_inspect_detects_msgpack(r, events):
    found = ak.inspect(r, STREAM)
    assert found.format == "msgpack"
    assert found.envelope.decoder == "msgpack"
    assert found.envelope.payload == "payload"
    assert found.envelope.event_type == "type"
    assert found.envelope.occurred_at == "payload.at"
    assert found.matches["payload"] == 1.0


def test_the_json_envelope_says_the_payload_does_not_decode(r, events):
    with pytest.raises(ak.EnvelopeMismatch) as caught:
        ak.read_arrow(r, STREAM)
    message = str(caught.value)
    assert "the payload (field `payload`, json) decodes in 0 of" in message
    assert "`type`" in message and "`aggregate_id`" in message
