"""The archive: export, verify, trim, restore, duckdb, against real servers and real files.

What depends on where the archive is stored (export to restore end to end, tampering caught,
one exporter at a time, a killed exporter) runs on every storage in test_storage.py; the
local folder's own means (hidden temporary files, flock) are tested here.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

import auditkit as ak

BASE_MS = 1_772_323_200_000  # 2026-03-01T00:00:00Z


def _xadd(r, key, pairs, entry_id="*"):
    return r.execute_command("XADD", key, entry_id, *[p for pair in pairs for p in pair])


def _fill(r, key="orders", n=3_000, start_ms=BASE_MS, per_ms=1):
    """n entries with varied shapes: differing field sets, binary values, duplicate names."""
    pipe = r.pipeline(transaction=False)
    for i in range(n):
        pairs = [
            (b"type", [b"Placed", b"Paid", b"Shipped"][i % 3]),
            (b"aggregate_id", b"order-%d" % (i % 50)),
            (b"payload", json.dumps({"n": i, "total": i * 1.5}).encode()),
        ]
        if i % 7 == 0:
            pairs.append((b"blob", bytes([i % 256, 255, 0])))
        if i % 11 == 0:
            pairs.append((b"note", b"first"))
            pairs.append((b"note", b"second"))  # XADD keeps a field name twice
        ms, seq = start_ms + (i // per_ms) * 3_600_000 // 60, i % per_ms
        pipe.execute_command("XADD", key, f"{ms}-{seq}", *[p for pair in pairs for p in pair])
    pipe.execute()


def _raw(r, key):
    return [(entry_id, flat) for page in _pages(r, key) for entry_id, flat in page]


def _pages(r, key):
    from auditkit._redis.pages import iter_pages

    return iter_pages(r, key)


def _count(con, sql="select count(*) from events"):
    return con.execute(sql).fetchone()[0]


def _contents(arc, stream):
    """What a stream's files hold, whichever writer wrote them: range -> SHA-256."""
    return {(e.first_id, e.last_id): e.sha256 for e in arc.entries(stream)}


def test_files_are_named_by_their_range_and_identical_on_rerun(r, tmp_path):
    _fill(r, n=1_000)
    one, two = (
        ak.Archive(tmp_path / "one", rows_per_file=300),
        ak.Archive(tmp_path / "two", rows_per_file=300),
    )
    one.export(r, "orders")
    two.export(r, "orders")
    assert _contents(one, "orders") == _contents(two, "orders")
    first = one.entries("orders")[0]
    assert first.file.startswith("stream=orders/month=2026-03/")
    # The range, then the epoch of the writer that wrote it (fencing: see layout.py).
    assert first.file.endswith(f"{first.first_id}_{first.last_id}.e1.parquet")


def test_files_roll_by_month_so_sparse_history_makes_few_files(r, tmp_path):
    months = [BASE_MS, BASE_MS + 40 * 86_400_000, BASE_MS + 70 * 86_400_000]
    for start in months:
        for i in range(5):
            r.xadd("s", {"n": str(i)}, id=f"{start + i * 86_400_000}-0")  # a day apart
    arc = ak.Archive(tmp_path, rows_per_file=100, envelope={"event_type": None, "decoder": "flat"})
    arc.export(r, "s")
    folders = [e.file.split("/")[1] for e in arc.entries("s")]
    assert folders == ["month=2026-03", "month=2026-04", "month=2026-05"]
    rows = duckdb.sql(
        f"select month, count(*) from read_parquet('{tmp_path}/**/*.parquet', "
        "hive_partitioning=true, union_by_name=true) group by 1 order by 1"
    ).fetchall()
    assert [n for _, n in rows] == [5, 5, 5]


def test_files_roll_by_bytes(r, tmp_path):
    pipe = r.pipeline(transaction=False)
    for i in range(100):
        pipe.xadd("big", {"blob": "x" * 1_000}, id=f"{BASE_MS}-{i}")
    pipe.execute()
    arc = ak.Archive(
        tmp_path, bytes_per_file=10_000, envelope={"event_type": None, "decoder": "flat"}
    )
    arc.export(r, "big")
    rows = [e.rows for e in arc.entries("big")]
    assert sum(rows) == 100
    assert max(rows) <= 10 and len(rows) >= 10


def test_ten_thousand_entries_in_one_millisecond(r, tmp_path):
    pipe = r.pipeline(transaction=False)
    for i in range(10_000):
        pipe.xadd("burst", {"i": str(i)}, id=f"{BASE_MS}-{i}")
    pipe.execute()
    arc = ak.Archive(
        tmp_path, rows_per_file=3_000, envelope={"event_type": None, "decoder": "flat"}
    )
    arc.export(r, "burst")
    assert [e.rows for e in arc.entries("burst")] == [3_000, 3_000, 3_000, 1_000]
    assert arc.verify(r, "burst").ok
    arc.trim(r, "burst")
    assert arc.restore(r, "burst", "burst:2") == 10_000
    assert r.xrange("burst:2", count=2)[1][0] == f"{BASE_MS}-1".encode()


@pytest.fixture
def archived(r, tmp_path):
    _fill(r, n=1_200)
    arc = ak.Archive(tmp_path / "arc", rows_per_file=300)
    arc.export(r, "orders")
    assert arc.verify(r, "orders").ok
    return arc


def test_trim_derives_its_cut_from_the_manifest_it_verifies_not_from_a_marker(r, tmp_path):
    _fill(r, n=100)
    arc = ak.Archive(tmp_path)
    arc.export(r, "orders")
    _fill(r, n=500, start_ms=BASE_MS + 86_400_000)  # never archived
    last = r.xrevrange("orders", count=1)[0][0].decode()
    # A forged "verified" marker (the file an earlier auditkit trusted) naming the end.
    marker = tmp_path / "_state" / "orders.verified.json"
    marker.parent.mkdir(parents=True)
    marker.write_text(json.dumps({"horizon": last, "manifest_head": "f" * 64}))
    assert arc.trim(r, "orders") == 100  # no verify() needed: trim proves it itself
    assert r.xlen("orders") == 500


def test_trim_dry_run_says_what_would_go_and_removes_nothing(r, tmp_path):
    _fill(r, n=100)
    arc = ak.Archive(tmp_path)
    arc.export(r, "orders")
    plan = arc.plan_trim(r, "orders")
    assert (plan.entries, plan.first_id) == (100, f"{BASE_MS}-0")
    assert plan.last_id == str(arc.horizon("orders")) and plan.minid == str(
        arc.horizon("orders").next()
    )
    assert "100 entries" in str(plan)
    assert arc.trim(r, "orders", dry_run=True) == 100
    assert r.xlen("orders") == 100


def test_trim_never_goes_beyond_the_horizon_or_before(r, tmp_path):
    _fill(r, n=100)
    arc = ak.Archive(tmp_path)
    arc.export(r, "orders")
    arc.verify(r, "orders")
    _fill(r, n=10, start_ms=BASE_MS + 86_400_000)
    horizon = arc.horizon("orders")
    keep = r.xrange("orders", min=str(horizon.next()))
    assert arc.trim(r, "orders", before=f"{BASE_MS + 60_000 * 50}") == 50
    assert arc.trim(r, "orders") == 50
    assert r.xrange("orders") == keep


def test_recreated_stream_with_colliding_ids_halts_export(any_r, tmp_path):
    r = any_r
    _fill(r, n=200)
    ids = [entry_id for entry_id, _ in _raw(r, "orders")]
    arc = ak.Archive(tmp_path)
    arc.export(r, "orders")
    r.delete("orders")
    for entry_id in ids:  # the same IDs, other data: counters alone would not tell
        r.xadd("orders", {"type": "Imposter"}, id=entry_id)
    with pytest.raises(ak.StreamRecreated, match=r"`orders`.*differs from its archived copy"):
        arc.export(r, "orders")
    report = arc.verify(r, "orders")
    assert not report.ok
    conflicts = report.findings[report.findings["check"] == "conflict"]
    assert len(conflicts) == 200 and set(conflicts["severity"]) == {"critical"}
    with pytest.raises(ak.TrimRefused):
        arc.trim(r, "orders")


@pytest.mark.redis_min("7.0")
def test_recreated_stream_is_caught_by_its_counters(r, tmp_path):
    _fill(r, n=100)
    arc = ak.Archive(tmp_path)
    arc.export(r, "orders")
    r.delete("orders")
    r.xadd("orders", {"type": "New"}, id=f"{BASE_MS + 10**9}-0")  # IDs above the horizon
    with pytest.raises(ak.StreamRecreated, match="entries-added"):
        arc.export(r, "orders")


@pytest.mark.redis_min("7.0")
def test_events_trimmed_before_archiving_are_recorded_and_acknowledged(r, tmp_path):
    _fill(r, n=100)
    arc = ak.Archive(tmp_path)
    arc.export(r, "orders")
    horizon = str(arc.horizon("orders"))
    _fill(r, n=100, start_ms=BASE_MS + 86_400_000)
    r.xtrim("orders", maxlen=60, approximate=False)  # a producer's MAXLEN cap, before export
    first_live = r.xrange("orders", count=1)[0][0].decode()
    report = arc.verify(r, "orders")
    assert not report.ok
    loss = report.findings.set_index("check").loc["loss-recorded"]
    assert "40 entries" in loss["detail"]
    assert f"({horizon}, {first_live})" in loss["detail"]  # the range, exactly
    losses = arc.losses("orders")
    assert losses[["count", "after", "before", "acknowledged"]].values.tolist() == [
        [40, horizon, first_live, False]
    ]
    with pytest.raises(ak.TrimRefused, match=r"not acknowledged.*auditkit acknowledge"):
        arc.trim(r, "orders")
    assert arc.export(r, "orders").lost == 0  # recorded once, not again
    arc.acknowledge("orders", int(losses["record"][0]), reason="MAXLEN cap in producer v1.2")
    report = arc.verify(r, "orders")
    assert report.ok
    acked = report.findings.set_index("check").loc["loss-acknowledged", "detail"]
    assert "MAXLEN cap in producer v1.2" in acked
    assert arc.trim(r, "orders") == 60  # MAXLEN left 60; all are archived now


@pytest.mark.redis_min("7.0")
def test_export_records_a_loss_between_exports_with_its_range(r, tmp_path):
    _fill(r, n=100)
    arc = ak.Archive(tmp_path)
    arc.export(r, "orders")
    _fill(r, n=100, start_ms=BASE_MS + 86_400_000)
    victim = r.xrange("orders", min=f"{BASE_MS + 86_400_000}", count=50)[-1][0]
    r.xdel("orders", victim)  # one XDEL mid-range, before it was archived
    report = arc.export(r, "orders")
    assert (report.rows, report.lost) == (99, 1)
    loss = arc.losses("orders").iloc[0]
    assert (loss["count"], loss["seen_by"]) == (1, "export")
    assert loss["after"] is not None  # after the previous export's end
    assert not arc.verify(r, "orders").ok


def test_redis62_says_loss_cannot_be_counted(r62, tmp_path):
    _fill(r62, n=50)
    arc = ak.Archive(tmp_path)
    arc.export(r62, "orders")
    report = arc.verify(r62, "orders")
    assert report.ok
    assert "loss-unknown" in set(report.findings["check"])


def test_pending_entries_below_the_horizon_block_trim(r, tmp_path):
    _fill(r, n=30)
    r.xgroup_create("orders", "billing", id="0")
    r.xreadgroup("billing", "worker-1", {"orders": ">"}, count=5)  # read, never acknowledged
    arc = ak.Archive(tmp_path)
    arc.export(r, "orders")
    arc.verify(r, "orders")
    with pytest.raises(ak.TrimRefused, match=r"`billing`.*5 pending"):
        arc.trim(r, "orders")
    # 25 entries the group was never delivered: allowing pending ones does not allow those.
    with pytest.raises(ak.TrimRefused, match=r"`billing`.*not been delivered 25 entries"):
        arc.trim(r, "orders", allow_pending=True)
    assert arc.trim(r, "orders", before=f"{BASE_MS + 60_000 * 5}", allow_pending=True) == 5
    assert arc.trim(r, "orders", allow_pending=True, allow_undelivered=True) == 25


@pytest.mark.heavy
def test_trim_refuses_on_a_replica(r, redis_server, start_redis, tmp_path):
    _fill(r, n=20)
    replica = start_redis({"replicaof": f"127.0.0.1 {redis_server.port}"})
    client = replica.client()
    deadline = time.monotonic() + 10
    while client.xlen("orders") != 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    arc = ak.Archive(tmp_path)
    arc.export(client, "orders")
    arc.verify(client, "orders")
    with pytest.raises(ak.TrimRefused, match=r"replica|slave"):
        arc.trim(client, "orders")


def test_restore_refuses_an_existing_target(archived, r):
    r.xadd("taken", {"a": "1"})
    with pytest.raises(ak.TargetExists, match="`taken` already exists") as caught:
        archived.restore(r, "orders", "taken")
    assert isinstance(caught.value, FileExistsError)
    assert not isinstance(caught.value, ak.TrimRefused)
    assert r.xlen("taken") == 1


def test_duckdb_view_needs_no_sql_from_users(tmp_path, r):
    odd = tmp_path / "it's an 'odd' path"
    _fill(r, n=10)
    arc = ak.Archive(odd)
    arc.export(r, "orders")
    con = arc.duckdb()
    assert _count(con) == 10
    assert (
        con.execute("select count(*) from events where aggregate_id = ?", ["order-3"]).fetchone()[0]
        == 1
    )


def test_a_projection_reads_the_archive(archived, r):
    projection = ak.Projection({"n": 0}, {"*": lambda state, event: {"n": state["n"] + 1}})
    from_archive = projection.states_at(archived)
    from_redis = projection.states_at((r, "orders"))
    assert from_archive["n"].tolist() == from_redis["n"].tolist()
    assert projection.state_at(archived, "order-7") == {"n": 24}


# ---- crashes: what the local folder's own means guarantee ---------------------------------
# (The crash points every storage shares are in test_storage.py.)

_CHILD = r"""
import os, signal, sys
import auditkit as ak
import auditkit._archive.storage as S

url, root, point, nth = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
seen = {"n": 0}

def die():
    os.kill(os.getpid(), signal.SIGKILL)

if point == "mid-file":
    original = S.LocalStorage.publish
    def partial(self, relative, data, sha256):
        seen["n"] += 1
        if seen["n"] == nth:
            folder = os.path.dirname(self.path(relative))
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, ".crash.parquet.tmp"), "wb") as half:
                half.write(bytes(data)[: len(data) // 2])
            die()
        return original(self, relative, data, sha256)
    S.LocalStorage.publish = partial
elif point == "timer":
    import threading
    threading.Timer(nth / 1000, die).start()
ak.Archive(root, rows_per_file=500).export(ak.connect(url), "orders")
"""


def _crash(redis_server, root, point, nth):
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, redis_server.url, str(root), point, str(nth)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.returncode


def _check_complete(arc, r, reference):
    entries = arc.entries("orders")
    ids = [i for e in entries for i in _file_ids(arc.root / e.file)]
    assert ids == [entry_id.decode() for entry_id, _ in _raw(r, "orders")]  # no gap, no duplicate
    # Everything a plain DuckDB glob sees is readable and counted once.
    seen = (
        duckdb.connect()
        .execute(
            f"select count(*), count(distinct id) from read_parquet('{arc.root}/**/*.parquet', "
            "hive_partitioning=true, union_by_name=true)"
        )
        .fetchall()
    )
    assert seen == [(len(ids), len(ids))]
    assert _contents(arc, "orders") == reference
    assert arc.verify(r, "orders").ok


def _file_ids(path):
    import pyarrow.parquet as pq

    return pq.read_table(path, columns=["id"]).column("id").to_pylist()


@pytest.mark.parametrize("nth", [1, 4])
def test_a_file_half_written_when_killed_is_never_seen(redis_server, r, tmp_path, nth):
    _fill(r, n=3_000)
    clean = ak.Archive(tmp_path / "clean", rows_per_file=500)
    clean.export(r, "orders")
    reference = _contents(clean, "orders")
    arc = ak.Archive(tmp_path / "crashed", rows_per_file=500)
    assert _crash(redis_server, arc.root, "mid-file", nth) == -signal.SIGKILL
    assert list(Path(arc.root).rglob(".crash.parquet.tmp"))  # the half file, hidden
    arc.export(r, "orders")  # the rerun, at once: the kernel released the dead one's flock
    _check_complete(arc, r, reference)
    assert not list(Path(arc.root).rglob(".*.tmp"))


def test_a_killed_holder_releases_the_flock_at_once(r, tmp_path):
    from test_storage import lease_held_by_another_process

    _fill(r, n=10)
    arc = ak.Archive(tmp_path)
    with lease_held_by_another_process(str(tmp_path)) as child:
        with pytest.raises(ak.ArchiveBusy, match=rf"pid {child.pid} on "):
            arc.export(r, "orders")
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=10) == -signal.SIGKILL
        assert arc.export(r, "orders").rows == 10  # no expiry to wait for


@pytest.mark.heavy
def test_killed_at_random_moments(redis_server, r, tmp_path):
    _fill(r, n=6_000)
    clean = ak.Archive(tmp_path / "clean", rows_per_file=500)
    clean.export(r, "orders")
    reference = _contents(clean, "orders")
    arc = ak.Archive(tmp_path / "crashed", rows_per_file=500)
    rng = random.Random(int(os.environ.get("AUDITKIT_CRASH_SEED", "7")))
    for _ in range(4):
        _crash(redis_server, arc.root, "timer", rng.randrange(300, 1_500))
    arc.export(r, "orders")
    _check_complete(arc, r, reference)
    assert not list(Path(arc.root).rglob(".*.tmp"))


def test_duckdb_live_skips_streams_deleted_since(archived, r):
    r.delete("orders")
    assert _count(archived.duckdb(live=r)) == 1_200


def test_an_export_removes_the_temporary_files_a_killed_writer_left_of_its_stream(r, tmp_path):
    _fill(r, n=10)
    arc = ak.Archive(tmp_path)
    arc.export(r, "orders")
    left = [
        "_manifest/orders/.0000000001.jsonl.k3j_9xq2.tmp",  # a manifest replace cut short
        "stream=orders/month=2026-03/.1-0_2-0.e1.parquet.a1b2c3d4.tmp",
    ]
    others = [  # another stream's, which its own exporter may be writing right now
        "_manifest/orders.v2/.0000000001.jsonl.k3j_9xq2.tmp",
        "stream=orders.v2/month=2026-03/.1-0_2-0.e1.parquet.a1b2c3d4.tmp",
    ]
    for relative in left + others:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(b"half")
    arc.export(r, "orders")
    assert [p for p in left if (tmp_path / p).exists()] == []
    assert [p for p in others if (tmp_path / p).exists()] == others
    assert arc.verify(r, "orders").ok
