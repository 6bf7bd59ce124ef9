"""The demo data set: a small bank whose accounts are event-sourced in Redis Streams.

Deterministic (seeded), so every run, test and notebook sees the same events and IDs.
data/README.md documents what is in it.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import redis

from auditkit._connection import redis_errors
from auditkit._ids import StreamID, datetime_to_ms

__all__ = ["DEMO_START", "DEMO_STREAMS", "DemoEvent", "demo_events", "seed_demo"]

DEMO_START = datetime(2026, 1, 1, tzinfo=UTC)
ACCOUNTS_STREAM = "demo:accounts"
DEMO_STREAMS = (ACCOUNTS_STREAM,)
LATE_WINDOW = (datetime(2026, 3, 1, 0, 0, tzinfo=UTC), datetime(2026, 3, 1, 6, 0, tzinfo=UTC))
"""Deposits and withdrawals recorded in this window happened LATE_BY earlier."""
LATE_BY = timedelta(hours=8)
_BRANCHES = ("north", "south", "harbour", "online")
_CHANNELS = ("card", "transfer", "cash", "payroll")


@dataclass(frozen=True, slots=True)
class DemoEvent:
    """One demo entry: its stream, ID and fields, as they are written with XADD."""

    stream: str
    id: StreamID
    fields: dict[str, bytes]


def demo_events(*, accounts: int = 500, days: int = 90, seed: int = 7) -> Iterator[DemoEvent]:
    """The demo events in ID order."""
    rng = random.Random(seed)
    horizon_ms = days * 86_400_000
    start_ms = datetime_to_ms(DEMO_START)
    timeline: list[tuple[int, str, str, dict[str, object]]] = []
    for n in range(accounts):
        account = f"acct-{n:05d}"
        opened = rng.randrange(0, horizon_ms // 3)
        timeline.append(
            (
                opened,
                account,
                "AccountOpened",
                {
                    "owner": f"customer-{rng.randrange(10_000):04d}",
                    "currency": "EUR",
                    "branch": rng.choice(_BRANCHES),
                },
            )
        )
        moment = opened
        balance = 0.0
        for _ in range(rng.randrange(5, 60)):
            moment += rng.randrange(60_000, horizon_ms // 30)
            if moment >= horizon_ms:
                break
            if balance > 50 and rng.random() < 0.4:
                amount = round(rng.uniform(1, balance * 0.8), 2)
                balance -= amount
                timeline.append((moment, account, "Withdrawn", {"amount": amount}))
            else:
                amount = round(rng.uniform(5, 2_000), 2)
                balance += amount
                timeline.append(
                    (
                        moment,
                        account,
                        "Deposited",
                        {"amount": amount, "channel": rng.choice(_CHANNELS)},
                    )
                )
        if rng.random() < 0.05 and moment + 3_600_000 < horizon_ms:
            timeline.append(
                (moment + 3_600_000, account, "AccountClosed", {"reason": "customer request"})
            )
    timeline.sort(key=lambda item: (item[0], item[1]))
    last = StreamID(0, 0)
    for offset, account, event_type, payload in timeline:
        ms = start_ms + offset
        sid = StreamID(ms, 0) if ms > last.ms else last.next()
        last = sid
        occurred = sid.to_datetime() - timedelta(milliseconds=rng.randrange(0, 5_000))
        if LATE_WINDOW[0] <= occurred < LATE_WINDOW[1] and event_type in ("Deposited", "Withdrawn"):
            # Planted: a branch's batch recorded at dawn what happened the evening before.
            occurred -= LATE_BY
        yield DemoEvent(
            ACCOUNTS_STREAM,
            sid,
            {
                "type": event_type.encode(),
                "aggregate_id": account.encode(),
                "schema_version": b"1",
                "occurred_at": occurred.isoformat(timespec="milliseconds")
                .replace("+00:00", "Z")
                .encode(),
                "producer": b"ledger-service",
                "payload": json.dumps(payload, separators=(",", ":")).encode(),
            },
        )


def seed_demo(client: redis.Redis, *, reset: bool = False, batch: int = 2_000) -> dict[str, int]:
    """Write the demo streams; returns entries written per stream.

    Seeding is idempotent and resumable: entries at or below a stream's last ID are taken
    as already written. `reset=True` deletes the demo streams first.
    """
    with redis_errors(client, command="XADD"):
        if reset:
            client.delete(*DEMO_STREAMS)
        last_written: dict[str, StreamID] = {}
        for key in DEMO_STREAMS:
            newest: list[tuple[bytes, dict[bytes, bytes]]] = client.xrevrange(key, count=1)  # type: ignore[assignment]
            if newest:
                last_written[key] = StreamID.parse(newest[0][0])
        written = dict.fromkeys(DEMO_STREAMS, 0)
        pipe = client.pipeline(transaction=False)
        for event in demo_events():
            done = last_written.get(event.stream)
            if done is not None and event.id <= done:
                continue
            pipe.xadd(event.stream, event.fields, id=str(event.id))  # type: ignore[arg-type]
            written[event.stream] += 1
            if len(pipe) >= batch:
                pipe.execute()
        pipe.execute()
    return written
