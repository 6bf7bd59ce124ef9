"""A BullMQ queue's events stream, written by a real Queue and Worker, read through auditkit.

BullMQ's Lua scripts write every job's life to `bull:<queue>:events` as flat text fields:
`event` (added, waiting, active, completed, failed, retries-exhausted, delayed, drained,
...), `jobId`, and what the event carries: `name` on `added`, `prev` (the state left) on
moves, `returnvalue` (the processor's result as JSON) on `completed`, `failedReason` on
`failed`, `attemptsMade` on `retries-exhausted`. `drained` (the queue ran empty) has no
`jobId`.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from _producers import raw_entries, require, run_async, url_of

import auditkit as ak

require("bullmq")

from bullmq import Queue, Worker  # noqa: E402

QUEUE = "mail"
STREAM = f"bull:{QUEUE}:events"
JOBS = 200


def _plan(i: int) -> str:
    """What job i does: `ok`, `fail` (one attempt, raises) or `flaky` (fails its first
    attempt of two, then succeeds)."""
    if i % 13 == 5:
        return "fail"
    if i % 11 == 3:
        return "flaky"
    return "ok"


async def _run(url: str) -> dict[str, str]:
    """Add the jobs, work them off, and return BullMQ's own final state of each job."""
    queue = Queue(QUEUE, {"connection": url})
    attempts: Counter[str] = Counter()

    async def process(job: Any, token: str) -> dict[str, Any]:
        attempts[job.id] += 1
        plan = job.data["plan"]
        if plan == "fail" or (plan == "flaky" and attempts[job.id] == 1):
            raise RuntimeError(f"smtp refused {job.data['to']}")
        return {"sent": job.data["to"], "attempt": attempts[job.id]}

    try:
        for i in range(JOBS):
            plan = _plan(i)
            await queue.add(
                "receipt" if i % 2 else "invoice",
                {"to": f"user{i}@example.com", "plan": plan},
                {"jobId": f"mail-{i:03d}", "attempts": 2 if plan == "flaky" else 1},
            )
        # The worker starts once every job waits: the queue drains exactly once, at the end.
        worker = Worker(QUEUE, process, {"connection": url, "drainDelay": 1})
        try:
            for _ in range(600):
                counts = await queue.getJobCounts("completed", "failed")
                if counts["completed"] + counts["failed"] == JOBS:
                    break
                await asyncio.sleep(0.05)
            for _ in range(100):  # `drained` is written just after the last job finishes
                # BullMQ's client decodes replies to text.
                if (await queue.client.xrevrange(STREAM, count=1))[0][1]["event"] == "drained":
                    break
                await asyncio.sleep(0.05)
        finally:
            await worker.close(force=True)
        return {f"mail-{i:03d}": await queue.getJobState(f"mail-{i:03d}") for i in range(JOBS)}
    finally:
        await queue.close()


@pytest.fixture
def states(r, redis_server) -> dict[str, str]:
    return run_async(_run(redis_server.url))


def _expected_counts(r) -> dict[str, int]:
    """Each event's count, from the jobs run (and, for `drained`, the raw stream)."""
    plans = Counter(_plan(i) for i in range(JOBS))
    drained = sum(flat[1] == b"drained" for _, flat in raw_entries(r, STREAM))
    assert drained >= 1
    return {
        "added": JOBS,
        "waiting": JOBS + plans["flaky"],  # a retried job waits again
        "active": JOBS + plans["flaky"],
        "completed": plans["ok"] + plans["flaky"],
        "failed": plans["fail"],
        "retries-exhausted": plans["fail"],
        "drained": drained,
    }


def test_bullmq_did_what_was_planned(r, states):
    # BullMQ's own view, the basis of every other expectation here.
    assert states == {
        f"mail-{i:03d}": "failed" if _plan(i) == "fail" else "completed" for i in range(JOBS)
    }
    entries = raw_entries(r, STREAM)
    assert {flat[0] for _, flat in entries} == {b"event"}
    drained = [flat for _, flat in entries if flat[1] == b"drained"]
    assert drained and all(flat == [b"event", b"drained"] for flat in drained)


def test_event_counts_are_what_bullmq_did(r, states):
    table = ak.read_arrow(r, STREAM, envelope="bullmq")
    assert table.num_rows == r.xlen(STREAM)
    assert dict(Counter(table.column("event_type").to_pylist())) == _expected_counts(r)
    # drained has no job; every other event names one.
    types = table.column("event_type").to_pylist()
    jobs = table.column("aggregate_id").to_pylist()
    assert all((job is None) == (kind == "drained") for kind, job in zip(types, jobs, strict=True))
    assert set(jobs) - {None} == set(states)
    # The other fields, flat and typed: results are JSON text, failures say why.
    rows = table.to_pylist()
    completed = [row for row in rows if row["event_type"] == "completed"]
    assert all(json.loads(row["payload.returnvalue"])["sent"] for row in completed)
    assert {row["payload.prev"] for row in completed} == {"active"}
    failed = [row for row in rows if row["event_type"] == "failed"]
    assert all(row["payload.failedReason"].startswith("smtp refused") for row in failed)
    exhausted = [row for row in rows if row["event_type"] == "retries-exhausted"]
    assert {row["payload.attemptsMade"] for row in exhausted} == {1}
    added = [row for row in rows if row["event_type"] == "added"]
    assert Counter(row["payload.name"] for row in added) == {"invoice": 100, "receipt": 100}


def test_the_last_event_gives_each_jobs_final_state(r, states):
    jobs = ak.Projection.declarative(
        last={"event": "event_type", "error": "payload.failedReason"},
        count={"attempts": "active"},
        envelope=ak.Envelope.of("bullmq"),
    )
    frame = jobs.states_at((r, STREAM))
    final = frame[frame["aggregate_id"].notna()].set_index("aggregate_id")
    # A job that failed for good ends with `retries-exhausted`, after its `failed`.
    ends = {"completed": "completed", "failed": "retries-exhausted"}
    assert final["event"].to_dict() == {job: ends[state] for job, state in states.items()}
    assert final["attempts"].to_dict() == {
        f"mail-{i:03d}": 2 if _plan(i) == "flaky" else 1 for i in range(JOBS)
    }
    failed = final[final["event"] == "retries-exhausted"]
    assert failed["error"].str.startswith("smtp refused").all()


def test_queue_wide_events_are_no_aggregate(r, states):
    last = ak.Projection.declarative(
        last={"event": "event_type"}, envelope=ak.Envelope.of("bullmq")
    )
    frame = last.states_at((r, STREAM))
    assert frame["aggregate_id"].notna().all(), frame.tail(2)
    assert len(frame) == JOBS
    folded = ak.Projection(
        initial=dict,
        handlers={"*": lambda state, event: {"event": event["event_type"]}},
        envelope=ak.Envelope.of("bullmq"),
    )
    assert len(folded.states_at((r, STREAM))) == JOBS


def test_a_handler_projection_agrees(r, states):
    def outcome(name: str):
        return lambda state, event: {"state": name, "reason": event["payload"].get("failedReason")}

    jobs = ak.Projection(
        initial=dict,
        handlers={"completed": outcome("completed"), "failed": outcome("failed")},
        envelope=ak.Envelope.of("bullmq"),
    )
    final = jobs.states_at((r, STREAM)).set_index("aggregate_id")
    assert final["state"].to_dict() == states
    assert jobs.state_at((r, STREAM), "mail-005") == {
        "state": "failed",
        "reason": "smtp refused user5@example.com",
    }


async def _trickle(url: str, jobs: int) -> None:
    """A quiet queue: each job is added once the one before has finished, so the queue
    drains after every job and one event in five has no job id."""
    queue = Queue("quiet", {"connection": url})
    worker = Worker(
        "quiet",
        lambda job, token: asyncio.sleep(0, {"ok": True}),
        {"connection": url, "drainDelay": 1},
    )
    try:
        for i in range(jobs):
            await queue.add("ping", {"n": i}, {"jobId": f"ping-{i}"})
            for _ in range(200):
                if await queue.getJobState(f"ping-{i}") == "completed":
                    break
                await asyncio.sleep(0.02)
        for _ in range(100):
            drained = sum(
                f["event"] == "drained" for _, f in await queue.client.xrange("bull:quiet:events")
            )
            if drained == jobs:
                break
            await asyncio.sleep(0.02)
    finally:
        await worker.close(force=True)
        await queue.close()


def test_a_queue_that_drains_often_reads_with_the_preset(r, redis_server):
    # Far more than 1% of the events lack a job id: the preset does not require one.
    run_async(_trickle(redis_server.url, 20))
    stream = "bull:quiet:events"
    types = Counter(flat[1] for _, flat in raw_entries(r, stream))
    assert types[b"drained"] == 20
    table = ak.read_arrow(r, stream, envelope="bullmq")
    assert table.num_rows == r.xlen(stream)
    assert table.column("aggregate_id").null_count == 20
    found = ak.inspect(r, stream)
    assert found.envelope.event_type == "event"
    assert found.envelope.aggregate_id == {"field": "jobId", "required": False}
    assert found.matches["aggregate_id"] == pytest.approx(1 - 20 / r.xlen(stream))
    assert ak.read_arrow(r, stream, envelope=found.envelope).num_rows == r.xlen(stream)
    # Required, the job id is missing from too many events: one clear error.
    with pytest.raises(ak.EnvelopeMismatch, match=r"aggregate_id \(field `jobId`\)"):
        ak.read_arrow(r, stream, envelope={"preset": "bullmq", "aggregate_id": "jobId"})


def test_inspect_proposes_the_bullmq_layout(r, states):
    found = ak.inspect(r, STREAM)
    assert found.format == "flat"
    envelope = found.envelope
    assert envelope.decoder == "flat"
    assert envelope.payload is None
    assert envelope.event_type == "event"
    assert envelope.aggregate_id in ("jobId", {"field": "jobId", "required": False})
    assert found.matches["event_type"] == 1.0
    # The proposal reads the stream as the preset does.
    assert (
        ak.read_arrow(r, STREAM, envelope=envelope)
        .select(["event_type", "aggregate_id"])
        .equals(ak.read_arrow(r, STREAM, envelope="bullmq").select(["event_type", "aggregate_id"]))
    )


def test_audit_and_drift_read_the_events(r, states):
    findings = ak.audit(r, STREAM, envelope="bullmq")
    # `missing-envelope` for `drained` is the next test's (expected) failure.
    assert set(findings["check"]) - {"missing-envelope"} <= {"no-persistence"}, findings
    drained = {
        entry_id.decode() for entry_id, flat in raw_entries(r, STREAM) if flat[1] == b"drained"
    }
    assert set(findings.loc[findings["check"] == "missing-envelope", "id"]) <= drained
    drift = ak.schema_drift((r, STREAM), envelope=ak.Envelope.of("bullmq"))
    events = drift.timeline.groupby("event_type")["events"].sum().to_dict()
    assert events == _expected_counts(r)
    fields = drift.fields
    completed = set(fields.loc[fields["event_type"] == "completed", "field"])
    assert {"returnvalue", "prev"} <= completed
    assert drift.findings.empty, drift.findings


def test_audit_accepts_what_the_envelope_lets_events_lack(r, states):
    findings = ak.audit(r, STREAM, envelope="bullmq")
    assert "missing-envelope" not in set(findings["check"]), findings


def test_archive_round_trips_the_events(r, states, round_trip):
    archive = round_trip(STREAM, ak.Envelope.of("bullmq"))
    counts = Counter(archive.events_table(stream=STREAM).column("event_type").to_pylist())
    assert dict(counts) == _expected_counts(r)


def test_a_wrong_envelope_names_the_fields_the_stream_has(r, states):
    with pytest.raises(ak.EnvelopeMismatch) as caught:
        ak.read_arrow(r, STREAM)
    message = str(caught.value)
    assert "field `type`" in message
    assert "`event`" in message and "`jobId`" in message
    with pytest.raises(ak.EnvelopeMismatch) as caught:
        ak.read_arrow(r, STREAM, envelope="faststream")
    assert "`__data__`" in str(caught.value)
    assert "`event`" in str(caught.value)


async def _trimmed_between_exports(r, url: str, root: Path) -> tuple[ak.Archive, dict[str, Any]]:
    """Archive a queue's events, run more jobs, let BullMQ trim its events stream (as its
    events cap does, MAXLEN ~) before the next export; return the archive and what was lost
    (counted from the raw stream, before and after the trim)."""
    queue = Queue("reports", {"connection": url})
    worker = Worker(
        "reports", lambda job, token: asyncio.sleep(0, "done"), {"connection": url, "drainDelay": 1}
    )
    stream = "bull:reports:events"
    archive = ak.Archive(root, envelope="bullmq")

    async def work(first: int, n: int) -> None:
        for i in range(first, first + n):
            await queue.add("render", {"page": i}, {"jobId": f"report-{i}"})
        for _ in range(400):
            if (await queue.getJobCounts("completed"))["completed"] == first + n:
                return
            await asyncio.sleep(0.02)
        raise AssertionError("the worker did not finish")

    try:
        await work(0, 30)
        archive.export(r, stream, progress=False)
        horizon = archive.horizon(stream)
        await work(30, 60)
        before = [ak.StreamID.parse(i.decode()) for i, _ in raw_entries(r, stream)]
        await queue.trimEvents(20)
        after = {ak.StreamID.parse(i.decode()) for i, _ in raw_entries(r, stream)}
        lost = [i for i in before if i > horizon and i not in after]
        archive.export(r, stream, progress=False)
    finally:
        await worker.close(force=True)
        await queue.close()
    return archive, {"horizon": horizon, "lost": lost, "next": min(after)}


@pytest.mark.redis_min("7.0")  # entries-added, which counts the lost entries, is Redis 7's
def test_events_trimmed_before_they_were_archived_are_a_loss(r, redis_server, tmp_path):
    archive, seen = run_async(_trimmed_between_exports(r, redis_server.url, tmp_path))
    assert len(seen["lost"]) > 20
    report = archive.verify(r, "bull:reports:events")
    assert not report.ok
    losses = report.findings[report.findings["check"] == "loss-recorded"]
    assert len(losses) == 1
    assert f"{len(seen['lost'])} entries" in losses["detail"].iloc[0]
    # The export that saw it recorded it in the ledger, and a cron job's exit says so.
    ledger = archive.losses("bull:reports:events")
    assert ledger[["count", "seen_by", "acknowledged"]].values.tolist() == [
        [len(seen["lost"]), "export", False]
    ]
    findings = ak.audit(r, "bull:reports:events", envelope="bullmq", archive=archive)
    assert "loss-recorded" in set(findings["check"])


@pytest.mark.redis_min("7.0")
def test_a_loss_between_exports_names_its_range(r, redis_server, tmp_path):
    archive, seen = run_async(_trimmed_between_exports(r, redis_server.url, tmp_path))
    loss = archive.losses("bull:reports:events").iloc[0]
    # Every lost entry lies strictly between the two IDs the ledger names.
    after = ak.StreamID.parse(loss["after"])
    before = ak.StreamID.parse(loss["before"]) if loss["before"] else None
    assert after <= seen["horizon"] < min(seen["lost"])
    assert before is None or max(seen["lost"]) < before <= seen["next"]
    report = archive.verify(r, "bull:reports:events")
    detail = report.findings.set_index("check").loc["loss-recorded", "detail"]
    assert f"({loss['after']}, {loss['before'] or '+'})" in detail


def test_redis_6_2_and_7(any_r):
    run_async(_trickle(url_of(any_r), 5))
    stream = "bull:quiet:events"
    table = ak.read_arrow(any_r, stream, envelope="bullmq")
    counts = Counter(table.column("event_type").to_pylist())
    assert counts == {"added": 5, "waiting": 5, "active": 5, "completed": 5, "drained": 5}
    assert ak.inspect(any_r, stream).envelope.event_type == "event"
