"""Every notebook works on the streams real producers write, not only on the demo's.

Each notebook runs against four layouts written here with XADD, field for field as their
producers write them: a flat event-log export, a BullMQ queue's events stream, a task
broker's JSON messages and a FastStream service's binary frames. The layout's `ENVELOPE`
(and, for the notebooks that take them, its domain parameters) are injected as papermill
does, the answers the notebook computed are read back, and they are compared with what was
written. A run must leave the server as it found it. Pointed at a server without its
stream, or given an envelope that does not fit, a notebook stops with one clear message.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import accumulate
from pathlib import Path
from typing import Any

import nbformat
import pytest
from _notebooks import NOTEBOOKS, Run, declared_parameters, run_notebook
from _wire import faststream_frame

import auditkit as ak

MINUTE = 60_000
BASE_MS = 1_775_001_600_000  # 2026-04-01T00:00:00Z
SKEW_MS = 5 * MINUTE  # the notebooks' default tolerance between the two clocks


def test_every_notebook_starts_with_tagged_parameters():
    assert len(NOTEBOOKS) >= 6
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        first_code = next(c for c in notebook.cells if c.cell_type == "code")
        assert "parameters" in first_code.metadata.get("tags", []), path.name
        assert "REDIS_URL = None" in first_code.source, path.name
        assert "ENVELOPE = None" in first_code.source, path.name
        assert {"REDIS_URL", "STREAM", "ENVELOPE"} <= set(declared_parameters(path)), path.name
        assert all(not c.get("outputs") for c in notebook.cells if c.cell_type == "code"), path.name


# ---- the layouts ----------------------------------------------------------------------


@dataclass(frozen=True)
class Written:
    """One entry as written, and what it means: the answers are computed from these."""

    id: str
    fields: dict[str, str]
    event_type: str
    aggregate_id: str | None
    amount: float | None = None
    occurred_ms: int | None = None

    @property
    def ms(self) -> int:
        return int(self.id.split("-")[0])


@dataclass(frozen=True)
class Layout:
    name: str
    stream: str
    envelope: Any
    entries: list[Written]
    numeric: list[str]  # the numeric columns a load must type as numbers
    parameters: dict[str, Any] = field(default_factory=dict)  # for notebooks declaring them
    setup: Callable[[Any, Layout], None] | None = None  # groups, read models

    def write(self, r: Any) -> None:
        for entry in self.entries:
            r.xadd(self.stream, entry.fields, id=entry.id)
        if self.setup is not None:
            self.setup(r, self)

    def busiest(self, key: Callable[[Written], str | None]) -> str:
        """The value with the most entries; ties go to the first by name."""
        counts = Counter(key(e) for e in self.entries if key(e) is not None)
        top = max(counts.values())
        return min(k for k, n in counts.items() if n == top)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


LATE = 11  # the flat log's entry recorded an hour after it happened


def flat_log() -> Layout:
    """A process-mining export (XES attribute names), one flat entry per activity, amounts
    as decimal text on payments; effective time two minutes before record time, except one
    entry recorded an hour late (which also sends its case's effective time backwards)."""
    cases = {
        "case-1": [("register", None), ("check", None), ("pay", "12.50"), ("ship", None)],
        "case-2": [("register", None), ("check", None), ("reject", None)],
        "case-3": [
            ("register", None),
            ("check", None),
            ("pay", "40.00"),
            ("pay", "7.25"),
            ("ship", None),
            ("close", None),
        ],
        "case-4": [("register", None), ("check", None), ("pay", "99.99")],
        "case-5": [("register", None)],
    }
    order = [(c, steps[i]) for i in range(6) for c, steps in cases.items() if i < len(steps)]
    entries = []
    for n, (case, (activity, amount)) in enumerate(order):
        ms = BASE_MS + n * 10 * MINUTE
        occurred = ms - (60 if n == LATE else 2) * MINUTE
        fields = {
            "case:concept:name": case,
            "concept:name": activity,
            "time:timestamp": _iso(occurred),
        }
        if amount is not None:
            fields["amount"] = amount
        value = float(amount) if amount is not None else None
        entries.append(Written(f"{ms}-0", fields, activity, case, value, occurred))
    return Layout(
        "flat",
        "log:orders",
        {
            "preset": "flat",
            "event_type": "concept:name",
            "aggregate_id": "case:concept:name",
            "occurred_at": "time:timestamp",
        },
        entries,
        numeric=["payload.amount"],
        parameters={"AMOUNT_FIELD": "payload.amount", "READ_MODEL": "totals:{aggregate_id}"},
        setup=_plant_totals,
    )


DRIFTED_CASE = "case-4"


def _plant_totals(r: Any, layout: Layout) -> None:
    """A read model of each case's total, one hash per case; one of them is 1.00 off."""
    for case in sorted({e.aggregate_id for e in layout.entries if e.aggregate_id}):
        total = sum(e.amount or 0.0 for e in layout.entries if e.aggregate_id == case)
        r.hset(f"totals:{case}", mapping={"total": total + (1.0 if case == DRIFTED_CASE else 0.0)})


def bullmq_events() -> Layout:
    """A BullMQ queue's events stream as BullMQ's scripts write it (storeJob, addStandardJob,
    prepareJobForProcessing, retryJob, moveToFinished): fields in their order, the return
    value JSON text, and `drained` with no jobId. Job 2 fails, is retried, and fails for
    good after two attempts."""
    sent, bounced = '{"delivered":true}', '{"delivered":false}'  # as JSON.stringify writes
    refused = "connect ETIMEDOUT 10.0.0.7:587"
    steps = [
        ["event", "added", "jobId", "1", "name", "welcome"],
        ["event", "waiting", "jobId", "1"],
        ["event", "active", "jobId", "1", "prev", "waiting"],
        ["event", "added", "jobId", "2", "name", "welcome"],
        ["event", "waiting", "jobId", "2"],
        ["event", "completed", "jobId", "1", "returnvalue", sent, "prev", "active"],
        ["event", "active", "jobId", "2", "prev", "waiting"],
        ["event", "added", "jobId", "3", "name", "receipt"],
        ["event", "waiting", "jobId", "3"],
        ["event", "waiting", "jobId", "2", "prev", "active"],
        ["event", "active", "jobId", "3", "prev", "waiting"],
        ["event", "completed", "jobId", "3", "returnvalue", sent, "prev", "active"],
        ["event", "active", "jobId", "2", "prev", "waiting"],
        ["event", "failed", "jobId", "2", "failedReason", refused, "prev", "active"],
        ["event", "retries-exhausted", "jobId", "2", "attemptsMade", "2"],
        ["event", "drained"],
        ["event", "added", "jobId", "4", "name", "welcome"],
        ["event", "waiting", "jobId", "4"],
        ["event", "active", "jobId", "4", "prev", "waiting"],
        ["event", "completed", "jobId", "4", "returnvalue", bounced, "prev", "active"],
        ["event", "drained"],
    ]
    entries = []
    for n, step in enumerate(steps):
        fields = dict(zip(step[::2], step[1::2], strict=True))
        ms = BASE_MS + n * 1_500
        entries.append(Written(f"{ms}-0", fields, fields["event"], fields.get("jobId")))
    return Layout("bullmq", "bull:mail:events", "bullmq", entries, numeric=["payload.attemptsMade"])


TASK_NAMES = ("resize", "thumbnail", "upload")
GROUP = "thumbnailers"


def task_messages() -> Layout:
    """A task broker's messages: one JSON field `data` with the task's name and id inside,
    every 20 hours. `priority` is a number until the 18th message, then a word, with no
    version to say so (a schema drift)."""
    entries = []
    for n in range(26):
        data = {
            "task_name": TASK_NAMES[n % 3],
            "task_id": f"t-{n % 5}",
            "runtime": round(0.5 + n * 0.25, 2),
            "priority": n % 3 if n < 18 else ("low", "normal", "high")[n % 3],
        }
        ms = BASE_MS + n * 20 * 60 * MINUTE
        fields = {"data": json.dumps(data)}
        entry = Written(f"{ms}-0", fields, data["task_name"], data["task_id"], data["runtime"])
        entries.append(entry)
    return Layout(
        "tasks",
        "tasks:media",
        {
            "event_type": "payload.task_name",
            "aggregate_id": "payload.task_id",
            "payload": "data",
            "schema_version": None,
            "occurred_at": None,
        },
        entries,
        numeric=["payload.runtime"],
        parameters={"AMOUNT_FIELD": "payload.runtime"},
        setup=_plant_group,
    )


def _plant_group(r: Any, layout: Layout) -> None:
    """Group `thumbnailers`: worker-1 took 8 messages and acknowledged 5; the 7th failed
    and was claimed 6 more times by worker-2 (7 deliveries: a poison message)."""
    r.xgroup_create(layout.stream, GROUP, id="0")
    r.xreadgroup(GROUP, "worker-1", {layout.stream: ">"}, count=8)
    r.xack(layout.stream, GROUP, *[e.id for e in layout.entries[:5]])
    failing = layout.entries[6].id
    for _ in range(6):
        r.xclaim(layout.stream, GROUP, "worker-2", min_idle_time=0, message_ids=[failing])


ORDER_KINDS = ("OrderPlaced", "OrderPaid", "OrderShipped")


def faststream_orders() -> Layout:
    """A FastStream service's messages: one binary frame per entry in `__data__` (headers,
    then a JSON body holding the kind, the order and its amount), every 7 hours."""
    entries = []
    for n in range(21):
        kind = ORDER_KINDS[n % 3]
        order = f"o-{n // 3 % 4}"
        amount = None if kind == "OrderShipped" else round(10 + n * 1.5, 2)
        body = {"kind": kind, "order_id": order, **({"amount": amount} if amount else {})}
        headers = {"correlation_id": f"c-{n}", "content-type": "application/json"}
        ms = BASE_MS + n * 7 * 60 * MINUTE
        frame = faststream_frame(headers, json.dumps(body).encode())
        entries.append(Written(f"{ms}-0", {"__data__": frame}, kind, order, amount))
    return Layout(
        "faststream",
        "orders:faststream",
        {"preset": "faststream", "event_type": "payload.kind", "aggregate_id": "payload.order_id"},
        entries,
        numeric=["payload.amount"],
        parameters={"AMOUNT_FIELD": "payload.amount"},
    )


LAYOUTS = {
    layout.name: layout
    for layout in (flat_log(), bullmq_events(), task_messages(), faststream_orders())
}


# ---- what each notebook must answer ----------------------------------------------------

RESULTS = {
    "00_quickstart": {
        "per_type": "per_type.to_dict()",
        "rows": "len(events)",
        "numeric": "numeric",
    },
    "01_audit_trail": {
        "aggregate": "AGGREGATE",
        "trail": "trail['id'].tolist()",
        "values": "None if history is None else history[VALUE].tolist()",
        "integrity": "integrity[['check', 'id']].values.tolist()",
        "drift": "drift['aggregate_id'].tolist()",
    },
    "02_time_travel": {
        "before": "before.set_index('aggregate_id')[VALUE].to_dict()",
        "after": "after.set_index('aggregate_id')[VALUE].to_dict()",
        "aggregate": "AGGREGATE",
        "history": "history['id'].tolist()",
        "late": "None if late is None else sorted(late.index)",
    },
    "03_schema_drift": {
        "per_type": "per_type.to_dict()",
        "event_type": "event_type",
        "findings": "report.findings[['check', 'detail']].values.tolist()",
    },
    "04_archive_and_query": {
        "per_type": "per_type.to_dict('records')",
        "restored": "restored",
        "identical": "identical",
        "total": "total",
    },
    "05_consumer_groups": {
        "recent": "len(recent)",
        "groups": "groups['group'].tolist()",
        "pending": "pending[['id', 'consumer', 'deliveries', 'event_type']].values.tolist()",
        "poison": "profile.to_dict()",
    },
}


def _types(layout: Layout) -> Counter[str]:
    return Counter(e.event_type for e in layout.entries)


def _values(layout: Layout, entries: list[Written]) -> dict[str, float]:
    """Each aggregate's projected value over these entries: its total when the layout
    names an amount, else its event count."""
    totals: dict[str, float] = {}
    for e in entries:
        if e.aggregate_id is None:
            continue
        step = (e.amount or 0.0) if "AMOUNT_FIELD" in layout.parameters else 1
        totals[e.aggregate_id] = totals.get(e.aggregate_id, 0) + step
    return totals


def _cut(layout: Layout, share: float) -> int:
    first, last = layout.entries[0].ms, layout.entries[-1].ms
    return first + (last - first) * share


def _integrity(layout: Layout) -> list[list[str]]:
    """The clock findings these entries call for: record and effective time apart by more
    than the tolerance, and effective time going back within an aggregate."""
    skewed = [
        ["clock-skew", e.id]
        for e in layout.entries
        if e.occurred_ms is not None and abs(e.ms - e.occurred_ms) > SKEW_MS
    ]
    previous: dict[str, int] = {}
    regressed = []
    for e in layout.entries:
        if e.occurred_ms is None or e.aggregate_id is None:
            continue
        if e.aggregate_id in previous and e.occurred_ms < previous[e.aggregate_id]:
            regressed.append(["clock-regression", e.id])
        previous[e.aggregate_id] = e.occurred_ms
    return skewed + regressed


def check_quickstart(layout: Layout, run: Run) -> None:
    assert run.results["per_type"] == _types(layout)
    assert run.results["rows"] == len(layout.entries)
    assert run.results["numeric"] == layout.numeric


def check_audit_trail(layout: Layout, run: Run) -> None:
    busiest = layout.busiest(lambda e: e.aggregate_id)
    trail = [e for e in layout.entries if e.aggregate_id == busiest]
    assert run.results["aggregate"] == busiest
    assert run.results["trail"] == [e.id for e in trail]
    if "AMOUNT_FIELD" in layout.parameters:
        running = list(accumulate(e.amount or 0.0 for e in trail))
        assert run.results["values"] == pytest.approx(running)
    else:
        assert run.results["values"] is None
        assert "skipped: set AMOUNT_FIELD" in run.output()
    assert sorted(run.results["integrity"]) == sorted(_integrity(layout))
    if "READ_MODEL" in layout.parameters:
        assert run.results["drift"] == [DRIFTED_CASE]
    else:
        assert run.results["drift"] == []
        assert "skipped: set READ_MODEL" in run.output()


def check_time_travel(layout: Layout, run: Run) -> None:
    before, after = _cut(layout, 1 / 3), _cut(layout, 2 / 3)
    recorded = [e for e in layout.entries if e.ms <= after]
    expected_after = _values(layout, recorded)
    assert run.results["before"] == pytest.approx(
        _values(layout, [e for e in layout.entries if e.ms <= before])
    )
    assert run.results["after"] == pytest.approx(expected_after)
    busiest = layout.busiest(lambda e: e.aggregate_id)
    assert run.results["aggregate"] == busiest
    assert run.results["history"] == [e.id for e in layout.entries if e.aggregate_id == busiest]
    if all(e.occurred_ms is not None for e in layout.entries):
        happened = _values(layout, [e for e in layout.entries if e.occurred_ms <= after])
        late = sorted(
            a
            for a in set(expected_after) | set(happened)
            if expected_after.get(a, 0) != pytest.approx(happened.get(a, 0))
        )
        assert late, "the layout must separate the clocks for this check to mean anything"
        assert run.results["late"] == late
    else:
        assert run.results["late"] is None
        assert "carry no effective time" in run.output()


def check_schema_drift(layout: Layout, run: Run) -> None:
    types = _types(layout)
    assert run.results["per_type"] == types
    assert run.results["event_type"] == layout.busiest(lambda e: e.event_type)
    drifted = {
        re.search(r"`([^`]+)`", detail).group(1)
        for check, detail in run.results["findings"]
        if check == "drift-without-version-bump" and "`priority`" in detail
    }
    if layout.name == "tasks":
        assert drifted == set(TASK_NAMES), run.results["findings"]
    else:
        assert not drifted and not any(
            check == "drift-without-version-bump" for check, _ in run.results["findings"]
        ), run.results["findings"]


def check_archive_and_query(layout: Layout, run: Run) -> None:
    types = _types(layout)
    rows = run.results["per_type"]
    assert {row["event_type"]: row["events"] for row in rows} == types
    assert [row["events"] for row in rows] == sorted(types.values(), reverse=True)
    if "AMOUNT_FIELD" in layout.parameters:
        # SQL's sum: null (NaN in the frame) for a type none of whose events has an amount.
        amounts = {
            t: [e.amount for e in layout.entries if e.event_type == t and e.amount] for t in types
        }
        expected = {t: round(sum(a), 2) if a else None for t, a in amounts.items()}
        summed = {row["event_type"]: row["amount"] for row in rows}
        assert {t: None if v != v else v for t, v in summed.items()} == pytest.approx(expected)
    assert run.results["restored"] == len(layout.entries)
    assert run.results["identical"] is True
    assert run.results["total"] == len(layout.entries)


def check_consumer_groups(layout: Layout, run: Run) -> None:
    assert run.results["recent"] == len(layout.entries)
    if layout.setup is _plant_group:
        pending = layout.entries[5:8]
        poison = layout.entries[6]
        assert run.results["groups"] == [GROUP]
        assert run.results["pending"] == [
            [e.id, "worker-2" if e is poison else "worker-1", 7 if e is poison else 1, e.event_type]
            for e in pending
        ]
        assert run.results["poison"] == {poison.event_type: 1}
    else:
        assert run.results["groups"] == []
        assert run.results["pending"] == []
        assert run.results["poison"] == {}
        assert "has no consumer groups" in run.output()


CHECKS = {
    "00_quickstart": check_quickstart,
    "01_audit_trail": check_audit_trail,
    "02_time_travel": check_time_travel,
    "03_schema_drift": check_schema_drift,
    "04_archive_and_query": check_archive_and_query,
    "05_consumer_groups": check_consumer_groups,
}


# ---- the tests ---------------------------------------------------------------------------


def _contents(r: Any) -> dict[bytes, bytes]:
    """Every key's serialised value: the server's whole data set, to compare before/after."""
    return {key: r.dump(key) for key in r.scan_iter()}


def _parameters(path: Path, url: str, layout: Layout, envelope: Any) -> dict[str, Any]:
    declared = declared_parameters(path)
    domain = {k: v for k, v in layout.parameters.items() if k in declared}
    return {"REDIS_URL": url, "STREAM": layout.stream, "ENVELOPE": envelope, **domain}


@pytest.mark.parametrize("layout", LAYOUTS.values(), ids=LAYOUTS.keys())
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
@pytest.mark.heavy
def test_every_notebook_answers_on_every_layout(path, layout, redis_server, r):
    layout.write(r)
    before = _contents(r)
    run = run_notebook(
        path,
        _parameters(path, redis_server.url, layout, layout.envelope),
        results=RESULTS[path.stem],
    )
    assert run.error is None, run.error
    CHECKS[path.stem](layout, run)
    assert _contents(r) == before, "the notebook changed the server's data"


QUICKSTART = next(p for p in NOTEBOOKS if p.stem == "00_quickstart")


def test_an_envelope_file_reads_as_its_dict(redis_server, r, tmp_path):
    layout = LAYOUTS["tasks"]
    layout.write(r)
    envelope = tmp_path / "tasks.toml"
    envelope.write_text(ak.Envelope.of(layout.envelope).to_toml())
    run = run_notebook(
        QUICKSTART,
        _parameters(QUICKSTART, redis_server.url, layout, str(envelope)),
        results=RESULTS[QUICKSTART.stem],
    )
    assert run.error is None, run.error
    check_quickstart(layout, run)


def test_without_envelope_the_project_config_names_it(redis_server, r, tmp_path):
    layout = LAYOUTS["bullmq"]
    layout.write(r)
    (tmp_path / "auditkit.toml").write_text('[envelopes]\n"bull:*:events" = "bullmq"\n')
    run = run_notebook(
        QUICKSTART,
        {"REDIS_URL": redis_server.url, "STREAM": layout.stream},
        results=RESULTS[QUICKSTART.stem],
        cwd=tmp_path,
    )
    assert run.error is None, run.error
    check_quickstart(layout, run)


@pytest.mark.heavy
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_server_without_the_stream_gets_a_clear_message(path, redis_server, r):
    r.xadd("something:else", {"a": "1"})
    run = run_notebook(path, {"REDIS_URL": redis_server.url})
    assert run.error is not None
    assert "does not exist on this server: set STREAM to one of ['something:else']" in str(
        run.error
    )


# The calls that read a stream's entries with the envelope (and so judge whether it fits).
_READS = re.compile(
    r"\b(read_pandas|read_arrow|iter_batches|states_at|state_at|history|diff|schema_drift"
    r"|export|check_integrity|pending_entries|check_groups)\("
)


@pytest.mark.heavy
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_wrong_envelope_stops_at_the_first_read_with_the_mismatch(path, redis_server, r):
    layout = LAYOUTS["tasks"]
    layout.write(r)
    run = run_notebook(path, _parameters(path, redis_server.url, layout, "bullmq"))
    assert run.error is not None
    index, cell = run.failed_cell()
    cells = run.notebook.cells
    first_read = next(
        i for i, c in enumerate(cells) if c.cell_type == "code" and _READS.search(c.source)
    )
    assert index == first_read, cell.source
    (error,) = [o for o in cell.outputs if o["output_type"] == "error"]
    assert error["ename"] == "EnvelopeMismatch"
    assert error["evalue"].startswith(f"Stream `{layout.stream}` does not match the envelope")
    assert f"ak.inspect(client, '{layout.stream}')" in error["evalue"]
