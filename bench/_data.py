"""The benchmark event set: N events (five fields, a ~100-byte JSON payload), 10k accounts."""

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
