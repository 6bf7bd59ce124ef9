"""Audit: each scenario is built on a real server, then must be found (and nothing else)."""

import json
import time
from datetime import timedelta

import pandas as pd
import pytest

import auditkit as ak

BASE_MS = 1_772_323_200_000


def _events(r, stream="orders", n=20, producer="shop", version="2"):
    for i in range(n):
        r.xadd(
            stream,
            {
                "type": "Withdrawn" if i % 4 == 3 else "Deposited",
                "aggregate_id": f"a-{i % 3}",
                "schema_version": version,
                "producer": producer,
                "occurred_at": f"2026-03-01T00:00:{i:02d}Z",
                "payload": json.dumps({"amount": 5}),
            },
            id=f"{BASE_MS + i * 1000}-0",
        )


def _checks(findings):
    return sorted(set(findings["check"]))


def test_a_crashed_consumer_leaves_stale_pending_entries(any_r):
    _events(any_r)
    any_r.xgroup_create("orders", "billing", id="0")
    any_r.xreadgroup("billing", "worker-1", {"orders": ">"}, count=3)  # then the worker dies
    any_r.xreadgroup("billing", "worker-2", {"orders": ">"})
    any_r.xack("orders", "billing", *[e[0] for e in any_r.xrange("orders")][3:])
    time.sleep(0.15)
    findings = ak.check_groups(
        any_r, "orders", stale_after=timedelta(milliseconds=100), idle_after=timedelta(hours=1)
    )
    stale = findings[findings["check"] == "pending-stale"]
    assert len(stale) == 3 and set(stale["severity"]) == {"warning"}
    assert "consumer `worker-1`" in stale["detail"].iloc[0]
    assert "a `Deposited` v2 from `shop` of `a-0`" in stale["detail"].iloc[0]
    assert _checks(findings) == ["pending-stale"]


def test_a_poison_message_is_named_with_its_event(any_r):
    _events(any_r, n=4)
    any_r.xgroup_create("orders", "billing", id="0")
    any_r.xreadgroup("billing", "worker-1", {"orders": ">"})
    any_r.xack("orders", "billing", *[e[0] for e in any_r.xrange("orders")][:3])
    poison = f"{BASE_MS + 3000}-0"
    for attempt in range(6):  # every retry claims it again: the delivery count climbs
        any_r.xclaim(
            "orders", "billing", f"worker-{attempt % 2}", min_idle_time=0, message_ids=[poison]
        )
    findings = ak.check_groups(any_r, "orders", poison_after=5)
    assert _checks(findings) == ["poison-message"]
    row = findings.iloc[0]
    assert row["severity"] == "error" and row["id"] == poison
    assert "delivered 7 times" in row["detail"] and "a `Withdrawn` v2 from `shop`" in row["detail"]
    forensics = ak.pending_entries(any_r, "orders")
    assert forensics[["event_type", "schema_version", "producer"]].iloc[0].tolist() == [
        "Withdrawn",
        2,
        "shop",
    ]


def test_a_trimmed_pending_entry(any_r):
    _events(any_r, n=5)
    any_r.xgroup_create("orders", "billing", id="0")
    any_r.xreadgroup("billing", "worker-1", {"orders": ">"}, count=2)
    any_r.xack("orders", "billing", f"{BASE_MS + 1000}-0")
    any_r.xadd("orders", {"type": "Deposited"}, id=f"{BASE_MS + 10_000}-0")
    any_r.xtrim("orders", minid=f"{BASE_MS + 2000}-0", approximate=False)  # takes the pending one
    any_r.xreadgroup("billing", "worker-1", {"orders": ">"})
    any_r.xack("orders", "billing", *[e[0] for e in any_r.xrange("orders")])
    findings = ak.check_groups(any_r, "orders")
    assert _checks(findings) == ["pending-trimmed"]
    assert findings.iloc[0]["id"] == f"{BASE_MS}-0" and findings.iloc[0]["severity"] == "error"
    assert not ak.pending_entries(any_r, "orders")["exists"].iloc[0]


def test_lag_of_a_group_created_at_an_arbitrary_id(any_r):
    _events(any_r, n=20)
    any_r.xgroup_create("orders", "late", id=f"{BASE_MS + 4000}-0")
    groups = ak.consumer_groups(any_r, "orders")
    assert groups["lag"].tolist() == [15]
    assert groups["lag_source"].tolist() == ["computed"]  # null in Redis 7, absent in 6.2
    findings = ak.check_groups(any_r, "orders")
    assert _checks(findings) == ["group-lag"]
    assert findings.iloc[0]["severity"] == "info"
    assert "15 entries not yet delivered" in findings.iloc[0]["detail"]
    assert "Redis reports no lag" in findings.iloc[0]["detail"]
    assert ak.check_groups(any_r, "orders", lag_warning=10).iloc[0]["severity"] == "warning"


@pytest.mark.redis_min("7.0")
def test_redis7_lag_is_taken_as_reported(r):
    _events(r, n=10)
    r.xgroup_create("orders", "fresh", id="0")
    groups = ak.consumer_groups(r, "orders")
    assert groups[["lag", "lag_source"]].iloc[0].tolist() == [10, "redis"]


def test_an_idle_consumer_holding_entries(any_r):
    _events(any_r, n=3)
    any_r.xgroup_create("orders", "billing", id="0")
    any_r.xreadgroup("billing", "worker-1", {"orders": ">"}, count=1)
    any_r.xreadgroup("billing", "worker-2", {"orders": ">"})
    any_r.xack("orders", "billing", f"{BASE_MS + 1000}-0", f"{BASE_MS + 2000}-0")
    time.sleep(0.15)
    findings = ak.check_groups(
        any_r, "orders", idle_after=timedelta(milliseconds=100), stale_after=timedelta(hours=1)
    )
    idle = findings.set_index("detail")["severity"].to_dict()
    assert idle == {
        "group `billing`: consumer `worker-1` idle for 0 s, holding 1 pending entries": "warning",
        "group `billing`: consumer `worker-2` idle for 0 s, holding nothing": "info",
    }


def test_durability_of_the_test_server(r):
    # The harness runs redis-server with appendonly no and save "": nothing survives a restart.
    findings = ak.check_durability(r)
    assert _checks(findings) == ["no-persistence"]
    assert findings.iloc[0]["severity"] == "error"


def test_aof_off_with_snapshots(start_redis):
    server = start_redis({"appendonly": "no", "save": "3600 1"})
    findings = ak.check_durability(server.client())
    assert _checks(findings) == ["aof-off"] and findings.iloc[0]["severity"] == "warning"


@pytest.mark.parametrize(("maxmemory", "severity"), [("100mb", "error"), ("0", "warning")])
def test_an_evicting_policy(start_redis, maxmemory, severity):
    server = start_redis(
        {"appendonly": "yes", "maxmemory": maxmemory, "maxmemory-policy": "allkeys-lru"}
    )
    findings = ak.check_durability(server.client())
    assert _checks(findings) == ["evicting-policy"]
    assert findings.iloc[0]["severity"] == severity and "allkeys-lru" in findings.iloc[0]["detail"]


def test_a_read_only_user_gets_unknown_not_a_failure(start_redis):
    server = start_redis({"appendonly": "yes"})
    server.client().acl_setuser(
        "auditor",
        enabled=True,
        passwords=["+pw"],
        keys=["*"],
        commands=["+@read", "+info", "+ping", "+hello", "+auth", "-config"],
    )
    auditor = ak.connect(f"redis://auditor:pw@127.0.0.1:{server.port}/0")
    findings = ak.check_durability(auditor)
    assert _checks(findings) == ["durability-unknown"]
    assert findings.iloc[0]["severity"] == "info" and "+config|get" in findings.iloc[0]["detail"]


@pytest.mark.redis_min("7.0")
def test_trimmed_streams_not_archived(start_redis, tmp_path):
    server = start_redis({"appendonly": "yes"})
    client = server.client()
    _events(client, n=10)
    client.xtrim("orders", maxlen=4, approximate=False)
    findings = ak.check_durability(client, streams=["orders"])
    assert _checks(findings) == ["trimmed-not-archived"]
    assert "6 entries were removed" in findings.iloc[0]["detail"]


def _accounts(r):
    def deposited(state, event):
        return {**state, "balance": state["balance"] + event["payload"]["amount"]}

    def withdrawn(state, event):
        return {**state, "balance": state["balance"] - event["payload"]["amount"]}

    return ak.Projection({"balance": 0}, {"Deposited": deposited, "Withdrawn": withdrawn})


def test_a_tampered_read_model(r):
    _events(r)
    projection = _accounts(r)
    for row in projection.states_at((r, "orders")).to_dict("records"):
        r.hset(f"balance:{row['aggregate_id']}", mapping={"balance": row["balance"]})
    clean = ak.check_read_model(projection, (r, "orders"), (r, "balance:{aggregate_id}"))
    assert clean.empty
    r.hset("balance:a-1", "balance", 1_000_000)
    findings = ak.check_read_model(projection, (r, "orders"), (r, "balance:{aggregate_id}"))
    assert _checks(findings) == ["read-model-drift"]
    row = findings.iloc[0]
    assert row["aggregate_id"] == "a-1" and row["severity"] == "error"
    assert "the read model says '1000000'" in row["detail"]
    frame = pd.DataFrame({"balance": [25, 0]}, index=["a-0", "zz"])
    against_frame = ak.check_read_model(projection, (r, "orders"), frame)
    assert _checks(against_frame) == ["read-model-drift", "read-model-extra", "read-model-missing"]


def test_integrity_findings(r):
    rows = [
        ("Opened", "acct-1", 1, "k1", "2026-03-01T00:00:00Z"),
        ("Deposited", "acct-1", 2, "k2", "2026-03-01T00:00:01Z"),
        ("Deposited", "acct-1", 4, "k3", "2026-03-01T00:00:02Z"),  # version 3 missing
        ("Deposited", "acct-1", 4, "k3", "2026-03-01T00:00:03Z"),  # version 4 again, key again
        ("Closed", "acct-1", 5, "k5", "2026-03-01T00:00:04Z"),
        ("Deposited", "acct-1", 6, "k6", "2026-03-01T00:00:05Z"),  # after Closed
        (
            "Teleported",
            "acct-2",
            1,
            "k7",
            "2026-02-27T00:00:00Z",
        ),  # unknown type, recorded 3 days late
        ("Deposited", "acct-2", 2, "k8", "2026-02-26T00:00:00Z"),  # occurred_at goes back
    ]
    for i, (kind, account, version, key, when) in enumerate(rows):
        r.xadd(
            "bank",
            {
                "type": kind,
                "aggregate_id": account,
                "occurred_at": when,
                "payload": json.dumps({"version": version, "request_id": key}),
            },
            id=f"{BASE_MS + i * 1000}-0",
        )
    r.xadd("bank", {"payload": "{}"}, id=f"{BASE_MS + 9000}-0")  # no type, no aggregate
    # One entry in nine without a type is more than the envelope's 1% allowance: a read
    # says so; an auditor who wants each entry named lowers it.
    with pytest.raises(ak.EnvelopeMismatch, match=r"event_type \(field `type`\) is in 8 of 9"):
        ak.read_arrow(r, "bank")
    findings = ak.check_integrity(
        ak.read_arrow(r, "bank", envelope={"min_match": 0}),
        version_field="payload.version",
        idempotency_field="payload.request_id",
        terminal_types=["Closed"],
        known_types=["Opened", "Deposited", "Closed"],
        skew=timedelta(hours=1),
    )
    by_check = findings.groupby("check")["id"].apply(list).to_dict()
    assert by_check == {
        "version-gap": [f"{BASE_MS + 2000}-0"],
        "version-duplicate": [f"{BASE_MS + 3000}-0"],
        "duplicate-idempotency-key": [f"{BASE_MS + 3000}-0"],
        "event-after-terminal": [f"{BASE_MS + 5000}-0"],
        "unknown-event-type": [f"{BASE_MS + 6000}-0"],
        "clock-skew": [f"{BASE_MS + 6000}-0", f"{BASE_MS + 7000}-0"],
        "clock-regression": [f"{BASE_MS + 7000}-0"],
        "missing-envelope": [f"{BASE_MS + 9000}-0", f"{BASE_MS + 9000}-0"],
    }


def test_a_healthy_setup_gives_no_finding(start_redis):
    server = start_redis(
        {"appendonly": "yes", "appendfsync": "everysec", "maxmemory-policy": "noeviction"}
    )
    client = server.client()
    _events(client)
    client.xgroup_create("orders", "billing", id="0")
    read = client.xreadgroup("billing", "worker-1", {"orders": ">"})
    client.xack("orders", "billing", *[entry_id for entry_id, _ in read[0][1]])
    projection = _accounts(client)
    for row in projection.states_at((client, "orders")).to_dict("records"):
        client.hset(f"balance:{row['aggregate_id']}", mapping={"balance": row["balance"]})
    findings = ak.audit(
        client,
        "orders",
        projection=projection,
        read_model=(client, "balance:{aggregate_id}"),
        version_field=None,
        terminal_types=["Closed"],
    )
    assert findings.empty, findings


def test_audit_puts_everything_in_one_table_worst_first(r):
    _events(r, n=8)
    r.xgroup_create("orders", "billing", id="0")
    r.xreadgroup("billing", "w", {"orders": ">"}, count=1)
    for _ in range(6):
        r.xclaim("orders", "billing", "w", min_idle_time=0, message_ids=[f"{BASE_MS}-0"])
    findings = ak.audit(r, "orders")
    assert list(findings.columns) == ["check", "severity", "stream", "id", "aggregate_id", "detail"]
    assert findings["severity"].tolist()[:2] == ["error", "error"]
    assert {"poison-message", "no-persistence"} <= set(findings["check"])
    assert set(findings["stream"].dropna()) == {"orders"}


def test_durability_and_audit_on_redis62(r62):
    _events(r62, n=6)
    assert _checks(ak.check_durability(r62, streams=["orders"])) == ["no-persistence"]
    assert set(ak.audit(r62, "orders")["check"]) == {"no-persistence"}


def test_a_stream_without_aggregates_is_one_note_not_an_error_per_event(r):
    for i in range(120):
        r.xadd("log", {"type": "Ping", "payload": json.dumps({"n": i})})
    findings = ak.check_integrity(ak.read_arrow(r, "log"))
    missing = findings[findings["check"] == "missing-envelope"]
    assert len(missing) == 1 and missing["severity"].tolist() == ["info"]
    assert (
        "no event has an aggregate_id (the envelope reads it from field"
        in missing["detail"].iloc[0]
    )


def test_entries_the_envelope_lets_lack_a_concept_are_no_finding(r):
    # A BullMQ events stream: `drained` is a queue event, without a job.
    for i in range(150):
        r.xadd("bull:q:events", {"event": "completed", "jobId": str(i), "returnvalue": "1"})
    r.xadd("bull:q:events", {"event": "drained"})
    findings = ak.audit(r, "bull:q:events", envelope="bullmq")
    assert "missing-envelope" not in set(findings["check"])
    # Under an envelope that requires a job id, the one entry in 151 without it (within
    # the 1% allowance) is named.
    strict = {"preset": "bullmq", "aggregate_id": "jobId"}
    findings = ak.audit(r, "bull:q:events", envelope=strict)
    missing = findings[findings["check"] == "missing-envelope"]
    assert len(missing) == 1 and missing["severity"].iloc[0] == "error"


def test_pending_entries_under_a_wrong_envelope_say_so(r):
    r.xadd("tasks", {"data": json.dumps({"task_name": "resize", "task_id": "t-1"})})
    r.xgroup_create("tasks", "g", id="0")
    r.xreadgroup("g", "c", {"tasks": ">"})
    with pytest.raises(ak.EnvelopeMismatch, match="`data`"):
        ak.pending_entries(r, "tasks", envelope="bullmq")
    right = {
        "event_type": "payload.task_name",
        "aggregate_id": "payload.task_id",
        "payload": "data",
    }
    pending = ak.pending_entries(r, "tasks", envelope=right)
    assert pending[["event_type", "aggregate_id"]].iloc[0].tolist() == ["resize", "t-1"]


def test_an_archive_that_cannot_join_the_audit_is_refused(r, tmp_path):
    # A flat-field stream (every field its own, no JSON payload), as export jobs write them.
    for n in range(6):
        r.xadd("shipments", {"kind": "Shipped", "parcel": f"p-{n}", "grams": str(100 * n)})
    r.xadd("returns", {"kind": "Returned", "parcel": "p-1", "grams": "100"})
    flat = {"preset": "flat", "event_type": "kind", "aggregate_id": "parcel"}
    missing = tmp_path / "not-there"
    with pytest.raises(ak.ArchiveError, match=r"holds no stream .* audit of `shipments`"):
        ak.audit(r, "shipments", envelope=flat, archive=ak.Archive(missing))
    archive = ak.Archive(tmp_path / "archive", envelope=flat)
    archive.export(r, "returns", progress=False)
    with pytest.raises(ak.ArchiveError, match=r"none of the streams audited .* holds `returns`"):
        ak.audit(r, "shipments", envelope=flat, archive=archive)
    # Without the archive checks, the archive plays no part and is not asked about.
    groups_only = ak.audit(r, "shipments", envelope=flat, archive=archive, select="groups")
    assert groups_only.empty
    # A list with one archived stream: that one is verified, the other audited live alone.
    both = ak.audit(r, ["shipments", "returns"], envelope=flat, archive=archive)
    assert not both["check"].str.startswith("archive").any(), both
    assert set(both["check"]) <= {"no-persistence"}


def test_an_archive_whose_manifest_was_lost_is_verified_not_skipped(r, tmp_path):
    for n in range(5):
        r.xadd("shipments", {"kind": "Shipped", "parcel": f"p-{n}"})
    flat = {"preset": "flat", "event_type": "kind", "aggregate_id": "parcel"}
    archive = ak.Archive(tmp_path / "archive", envelope=flat)
    archive.export(r, "shipments", progress=False)
    for manifest in (tmp_path / "archive" / "_manifest").rglob("*.jsonl"):
        manifest.unlink()  # a cleanup job took the manifest, the data files stay
    findings = ak.audit(r, "shipments", envelope=flat, archive=ak.Archive(tmp_path / "archive"))
    lost = findings[findings["check"] == "manifest-missing"]
    assert len(lost) == 1 and lost.iloc[0]["stream"] == "shipments", findings
    assert lost.iloc[0]["severity"] in ("error", "critical")


def test_a_stream_the_archive_holds_is_audited_over_its_whole_history(r, tmp_path):
    # Fines as flat fields: N1 is closed, archived and trimmed; then a payment arrives.
    flat = {"preset": "flat", "event_type": "activity", "aggregate_id": "case"}
    for i, activity in enumerate(["Create Fine", "Send Fine", "Close"]):
        r.xadd("fines", {"case": "N1", "activity": activity}, id=f"{1_772_323_200_000 + i}-0")
    archive = ak.Archive(tmp_path / "arc", envelope=flat, pseudonymize=["case"], key="k" * 32)
    archive.export(r, "fines")
    r.xtrim("fines", maxlen=0, approximate=False)
    r.xadd("fines", {"case": "N1", "activity": "Payment"}, id=f"{1_772_323_200_000 + 9}-0")
    live_only = ak.audit(r, "fines", envelope=flat, terminal_types=["Close"])
    assert "event-after-terminal" not in set(live_only["check"])  # the live tail alone
    found = ak.audit(r, "fines", envelope=flat, terminal_types=["Close"], archive=archive)
    late = found[found["check"] == "event-after-terminal"]
    assert len(late) == 1 and late.iloc[0]["id"] == f"{1_772_323_200_000 + 9}-0", found
    # The live tail is pseudonymised as the archive is: one aggregate, not two.
    history = archive.events_table(stream="fines", live=r)
    assert history.num_rows == 4 and len(set(history.column("aggregate_id").to_pylist())) == 1
    assert "N1" not in history.column("aggregate_id").to_pylist()


def test_a_poison_message_stays_one_when_its_entry_is_trimmed(any_r):
    _events(any_r, n=5)
    any_r.xgroup_create("orders", "billing", id="0")
    any_r.xreadgroup("billing", "worker-1", {"orders": ">"}, count=1)
    any_r.xclaim("orders", "billing", "worker-2", 0, [f"{BASE_MS}-0"], retrycount=6)
    any_r.xadd("orders", {"type": "Deposited"}, id=f"{BASE_MS + 10_000}-0")
    any_r.xtrim("orders", minid=f"{BASE_MS + 2000}-0", approximate=False)  # takes it
    found = ak.check_groups(any_r, "orders")
    rows = {c: found[found["check"] == c] for c in ("poison-message", "pending-trimmed")}
    assert len(rows["poison-message"]) == 1 and len(rows["pending-trimmed"]) == 1, found
    assert "delivered 6 times" in rows["poison-message"].iloc[0]["detail"]
    assert "its entry is gone" in rows["poison-message"].iloc[0]["detail"]
    assert "delivered 6 times" in rows["pending-trimmed"].iloc[0]["detail"]
    selected = ak.audit(any_r, "orders", select="poison")
    assert selected["check"].tolist() == ["poison-message"]
