"""The benchmark event sets: N events (five fields, a ~100-byte JSON payload), 10k accounts;
and a wide process-mining log (15 text payload fields)."""

from __future__ import annotations

import json
import random
from typing import Any

STREAM = "bench:events"
ACCOUNTS = 10_000


def seed_events(client: Any, stream: str, events: int) -> None:
    """Write `events` entries to `stream` (replacing it), three per millisecond."""
    rng = random.Random(42)
    types = ["AccountOpened", "Deposited", "Withdrawn", "AccountClosed"]
    base = 1_767_225_600_000
    client.delete(stream)
    pipe = client.pipeline(transaction=False)
    for i in range(events):
        payload = json.dumps(
            {
                "amount": round(rng.uniform(1, 5_000), 2),
                "currency": "EUR",
                "channel": rng.choice(["card", "cash", "transfer"]),
                "account": {"branch": rng.choice(["north", "south"]), "tier": rng.randrange(5)},
                "note": "x" * rng.randrange(5, 20),
            },
            separators=(",", ":"),
        )
        fields = {
            "type": rng.choice(types),
            "aggregate_id": f"acct-{rng.randrange(ACCOUNTS):05d}",
            "schema_version": "2",
            "occurred_at": "2026-01-03T10:15:02.125Z",
            "payload": payload,
        }
        pipe.xadd(stream, fields, id=f"{base + i // 3}-{i % 3}")
        if len(pipe) >= 5_000:
            pipe.execute()
    pipe.execute()


WIDE_STREAM = "bench:log"
ACTIVITIES = [
    "Register request",
    "Examine casually",
    "Examine thoroughly",
    "Check ticket",
    "Decide",
    "Reinitiate request",
    "Pay compensation",
    "Reject request",
]


def seed_wide_log(client: Any, stream: str, events: int, *, days: int = 60) -> None:
    """A process-mining log: `events` entries over `days` days, 15 text payload fields."""
    rng = random.Random(7)
    base = 1_767_225_600_000
    step = days * 86_400_000 // max(events, 1)
    client.delete(stream)
    pipe = client.pipeline(transaction=False)
    for i in range(events):
        activity = rng.choice(ACTIVITIES)
        payload = json.dumps(
            {
                "case_id": f"case-{rng.randrange(20_000):06d}",
                "activity": activity,
                "resource": f"user-{rng.randrange(300):03d}",
                "role": rng.choice(["clerk", "manager", "analyst", "expert"]),
                "department": rng.choice(["claims", "finance", "legal", "support"]),
                "lifecycle": rng.choice(["start", "complete"]),
                "channel": rng.choice(["web", "phone", "mail", "branch"]),
                "region": rng.choice(["north", "south", "east", "west"]),
                "product": rng.choice(["home", "car", "travel", "life"]),
                "priority": rng.choice(["low", "normal", "high"]),
                "outcome": rng.choice(["open", "accepted", "rejected", "pending"]),
                "system": rng.choice(["crm", "erp", "portal"]),
                "customer_segment": rng.choice(["retail", "business", "vip"]),
                "comment": "note " + "x" * rng.randrange(0, 24),
                "cost_center": f"cc-{rng.randrange(40):02d}",
            },
            separators=(",", ":"),
        )
        fields = {
            "type": activity,
            "aggregate_id": f"case-{rng.randrange(20_000):06d}",
            "schema_version": "1",
            "payload": payload,
        }
        when = base + i * step
        pipe.xadd(stream, fields, id=f"{when}-{i}")
        if len(pipe) >= 5_000:
            pipe.execute()
    pipe.execute()
