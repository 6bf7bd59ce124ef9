"""A FastStream service's Redis stream, written by a real RedisBroker, read through auditkit.

FastStream (0.6 and later) writes each message as one field, `__data__`, holding a binary
frame: the magic bytes `\\x89BIN\\r\\n\\x1a\\n`, a 2-byte version (1), the 4-byte offsets of
the headers and of the body, a 2-byte header count, each header's name and value as
2-byte-length-prefixed UTF-8, then the body (compact JSON for a pydantic model or a dict).
Its headers are `correlation_id` (a UUID unless given), `content-type`, and the
publisher's and the call's own headers.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pytest
from _producers import raw_entries, require, run_async, url_of

import auditkit as ak

require("faststream.redis")
pydantic = require("pydantic")

from faststream.redis import RedisBroker, StreamSub  # noqa: E402

STREAM = "orders"
ENVELOPE = {
    "preset": "faststream",
    "event_type": "payload.kind",
    "aggregate_id": "payload.order_id",
    "occurred_at": "payload.at",
}


class Customer(pydantic.BaseModel):
    id: str
    country: str


class Item(pydantic.BaseModel):
    sku: str
    qty: int


class OrderPlaced(pydantic.BaseModel):
    kind: Literal["OrderPlaced"] = "OrderPlaced"
    order_id: str
    at: datetime
    amount: float
    customer: Customer
    items: list[Item]


class OrderPaid(pydantic.BaseModel):
    kind: Literal["OrderPaid"] = "OrderPaid"
    order_id: str
    at: datetime
    amount: float
    method: str


def _orders(now: datetime, n: int = 120, seed: int = 7) -> list[tuple[Any, dict[str, str], str]]:
    """An orders service's messages: (message, headers, correlation id), in publish order.

    Each order is placed, then paid in one or two parts, or cancelled; a few are left
    unpaid. Amounts are multiples of 0.25, so every sum is exact in floating point.
    Cancellations go out as plain dicts (an older code path of the service), the rest as
    pydantic models. Business times (`at`) lie within minutes before `now` and are not in
    publish order; every 25th payment was settled hours earlier (a late webhook).
    """
    rng = random.Random(seed)
    per_order: list[list[Any]] = []
    for i in range(n):
        order_id = f"ord-{i:04d}"
        at = now - timedelta(minutes=4) + timedelta(seconds=i)
        amount = rng.randint(4, 400) * 0.25
        placed = OrderPlaced(
            order_id=order_id,
            at=at,
            amount=amount,
            customer=Customer(id=f"cus-{i % 17}", country=rng.choice(["DE", "FR", "NL"])),
            items=[Item(sku=f"sku-{rng.randint(1, 9)}", qty=rng.randint(1, 3)) for _ in range(2)],
        )
        messages: list[Any] = [placed]
        fate = rng.random()
        if fate < 0.1:
            messages.append(
                {
                    "kind": "OrderCancelled",
                    "order_id": order_id,
                    "at": (at + timedelta(seconds=20)).isoformat().replace("+00:00", "Z"),
                    "reason": "customer request",
                }
            )
        elif fate < 0.95:
            parts = [amount] if fate < 0.6 else [amount - 1.0, 1.0]
            delay = timedelta(seconds=rng.randint(30, 90))
            for k, part in enumerate(parts):
                messages.append(
                    OrderPaid(
                        order_id=order_id,
                        at=at
                        + delay
                        + timedelta(seconds=k)
                        - (timedelta(hours=3) if i % 25 == 0 and k == 0 else timedelta(0)),
                        amount=part,
                        method=rng.choice(["card", "sepa"]),
                    )
                )
        per_order.append(messages)
    out: list[tuple[Any, dict[str, str], str]] = []
    queues = [list(messages) for messages in per_order]
    while any(queues):
        # Interleave the orders, each one's messages staying in order.
        pick = rng.choice([q for q in queues if q])
        message = pick.pop(0)
        order_id = message["order_id"] if isinstance(message, dict) else message.order_id
        tenant = "acme" if int(order_id[-4:]) % 3 else "globex"
        out.append((message, {"tenant": tenant}, f"req-{order_id}-{len(out)}"))
    return out


async def _publish(url: str, messages: list[tuple[Any, dict[str, str], str]]) -> None:
    broker = RedisBroker(url)
    publisher = broker.publisher(stream=STREAM, headers={"service": "orders-api"})
    async with broker:
        await broker.start()
        for message, headers, correlation_id in messages:
            await publisher.publish(message, headers=headers, correlation_id=correlation_id)


async def _consume(url: str, expected: int) -> list[str]:
    """A billing service: a consumer group reading the stream from its start. It fails on
    cancellations (it has no handler for them), so those stay pending, unacknowledged.
    Returns the order ids it failed on."""
    broker = RedisBroker(url)
    handled: list[str] = []
    failed: list[str] = []

    # The group (created by the caller at the stream's first entry) exists: FastStream
    # reads it from there. (FastStream 0.7.0 reads a group it creates with `last_id="0"`
    # from that ID on every poll, which only ever returns the consumer's own pending entries.)
    @broker.subscriber(stream=StreamSub(STREAM, group="billing", consumer="billing-1"))
    async def bill(body: dict[str, Any]) -> None:
        handled.append(body["order_id"])
        if body["kind"] == "OrderCancelled":
            failed.append(body["order_id"])
            raise ValueError(f"no billing rule for {body['kind']}")

    async with broker:
        await broker.start()
        for _ in range(600):
            if len(handled) >= expected:
                break
            await asyncio.sleep(0.05)
    assert len(handled) == expected
    return failed


def _kind(message: Any) -> str:
    return message["kind"] if isinstance(message, dict) else message.kind


def _fields(message: Any) -> dict[str, Any]:
    return dict(message) if isinstance(message, dict) else message.model_dump()


def _business_time(message: Any) -> datetime:
    at = _fields(message)["at"]
    return at if isinstance(at, datetime) else datetime.fromisoformat(at)


def _opening(messages: list[tuple[Any, dict[str, str], str]]) -> datetime:
    """When the first order was placed (business time)."""
    return min(_business_time(m) for m, _, _ in messages if _kind(m) == "OrderPlaced")


def _due(messages: list[tuple[Any, dict[str, str], str]], until: datetime | None = None) -> dict:
    """Per order: the amount placed less the amounts paid (events with `at` <= until)."""
    due: dict[str, float] = defaultdict(float)
    for message, _, _ in messages:
        if until is not None and _business_time(message) > until:
            continue
        fields = _fields(message)
        if fields["kind"] == "OrderPlaced":
            due[fields["order_id"]] += fields["amount"]
        elif fields["kind"] == "OrderPaid":
            due[fields["order_id"]] -= fields["amount"]
        else:
            due.setdefault(fields["order_id"], 0.0)
    return dict(due)


@pytest.fixture
def published(r, redis_server) -> list[tuple[Any, dict[str, str], str]]:
    messages = _orders(datetime.now(UTC).replace(microsecond=0))
    run_async(_publish(redis_server.url, messages))
    assert r.xlen(STREAM) == len(messages)
    return messages


def test_the_wire_layout_is_one_binary_field(r, published):
    # The layout the faststream decoder and preset are written for; if FastStream changes
    # it, this fails first and says how.
    entries = raw_entries(r, STREAM)
    assert {tuple(flat[0::2]) for _, flat in entries} == {(b"__data__",)}
    frame = entries[0][1][1]
    assert frame.startswith(b"\x89BIN\r\n\x1a\n\x00\x01")
    assert frame.endswith(b"}")
    assert b"correlation_id" in frame and b"application/json" in frame


def test_read_arrow_gives_the_messages_with_headers_and_typed_body(r, published):
    table = ak.read_arrow(r, STREAM, envelope=ENVELOPE)
    assert table.num_rows == len(published)
    assert table.column("payload_error").null_count == table.num_rows
    kinds = Counter(_kind(m) for m, _, _ in published)
    assert Counter(table.column("event_type").to_pylist()) == kinds
    assert table.column("aggregate_id").to_pylist() == [
        _fields(m)["order_id"] for m, _, _ in published
    ]
    # The headers are columns: the call's, the publisher's and FastStream's own.
    assert table.column("correlation_id").to_pylist() == [c for _, _, c in published]
    assert table.column("tenant").to_pylist() == [h["tenant"] for _, h, _ in published]
    assert set(table.column("service").to_pylist()) == {"orders-api"}
    assert set(table.column("content-type").to_pylist()) == {"application/json"}
    # The body's fields, typed; nested objects as dotted columns.
    schema = table.schema
    assert schema.field("payload.amount").type == pa.float64()
    assert schema.field("payload.customer.id").type == pa.string()
    assert pa.types.is_list(schema.field("payload.items").type)
    amounts = [_fields(m).get("amount") for m, _, _ in published]
    assert table.column("payload.amount").to_pylist() == amounts
    reasons = table.column("payload.reason").to_pylist()
    assert sum(r is not None for r in reasons) == kinds["OrderCancelled"]
    # Effective time from the body, UTC.
    assert table.column("occurred_at").to_pylist() == [_business_time(m) for m, _, _ in published]


def test_the_default_envelope_says_the_stream_holds_faststream_frames(r, published):
    with pytest.raises(ak.EnvelopeMismatch) as caught:
        ak.read_arrow(r, STREAM)
    message = str(caught.value)
    assert "`__data__`" in message
    assert "field `type`" in message
    assert caught.value.fields == ["__data__"]
    assert message.count("does not match") == 1


def test_the_preset_alone_reads_every_message_under_the_streams_name(r, published):
    # Unchanged, the preset takes the event type from the key: one type per stream.
    table = ak.read_arrow(r, STREAM, envelope="faststream")
    assert set(table.column("event_type").to_pylist()) == {STREAM}
    assert table.column("aggregate_id").null_count == table.num_rows
    assert table.column("payload.order_id").null_count == 0


def test_inspect_proposes_the_faststream_envelope_and_its_toml_round_trips(
    r, published, tmp_path: Path
):
    found = ak.inspect(r, STREAM)
    assert found.format == "faststream"
    envelope = found.envelope
    assert envelope.payload == "__data__"
    assert envelope.decoder == "faststream"
    assert envelope.event_type == "payload.kind"
    assert envelope.aggregate_id == "payload.order_id"
    assert envelope.occurred_at == "payload.at"
    assert found.matches["event_type"] == 1.0
    assert found.matches["payload"] == 1.0
    assert "FastStream" in str(found)
    path = tmp_path / "orders.toml"
    path.write_text(found.toml())
    assert ak.Envelope.of(path) == envelope
    assert ak.Envelope.of(str(path)) == envelope
    assert ak.read_arrow(r, STREAM, envelope=path).equals(
        ak.read_arrow(r, STREAM, envelope=ENVELOPE)
    )


def test_declarative_states_give_each_orders_balance(r, published):
    envelope = ak.Envelope.of(ENVELOPE)
    orders = ak.Projection.declarative(
        last={"customer": "payload.customer.id"},
        count={"payments": "OrderPaid"},
        sum={"due": {"OrderPlaced": "payload.amount", "OrderPaid": "-payload.amount"}},
        envelope=envelope,
    )
    states = orders.states_at((r, STREAM)).set_index("aggregate_id")
    expected = _due(published)
    assert states["due"].to_dict() == expected
    payments = Counter(_fields(m)["order_id"] for m, _, _ in published if _kind(m) == "OrderPaid")
    assert states["payments"].to_dict() == {o: payments.get(o, 0) for o in expected}
    # One order, the Python path: the same answer.
    some = next(iter(expected))
    assert orders.state_at((r, STREAM), some)["due"] == expected[some]


def test_states_at_an_effective_time(r, published):
    envelope = ak.Envelope.of(ENVELOPE)
    orders = ak.Projection.declarative(
        sum={"due": {"OrderPlaced": "payload.amount", "OrderPaid": "-payload.amount"}},
        envelope=envelope,
    )
    cut = _opening(published) + timedelta(seconds=60)  # the late payments, the first orders
    states = orders.states_at((r, STREAM), at=cut, clock="effective").set_index("aggregate_id")
    expected = _due(published, until=cut)
    assert states["due"].to_dict() == expected
    # A real cut: some orders not placed yet, and late payments of those already counted.
    assert 0 < len(expected) < len(_due(published))
    assert any(due < 0 for due in expected.values())


def test_audit_finds_the_late_payments_and_nothing_else(r, published):
    findings = ak.audit(r, STREAM, envelope=ENVELOPE)
    assert set(findings["check"]) <= {"clock-skew", "clock-regression", "no-persistence"}
    ids = [entry_id.decode() for entry_id, _ in raw_entries(r, STREAM)]
    opening = _opening(published)
    late = {k for k, (m, _, _) in enumerate(published) if _business_time(m) < opening}
    assert len(late) >= 3
    skewed = findings[findings["check"] == "clock-skew"]
    assert set(skewed["id"]) == {ids[k] for k in late}
    assert set(skewed["aggregate_id"]) == {_fields(published[k][0])["order_id"] for k in late}
    # Paid (in business time) before it was placed: the same five events.
    regressed = findings[findings["check"] == "clock-regression"]
    assert set(regressed["id"]) == {ids[k] for k in late}


def test_drift_sees_each_message_kind(r, published):
    drift = ak.schema_drift((r, STREAM), envelope=ak.Envelope.of(ENVELOPE))
    timeline = drift.timeline
    assert set(timeline["event_type"]) == {"OrderPlaced", "OrderPaid", "OrderCancelled"}
    kinds = Counter(_kind(m) for m, _, _ in published)
    assert timeline.groupby("event_type")["events"].sum().to_dict() == dict(kinds)
    fields = drift.fields
    placed = set(fields.loc[fields["event_type"] == "OrderPlaced", "field"])
    assert {"amount", "customer.id", "customer.country", "order_id"} <= placed


def test_archive_round_trips_the_frames_byte_for_byte(r, redis_server, published, round_trip):
    archive = round_trip(STREAM, ak.Envelope.of(ENVELOPE))
    table = archive.events_table(stream=STREAM)
    kinds = Counter(_kind(m) for m, _, _ in published)
    assert Counter(table.column("event_type").to_pylist()) == kinds
    # Archive and live tail in one view, the tail decoded with the same envelope.
    now = datetime.now(UTC).replace(microsecond=0)
    later = [m for m in _orders(now, n=3, seed=99) if _kind(m[0]) == "OrderPlaced"]
    run_async(_publish(redis_server.url, later))
    con = archive.duckdb(live=r)
    rows = con.execute(
        "SELECT event_type, count(*) FROM events WHERE stream = ? GROUP BY 1", [STREAM]
    ).fetchall()
    assert dict(rows) == {**kinds, "OrderPlaced": kinds["OrderPlaced"] + len(later)}


def test_a_pseudonymised_archive_holds_no_customer_id(published, pseudonymise):
    customers = sorted(
        {_fields(m)["customer"]["id"] for m, _, _ in published if "customer" in _fields(m)}
    )
    pseudonymise(
        STREAM, ak.Envelope.of(ENVELOPE), "payload.customer.id", customers, may_refuse=True
    )


def test_a_consumer_groups_failures_join_back_to_the_orders(r, redis_server, published):
    r.xgroup_create(STREAM, "billing", id="0")
    failed = run_async(_consume(redis_server.url, len(published)))
    cancelled = [_fields(m)["order_id"] for m, _, _ in published if _kind(m) == "OrderCancelled"]
    assert failed == cancelled and cancelled
    pending = ak.pending_entries(r, STREAM, envelope=ENVELOPE)
    assert pending["group"].unique().tolist() == ["billing"]
    assert pending["consumer"].unique().tolist() == ["billing-1"]
    assert pending["event_type"].unique().tolist() == ["OrderCancelled"]
    assert pending["aggregate_id"].tolist() == cancelled
    findings = ak.audit(r, STREAM, envelope=ENVELOPE, poison_after=0)
    poison = findings[findings["check"] == "poison-message"]
    assert sorted(poison["aggregate_id"]) == sorted(cancelled)
    assert poison["detail"].str.contains("`OrderCancelled`").all()


async def _publish_typed_by_header(url: str, n: int) -> list[tuple[str, dict[str, Any]]]:
    """Another common layout: the type and the schema version in headers, the body bare."""
    sent = []
    broker = RedisBroker(url)
    async with broker:
        await broker.start()
        for i in range(n):
            kind = "OrderPaid" if i % 3 else "OrderPlaced"
            body = {"order_id": f"ord-{i % 7}", "amount": 0.5 * i}
            headers = {"type": kind, "schema_version": "2" if i > n // 2 else "1"}
            await broker.publish(body, stream="payments", headers=headers)
            sent.append((kind, {**body, **headers}))
    return sent


def test_the_type_and_version_in_headers(r, redis_server):
    sent = run_async(_publish_typed_by_header(redis_server.url, 40))
    found = ak.inspect(r, "payments")
    assert found.envelope.event_type == "type"
    assert found.envelope.schema_version == "schema_version"
    assert found.envelope.aggregate_id == "payload.order_id"
    table = ak.read_arrow(r, "payments", envelope=found.envelope)
    assert table.column("event_type").to_pylist() == [kind for kind, _ in sent]
    assert table.column("schema_version").type == pa.int64()
    assert table.column("schema_version").to_pylist() == [int(m["schema_version"]) for _, m in sent]
    drift = ak.schema_drift((r, "payments"), envelope=found.envelope)
    assert set(drift.timeline["schema_version"]) == {1, 2}


def test_redis_6_2_and_7(any_r):
    now = datetime.now(UTC).replace(microsecond=0)
    messages = _orders(now, n=20, seed=1)
    run_async(_publish(url_of(any_r), messages))
    table = ak.read_arrow(any_r, STREAM, envelope=ENVELOPE)
    assert table.column("event_type").to_pylist() == [_kind(m) for m, _, _ in messages]
    assert ak.inspect(any_r, STREAM).envelope.event_type == "payload.kind"
    with pytest.raises(ak.EnvelopeMismatch, match="`__data__`"):
        ak.read_arrow(any_r, STREAM)


def test_the_command_line_takes_the_envelope_file(r, redis_server, published, tmp_path, capsys):
    from auditkit._cli.main import main

    path = tmp_path / "orders.toml"
    path.write_text(ak.inspect(r, STREAM).toml())
    url = ["--redis-url", redis_server.url]
    code = main(["audit", STREAM, "--envelope", str(path), *url])
    err = capsys.readouterr().err
    assert code in (0, 1), err  # done, with or without findings
    assert "does not match" not in err
    assert main(["inspect", STREAM, *url]) == 0
    assert "payload.kind" in capsys.readouterr().out
