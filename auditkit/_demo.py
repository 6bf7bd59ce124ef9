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
from pathlib import Path
from typing import Any

import pandas as pd

from auditkit._audit.audit import audit
from auditkit._drift.report import schema_drift
from auditkit._load.reader import read_arrow
from auditkit._redis.connection import Client, address_of, redis_errors
from auditkit._redis.ids import StreamID, datetime_to_ms
from auditkit._redis.streams import streams
from auditkit._redis.xinfo import group_infos
from auditkit._report.report import report as write_report
from auditkit._secrets import redact
from auditkit._timetravel.projection import Projection

__all__ = [
    "DEMO_START",
    "DEMO_STREAMS",
    "READ_MODEL",
    "DemoEvent",
    "demo_events",
    "demo_projection",
    "run_demo",
    "seed_demo",
]

DEMO_START = datetime(2026, 1, 1, tzinfo=UTC)
ACCOUNTS_STREAM = "demo:accounts"
PAYMENTS_STREAM = "demo:payments"
DEMO_STREAMS = (ACCOUNTS_STREAM, PAYMENTS_STREAM)
READ_MODEL = "demo:balance:{aggregate_id}"
"""One Redis hash per account with its `balance`, as a service's read model would keep it."""
GROUP = "notifications"
V2_FROM = datetime(2026, 2, 15, tzinfo=UTC)
"""From here on Deposited and Withdrawn are schema version 2, which adds `currency`."""
CHANNEL_CODES_FROM = datetime(2026, 3, 10, tzinfo=UTC)
"""From here on Deposited v2 carries `channel` as a numeric code: a type change, no bump."""
DRIFTED_ACCOUNT = "acct-00042"
POISON_DELIVERIES = 9
CRASHED_PENDING = 12
PAYMENTS_WRITTEN, PAYMENTS_KEPT = 1_000, 700
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
    planted = random.Random(seed + 1)  # its own sequence: planting leaves the rest unchanged
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
        version, producer = 1, "ledger-service"
        if event_type in ("Deposited", "Withdrawn") and sid.to_datetime() >= V2_FROM:
            if event_type == "Deposited" and planted.random() < 0.06:
                producer = "legacy-atm"  # Planted: an old producer still writes v1.
            else:
                version, payload = 2, {**payload, "currency": "EUR"}
                if event_type == "Deposited" and sid.to_datetime() >= CHANNEL_CODES_FROM:
                    # Planted: `channel` becomes a numeric code, and nobody bumps the version.
                    payload["channel"] = _CHANNELS.index(str(payload["channel"])) + 1
        yield DemoEvent(
            ACCOUNTS_STREAM,
            sid,
            {
                "type": event_type.encode(),
                "aggregate_id": account.encode(),
                "schema_version": str(version).encode(),
                "occurred_at": occurred.isoformat(timespec="milliseconds")
                .replace("+00:00", "Z")
                .encode(),
                "producer": producer.encode(),
                "payload": json.dumps(payload, separators=(",", ":")).encode(),
            },
        )
    yield from _payments(start_ms, horizon_ms, planted)


def _payments(start_ms: int, horizon_ms: int, rng: random.Random) -> Iterator[DemoEvent]:
    step = horizon_ms // PAYMENTS_WRITTEN
    for n in range(PAYMENTS_WRITTEN):
        payload = {"amount": round(rng.uniform(5, 500), 2), "method": rng.choice(_CHANNELS)}
        yield DemoEvent(
            PAYMENTS_STREAM,
            StreamID(start_ms + n * step, 0),
            {
                "type": b"PaymentCaptured",
                "aggregate_id": f"pay-{n:05d}".encode(),
                "schema_version": b"1",
                "producer": b"payments-gateway",
                "payload": json.dumps(payload, separators=(",", ":")).encode(),
            },
        )


def seed_demo(client: Client, *, reset: bool = False, batch: int = 2_000) -> dict[str, int]:
    """Write the demo data set and plant its anomalies; returns entries written per stream.

    Seeding is idempotent and resumable: entries at or below a stream's last ID are taken
    as already written, and planted structures that exist are left alone. `reset=True`
    deletes every `demo:*` key first. data/README.md lists what is planted.
    """
    with redis_errors(client, command="XADD"):
        if reset:
            doomed = list(client.scan_iter(match="demo:*", count=1_000))
            if doomed:
                client.delete(*doomed)
        last_written: dict[str, StreamID] = {}
        for key in DEMO_STREAMS:
            newest: list[tuple[bytes, dict[bytes, bytes]]] = client.xrevrange(key, count=1)  # type: ignore[assignment]
            if newest:
                last_written[key] = StreamID.parse(newest[0][0])
        fresh = {key: key not in last_written for key in DEMO_STREAMS}
        written = dict.fromkeys(DEMO_STREAMS, 0)
        balances: dict[str, float] = {}
        poison: str | None = None
        pipe = client.pipeline(transaction=False)
        for event in demo_events():
            if event.stream == ACCOUNTS_STREAM:
                _apply(balances, event)
                if poison is None and event.fields["producer"] == b"legacy-atm":
                    poison = str(event.id)
            done = last_written.get(event.stream)
            if done is not None and event.id <= done:
                continue
            pipe.xadd(event.stream, event.fields, id=str(event.id))  # type: ignore[arg-type]
            written[event.stream] += 1
            if len(pipe) >= batch:
                pipe.execute()
        pipe.execute()
        if fresh[PAYMENTS_STREAM]:
            # Planted: a producer capped this stream with MAXLEN before anyone archived it.
            client.xtrim(PAYMENTS_STREAM, maxlen=PAYMENTS_KEPT, approximate=False)
        _plant_read_model(client, balances)
        _plant_consumers(client, poison)
    return written


def _apply(balances: dict[str, float], event: DemoEvent) -> None:
    kind = event.fields["type"]
    if kind not in (b"Deposited", b"Withdrawn"):
        return
    account = event.fields["aggregate_id"].decode()
    amount = json.loads(event.fields["payload"])["amount"]
    sign = 1 if kind == b"Deposited" else -1
    balances[account] = round(balances.get(account, 0.0) + sign * amount, 2)


def _plant_read_model(client: Client, balances: dict[str, float]) -> None:
    key = READ_MODEL.replace("{aggregate_id}", DRIFTED_ACCOUNT)
    if client.exists(key):
        return
    pipe = client.pipeline(transaction=False)
    for account, balance in balances.items():
        stored = round(balance + 100.0, 2) if account == DRIFTED_ACCOUNT else balance
        pipe.hset(READ_MODEL.replace("{aggregate_id}", account), mapping={"balance": stored})
    pipe.execute()  # Planted: one account's balance is 100.00 EUR off.


def _plant_consumers(client: Client, poison: str | None) -> None:
    if any(g["name"] == GROUP for g in group_infos(client, ACCOUNTS_STREAM)):
        return
    client.xgroup_create(ACCOUNTS_STREAM, GROUP, id="0")
    read: Any = client.xreadgroup(GROUP, "mailer-1", {ACCOUNTS_STREAM: ">"}, count=1_000_000)
    ids: list[bytes] = [entry_id for entry_id, _ in read[0][1]] if read else []
    crashed: list[Any] = ids[-CRASHED_PENDING:]
    kept = set(crashed) | ({poison.encode()} if poison else set())
    done = [entry_id for entry_id in ids if entry_id not in kept]
    for start in range(0, len(done), 5_000):
        client.xack(ACCOUNTS_STREAM, GROUP, *done[start : start + 5_000])
    # Planted: mailer-2 took the last entries three hours ago and crashed before acking.
    client.xclaim(
        ACCOUNTS_STREAM, GROUP, "mailer-2", min_idle_time=0, message_ids=crashed, idle=3 * 3_600_000
    )
    if poison:
        # Planted: a legacy v1 deposit fails every time it is retried.
        for _ in range(POISON_DELIVERIES - 1):
            client.xclaim(ACCOUNTS_STREAM, GROUP, "mailer-1", min_idle_time=0, message_ids=[poison])


def demo_projection() -> Projection:
    """The accounts projection the demo's read model follows: balance and open flag."""

    def opened(state: dict[str, Any], event: Any) -> dict[str, Any]:
        return {**state, "open": True}

    def deposited(state: dict[str, Any], event: Any) -> dict[str, Any]:
        return {**state, "balance": round(state["balance"] + event["payload"]["amount"], 2)}

    def withdrawn(state: dict[str, Any], event: Any) -> dict[str, Any]:
        return {**state, "balance": round(state["balance"] - event["payload"]["amount"], 2)}

    def closed(state: dict[str, Any], event: Any) -> dict[str, Any]:
        return {**state, "open": False}

    return Projection(
        {"balance": 0.0, "open": False},
        {
            "AccountOpened": opened,
            "Deposited": deposited,
            "Withdrawn": withdrawn,
            "AccountClosed": closed,
        },
    )


def run_demo(client: Client, *, reset: bool, report: str | Path) -> Iterator[str | pd.DataFrame]:
    """`auditkit demo`: seed the demo data, audit it, report drift, write the HTML report.

    Yields the summary as each part is done: lines, and a table as a DataFrame (the
    command line prints it as it prints every table).
    """
    written = seed_demo(client, reset=reset)
    yield f"Demo data at {redact(address_of(client))}"
    overview = streams(client, "demo:*").set_index("key")
    for stream in DEMO_STREAMS:
        row = overview.loc[stream]
        events = read_arrow(client, stream)
        counts = events.group_by("event_type").aggregate([("id", "count")]).to_pylist()
        kinds = ", ".join(f"{c['event_type']} {c['id_count']:,}" for c in counts)
        aggregates = len(events.column("aggregate_id").unique())
        yield (
            f"  {stream}: {row['length']:,} entries ({written[stream]:,} written now), "
            f"{row['first_id']} ({row['first_ts']:%Y-%m-%d}) .. "
            f"{row['last_id']} ({row['last_ts']:%Y-%m-%d})"
        )
        yield f"    {aggregates:,} aggregates; {kinds}"
    findings = pd.concat(
        [
            audit(
                client,
                ACCOUNTS_STREAM,
                projection=demo_projection(),
                read_model=(client, READ_MODEL),
                terminal_types=["AccountClosed"],
            ),
            audit(client, PAYMENTS_STREAM),
        ],
        ignore_index=True,
    ).drop_duplicates(["check", "stream", "id", "detail"], ignore_index=True)
    yield f"\nAudit: {len(findings)} finding(s)"
    if len(findings):
        summary = findings.groupby(["severity", "check"], sort=False).size().rename("findings")
        yield summary.reset_index()
    drift = schema_drift((client, "demo:*"), window="week")
    versions = drift.timeline.groupby("event_type")["schema_version"].unique()
    yield (
        f"\nSchema drift: {len(drift.findings)} finding(s); versions per event type: "
        + ", ".join(
            f"{t} " + "/".join(f"v{x}" for x in sorted(map(str, v))) for t, v in versions.items()
        )
    )
    written_report = write_report(
        client,
        list(DEMO_STREAMS),
        output=report,
        findings=findings,
        title="auditkit demo report",
    )
    yield f"\nReport: {written_report.html.resolve()} (verdict: {written_report.verdict})"
