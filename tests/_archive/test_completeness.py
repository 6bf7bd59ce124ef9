"""Faults an operator meets, each with real processes and a real server: a stream deleted
and recreated with more entries than were archived, a producer that caps its stream before
the first export, a verify while an export is at work, and sparse history."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
from test_archive import BASE_MS, _fill, _raw

import auditkit as ak

MONTH_MS = 30 * 86_400_000


@pytest.mark.redis_min("7.0")
def test_a_stream_recreated_with_more_entries_than_archived_is_refused(r, tmp_path):
    _fill(r, n=100)
    arc = ak.Archive(tmp_path)
    arc.export(r, "orders")
    assert arc.trim(r, "orders") == 100
    r.delete("orders")
    # Recreated, with new IDs above the horizon and more entries than the archive holds:
    # its counter (500) is above the archive's (100), so a counter that went down says
    # nothing; but a stream never adds fewer entries than it ever held.
    _fill(r, n=500, start_ms=BASE_MS + 3 * 86_400_000)
    with pytest.raises(ak.StreamRecreated, match=r"entries-added counter is 500, below the 100"):
        arc.export(r, "orders")
    report = arc.verify(r, "orders")
    assert not report.ok and "stream-recreated" in set(report.findings["check"])
    with pytest.raises(ak.TrimRefused, match="created again"):
        arc.trim(r, "orders")
    assert r.xlen("orders") == 500 and len(arc.entries("orders")) == 1


@pytest.mark.redis_min("7.0")
def test_a_producer_capped_before_the_first_export_is_a_recorded_loss(r, tmp_path):
    # As BullMQ caps its events stream: MAXLEN on every XADD, long before anyone archives.
    for i in range(2_000):
        r.xadd("capped", {"type": "Tick", "payload": json.dumps({"i": i})}, maxlen=500)
    first_live = r.xrange("capped", count=1)[0][0].decode()
    arc = ak.Archive(tmp_path)
    report = arc.export(r, "capped")
    assert (report.rows, report.lost) == (500, 1_500)
    loss = arc.losses("capped").iloc[0]
    assert (loss["count"], loss["after"], loss["before"]) == (1_500, None, first_live)
    findings = arc.verify(r, "capped").findings.set_index("check")
    assert (
        f"1,500 entries left the stream in (-, {first_live})"
        in findings.loc["loss-recorded", "detail"]
    )
    with pytest.raises(ak.TrimRefused, match="not acknowledged"):
        arc.trim(r, "capped")
    arc.acknowledge("capped", int(loss["record"]), reason="the producer caps at 500")
    assert arc.verify(r, "capped").ok
    assert arc.trim(r, "capped") == 500


_SLOW_EXPORT = r"""
import sys, time
import auditkit as ak
import auditkit._archive.storage as S

original = S.LocalStorage.publish
def publish(self, relative, data, sha256):
    original(self, relative, data, sha256)
    time.sleep(0.05)  # a slow disk: verify runs while files appear unlisted
S.LocalStorage.publish = publish
ak.Archive(sys.argv[2], rows_per_file=50).export(ak.connect(sys.argv[1]), "orders")
"""


def test_verify_during_an_export_never_fails_it(r, redis_server, tmp_path):
    _fill(r, n=300)
    arc = ak.Archive(tmp_path, rows_per_file=50)
    arc.export(r, "orders")
    _fill(r, n=3_000, start_ms=BASE_MS + 86_400_000)
    child = subprocess.Popen(
        [sys.executable, "-c", _SLOW_EXPORT, redis_server.url, str(tmp_path)],
        stderr=subprocess.PIPE,
        text=True,
    )
    seen = set()
    runs = 0
    try:
        while child.poll() is None:
            report = arc.verify(r, "orders")
            runs += 1
            seen |= set(report.findings["check"])
            assert report.ok, report.findings
    finally:
        child.wait(timeout=120)
    assert child.returncode == 0, child.stderr.read()
    assert runs >= 5 and "file-in-flight" in seen
    assert arc.verify(r, "orders").ok
    assert sum(e.rows for e in arc.entries("orders")) == 3_300


def test_sparse_history_makes_a_file_per_month_at_most(r, tmp_path):
    # Like a process log: 8,577 events over fifteen months.
    pipe = r.pipeline(transaction=False)
    span = 15 * MONTH_MS
    for i in range(8_577):
        pipe.xadd(
            "receipts", {"type": "Step", "payload": "{}"}, id=f"{BASE_MS + i * span // 8_577}-0"
        )
    pipe.execute()
    arc = ak.Archive(tmp_path)
    arc.export(r, "receipts")
    files = arc.entries("receipts")
    assert 15 <= len(files) <= 16 and sum(e.rows for e in files) == 8_577
    assert len({e.file.split("/")[1] for e in files}) == len(files)  # one month each


def test_a_killed_trim_leaves_the_stream_and_the_archive_whole(r, redis_server, tmp_path):
    _fill(r, n=2_000)
    arc = ak.Archive(tmp_path, rows_per_file=100)
    arc.export(r, "orders")
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, auditkit as ak; "
            "ak.Archive(sys.argv[2]).trim(ak.connect(sys.argv[1]), 'orders')",
            redis_server.url,
            str(tmp_path),
        ]
    )
    time.sleep(0.3)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    # Killed before XTRIM or after: either every entry is live, or none; the archive is whole.
    assert r.xlen("orders") in (0, 2_000)
    assert arc.verify(r, "orders").ok
    arc.trim(r, "orders")
    assert r.xlen("orders") == 0


@pytest.mark.redis_min("7.0")
def test_an_entry_forged_deep_in_the_archived_range_fails_verify_and_trim(r, tmp_path):
    _fill(r, n=300)
    arc = ak.Archive(tmp_path, rows_per_file=100)
    arc.export(r, "orders")
    raw = list(_raw(r, "orders"))
    r.delete("orders")
    # Recreated with the same IDs and counters; one entry of the first file changed.
    for n, (entry_id, flat) in enumerate(raw):
        r.execute_command("XADD", "orders", entry_id, *(_forged(flat) if n == 10 else flat))
    forged = raw[10][0].decode()
    # Export compares the last file's live entries when the counters show only growth...
    arc.export(r, "orders")
    # ... verify compares every live entry, and trim every entry it would remove.
    report = arc.verify(r, "orders")
    conflicts = report.findings[report.findings["check"] == "conflict"]
    assert not report.ok and list(conflicts["id"]) == [forged]
    with pytest.raises(ak.TrimRefused, match=forged):
        arc.trim(r, "orders")
    assert r.xlen("orders") == 300


@pytest.mark.redis_min("7.0")
def test_export_compares_everything_when_the_counters_went_back(r, tmp_path):
    _fill(r, n=300)
    arc = ak.Archive(tmp_path, rows_per_file=100)
    arc.export(r, "orders")
    raw = list(_raw(r, "orders"))
    r.delete("orders")
    for n, (entry_id, flat) in enumerate(raw[:250]):  # fewer entries: the counter went back
        r.execute_command("XADD", "orders", entry_id, *(_forged(flat) if n == 10 else flat))
    with pytest.raises(ak.StreamRecreated):
        arc.export(r, "orders")


def _forged(flat):
    """An entry's fields with its type changed (names and order kept)."""
    return [b"Forged" if i > 0 and flat[i - 1] == b"type" else v for i, v in enumerate(flat)]
