"""Streams with planted findings, for the report's tests: the default layout, flat fields,
and a task broker's JSON messages (the type inside the payload, as taskiq writes them)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import redis

ORDERS = "orders"
GROUP = "billing"
# Two busy weeks eight months apart: a plot must show the quiet weeks between them.
SPRING = datetime(2026, 3, 30, 9, tzinfo=UTC)
AUTUMN = datetime(2026, 11, 23, 9, tzinfo=UTC)


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def plant_orders(r: redis.Redis, stream: str = ORDERS) -> dict[str, str]:
    """Orders in two weeks; returns the IDs of the planted findings by name."""
    planted: dict[str, str] = {}
    entries = []
    for week, (start, version) in enumerate(((SPRING, "1"), (AUTUMN, "2"))):
        for i in range(24):
            at = start + timedelta(hours=5 * i)
            payload: dict[str, object] = {"amount": 10 + i, "sku": f"sku-{i % 4}"}
            if version == "2":
                payload["currency"] = "EUR"
            entries.append(
                (
                    at,
                    {
                        "type": "OrderPaid" if i % 2 else "OrderPlaced",
                        "aggregate_id": f"order-{week}{i % 6}",
                        "schema_version": version,
                        "producer": "shop",
                        # The autumn producer's clock runs two hours behind.
                        "occurred_at": (at - timedelta(hours=2 * week)).isoformat(),
                        "payload": json.dumps(payload),
                    },
                )
            )
    # A producer still writing v1 in November.
    late = AUTUMN + timedelta(days=2, minutes=7)
    entries.append(
        (
            late,
            {
                "type": "OrderPaid",
                "aggregate_id": "order-13",
                "schema_version": "1",
                "producer": "legacy-pos",
                "occurred_at": late.isoformat(),
                "payload": json.dumps({"amount": 99, "sku": "sku-9"}),
            },
        )
    )
    skewed = AUTUMN + timedelta(days=3, minutes=11)
    entries.append(
        (
            skewed,
            {
                "type": "OrderPaid",
                "aggregate_id": "order-14",
                "schema_version": "2",
                "producer": "shop",
                "occurred_at": (skewed - timedelta(hours=2)).isoformat(),
                "payload": json.dumps({"amount": 7, "sku": "sku-1", "currency": "EUR"}),
            },
        )
    )
    entries.sort(key=lambda e: e[0])
    for at, fields in entries:
        entry_id = f"{_ms(at)}-0"
        r.xadd(stream, fields, id=entry_id)
        if at == skewed:
            planted["clock-skew"] = entry_id
    ids = [e[0].decode() for e in r.xrange(stream)]
    r.xgroup_create(stream, GROUP, id="0")
    r.xreadgroup(GROUP, "worker-1", {stream: ">"})
    poison, stale = ids[5], ids[40]
    r.xack(stream, GROUP, *[i for i in ids if i not in (poison, stale)])
    for attempt in range(6):  # every retry claims it again: the delivery count climbs
        r.xclaim(stream, GROUP, f"worker-{attempt % 2}", min_idle_time=0, message_ids=[poison])
    # A consumer that took an entry an hour ago and died.
    r.xclaim(stream, GROUP, "worker-3", min_idle_time=0, message_ids=[stale], idle=3_600_000)
    planted["poison-message"] = poison
    planted["pending-stale"] = stale
    return planted


def plant_flat(r: redis.Redis, stream: str = "p2p:log") -> dict[str, str]:
    """An event-log export: flat fields, no payload; `activity` is the type, `case` the
    aggregate. Returns its envelope as a dict."""
    start = datetime(2026, 3, 2, 8, tzinfo=UTC)
    for c in range(12):
        at = start + timedelta(hours=7 * c)
        for step, activity in enumerate(("Create Order", "Approve", "Pay")):
            at += timedelta(hours=step + 1)
            r.xadd(
                stream,
                {
                    "case": f"PO-{c:03d}",
                    "activity": activity,
                    "resource": ("anna", "ben")[c % 2],
                    "amount": "" if activity == "Approve" else str(10 * c + 0.25),
                },
                id=f"{_ms(at)}-0",
            )
    return {"preset": "flat", "event_type": "activity", "aggregate_id": "case"}


TASKS = ("billing.tasks:charge", "mail.tasks:send_receipt")


def plant_tasks(r: redis.Redis, stream: str = "taskiq") -> dict[str, str]:
    """taskiq's stream broker: one field, `data`, holding the message as JSON. Returns its
    envelope as a dict."""
    start = datetime(2026, 4, 6, 9, tzinfo=UTC)
    for i in range(40):
        message = {
            "task_id": f"t-{i // 2:03d}",  # every task sent twice: the second is its retry
            "task_name": TASKS[i % 2],
            "labels": {"_retries": str(i % 2)},
            "args": [i],
            "kwargs": {"amount": i * 1.5} if i < 30 else {"amount": str(i * 1.5)},
        }
        r.xadd(stream, {"data": json.dumps(message)}, id=f"{_ms(start + timedelta(hours=i))}-0")
    return {"event_type": "payload.task_name", "aggregate_id": "payload.task_id", "payload": "data"}
