"""The archive on object storage: a real S3-compatible server in its own process (moto's).

Object storage has no rename and no flock: files are written once to their final key and
read back before the manifest lists them, and the lease is an object with an expiry.
"""

import json
import signal
import subprocess
import sys
import threading
import time

import pytest
from _s3 import SECRET_KEY
from test_archive import _count, _fill, _raw

import auditkit as ak
from auditkit._archive.storage import ObjectStorage


def _archive(s3_server, bucket, prefix="arc", **options):
    return ak.Archive(f"s3://{bucket}/{prefix}", filesystem=s3_server.filesystem(), **options)


def test_export_verify_trim_query_restore_on_s3(s3_server, bucket, r, tmp_path):
    _fill(r)
    original = _raw(r, "orders")
    arc = _archive(s3_server, bucket, rows_per_file=400)
    assert arc.root == f"s3://{bucket}/arc"
    report = arc.export(r, "orders")
    assert report.rows == 3_000 and report.files >= 8
    assert arc.export(r, "orders").rows == 0
    # The same entries give the same files, byte for byte, on a local disk and in a bucket.
    local = ak.Archive(tmp_path / "local", rows_per_file=400)
    local.export(r, "orders")
    assert [(e.file, e.sha256) for e in arc.entries("orders")] == [
        (e.file, e.sha256) for e in local.entries("orders")
    ]
    assert arc.verify(r, "orders").ok
    assert arc.trim(r, "orders") == 3_000
    _fill(r, n=500, start_ms=1_772_323_200_000 + 86_400_000 * 3)
    after_trim = _raw(r, "orders")
    con = arc.duckdb(live=r)
    assert _count(con) == 3_500
    assert _count(con, "select count(distinct date) from events") >= 4
    arc.export(r, "orders")
    assert arc.verify(r, "orders").ok
    assert _count(arc.duckdb()) == 3_500
    assert arc.events_table().num_rows == 3_500
    assert arc.restore(r, "orders", "orders:restored") == 3_500
    assert _raw(r, "orders:restored") == original + after_trim
    # Nothing but the listed files, the bookkeeping and no lease left behind.
    names = arc.storage.files("")
    assert not [n for n in names if n.startswith("_lease/")]
    assert {n for n in names if n.endswith(".parquet")} == {e.file for e in arc.entries("orders")}


def test_a_url_with_credentials_works_and_never_shows_them(s3_server, bucket, r):
    _fill(r, n=300)
    arc = ak.Archive(s3_server.url(bucket, "by-url"))
    assert arc.export(r, "orders").rows == 300
    assert arc.verify(r, "orders").ok
    for text in (repr(arc), str(arc.root), repr(arc.storage)):
        assert SECRET_KEY not in text and "endpoint_override" not in text
    assert arc.root == f"s3://{bucket}/by-url"
    # Reading it back through another route finds the same archive.
    assert _archive(s3_server, bucket, "by-url").entries("orders") == arc.entries("orders")


def test_a_bad_url_fails_clearly_without_the_secret():
    url = f"s3://someone:{SECRET_KEY}@bucket/prefix?endpoint_override=nowhere:1&scheme=ftp"
    with pytest.raises(ak.ArchiveError) as caught:
        ak.Archive(url)
    assert SECRET_KEY not in str(caught.value)
    assert "filesystem=" in str(caught.value)


def test_a_changed_object_is_caught_and_blocks_trim(s3_server, bucket, r):
    _fill(r, n=1_200)
    arc = _archive(s3_server, bucket, rows_per_file=400)
    arc.export(r, "orders")
    assert arc.verify(r, "orders").ok
    victim = arc.entries("orders")[1].file
    data = bytearray(arc.storage.read_bytes(victim))
    data[len(data) // 2] ^= 0xFF
    arc.storage.replace(victim, bytes(data))
    report = arc.verify(r, "orders")
    assert not report.ok
    assert list(report.findings["check"]) == ["file-changed"]
    with pytest.raises(ak.TrimRefused, match="not verified"):
        arc.trim(r, "orders")


def test_a_write_that_reads_back_different_is_removed_and_not_listed(
    s3_server, bucket, r, monkeypatch
):
    _fill(r, n=1_200)
    arc = _archive(s3_server, bucket, rows_per_file=400)
    real_replace = ObjectStorage.replace
    corrupted = []

    def lossy_replace(self, relative, data):
        if relative.endswith(".parquet") and not corrupted:  # the network flips a bit once
            corrupted.append(relative)
            data = bytes(data[:-1]) + bytes([data[-1] ^ 1])
        real_replace(self, relative, data)

    monkeypatch.setattr(ObjectStorage, "replace", lossy_replace)
    with pytest.raises(ak.ArchiveError, match="read back with SHA-256"):
        arc.export(r, "orders")
    assert not arc.storage.exists(corrupted[0])
    assert corrupted[0] not in {e.file for e in arc.entries("orders")}
    listed = sum(e.rows for e in arc.entries("orders"))  # files before the bad one stay
    monkeypatch.setattr(ObjectStorage, "replace", real_replace)
    assert arc.export(r, "orders").rows == 1_200 - listed
    assert corrupted[0] in {e.file for e in arc.entries("orders")}
    assert arc.verify(r, "orders").ok
    assert sum(e.rows for e in arc.entries("orders")) == 1_200


def test_one_exporter_at_a_time_on_s3(s3_server, bucket, r):
    _fill(r, n=300)
    arc = _archive(s3_server, bucket)
    with (
        arc.storage.lease(arc.layout.paths("orders").lease, stream="orders"),
        pytest.raises(ak.ArchiveBusy, match=r"pid \d+ on .* expires within"),
    ):
        _archive(s3_server, bucket).export(r, "orders")
    assert arc.export(r, "orders").rows == 300


def test_a_crashed_holders_lease_expires(s3_server, bucket, r):
    _fill(r, n=300)
    arc = _archive(s3_server, bucket)
    stale = {"holder": "pid 1 on gone", "token": "x", "expires": time.time() + 1.0}
    arc.storage.replace(arc.layout.paths("orders").lease, json.dumps(stale).encode())
    with pytest.raises(ak.ArchiveBusy, match="pid 1 on gone"):
        arc.export(r, "orders")
    time.sleep(1.1)
    assert arc.export(r, "orders").rows == 300


def test_of_two_racing_writers_exactly_one_takes_the_lease(s3_server, bucket):
    storage = _archive(s3_server, bucket).storage
    start = threading.Barrier(2)
    won, busy = [], []

    def take(token):
        start.wait()
        try:
            storage._take("_lease/orders.lock", "orders", token)
            won.append(token)
        except ak.ArchiveBusy:
            busy.append(token)

    threads = [threading.Thread(target=take, args=(t,)) for t in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1 and len(busy) == 1


_CHILD = r"""
import os, signal, sys
import auditkit as ak
import auditkit._archive.storage as S

url, redis_url, nth = sys.argv[1], sys.argv[2], int(sys.argv[3])
S.LEASE_SECONDS = 1.0  # the dead holder's lease expires quickly
seen = {"n": 0}
original = S.ObjectStorage.publish
def publish_then_die(self, *args):
    original(self, *args)
    seen["n"] += 1
    if seen["n"] == nth:  # the file is up, the manifest does not list it yet
        os.kill(os.getpid(), signal.SIGKILL)
S.ObjectStorage.publish = publish_then_die
ak.Archive(url, rows_per_file=500).export(ak.connect(redis_url), "orders")
"""


def test_a_killed_exporter_on_s3_leaves_no_gap_no_duplicate(
    s3_server, bucket, r, redis_server, tmp_path
):
    _fill(r, n=3_000)
    reference = ak.Archive(tmp_path / "reference", rows_per_file=500)
    reference.export(r, "orders")
    url = s3_server.url(bucket, "crashed")
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, url, redis_server.url, "3"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    arc = _archive(s3_server, bucket, "crashed", rows_per_file=500)
    report = arc.verify(r, "orders")
    assert "file-unlisted" in set(report.findings["check"])  # the orphan, seen, not counted
    time.sleep(1.1)  # the dead exporter's lease expires
    arc.export(r, "orders")
    assert [(e.file, e.sha256) for e in arc.entries("orders")] == [
        (e.file, e.sha256) for e in reference.entries("orders")
    ]
    assert arc.verify(r, "orders").ok
    assert _count(arc.duckdb(), "select count(distinct id) from events") == 3_000


def test_an_fsspec_file_system_works_too(r, tmp_path):
    fsspec = pytest.importorskip("fsspec")
    _fill(r, n=900)
    memory = fsspec.filesystem("memory")
    arc = ak.Archive("memory://auditkit/arc", filesystem=memory, rows_per_file=400)
    assert arc.export(r, "orders").files == 3
    assert arc.verify(r, "orders").ok
    assert memory.exists("/auditkit/arc/_manifest/orders.jsonl")
    assert _count(arc.duckdb()) == 900


def test_filesystem_needs_a_url():
    with pytest.raises(ValueError, match="goes with an object storage URL"):
        ak.Archive("archive/", filesystem=object())
