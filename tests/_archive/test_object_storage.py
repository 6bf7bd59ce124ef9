"""What only object storage does, on a real S3-compatible server in its own process (moto's).

Object storage has no rename and no flock: files are written once to their final key and
read back before the manifest lists them, and the lease is an object with an expiry. What
every storage does alike (S3 and fsspec file systems included) is in test_storage.py.
"""

import json
import threading
import time

import pytest
from _s3 import SECRET_KEY
from test_archive import _fill

import auditkit as ak
from auditkit._archive.storage import ObjectStorage


def _archive(s3_server, bucket, prefix="arc", **options):
    return ak.Archive(f"s3://{bucket}/{prefix}", filesystem=s3_server.filesystem(), **options)


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
    bad_range = corrupted[0].rsplit("/", 1)[1].split(".")[0]
    listed = sum(e.rows for e in arc.entries("orders"))  # files before the bad one stay
    monkeypatch.setattr(ObjectStorage, "replace", real_replace)
    assert arc.export(r, "orders").rows == 1_200 - listed
    assert bad_range in {f"{e.first_id}_{e.last_id}" for e in arc.entries("orders")}
    assert arc.verify(r, "orders").ok
    assert sum(e.rows for e in arc.entries("orders")) == 1_200


def test_a_crashed_holders_lease_expires(s3_server, bucket, r):
    _fill(r, n=300)
    arc = _archive(s3_server, bucket)
    stale = {"holder": "pid 1 on gone", "token": "x", "expires": time.time() + 1.0}
    arc.storage.replace(arc.layout.paths("orders").lease, json.dumps(stale).encode())
    with pytest.raises(ak.ArchiveBusy, match=r"pid 1 on gone.* expires within"):
        arc.export(r, "orders")
    time.sleep(1.1)
    assert arc.export(r, "orders").rows == 300
    # Released: the lease object stays, expired, to keep its epoch for the next holder.
    released = json.loads(arc.storage.read_bytes(arc.layout.paths("orders").lease))
    assert released["expires"] == 0 and released["epoch"] == 1


def test_of_two_racing_writers_exactly_one_takes_the_lease(s3_server, bucket):
    storage = _archive(s3_server, bucket).storage
    start = threading.Barrier(2)
    won, busy = [], []

    def take(token):
        start.wait()
        try:
            storage._take("_lease/orders.lock", "orders", token, 0)
            won.append(token)
        except ak.ArchiveBusy:
            busy.append(token)

    threads = [threading.Thread(target=take, args=(t,)) for t in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1 and len(busy) == 1


def test_filesystem_needs_a_url():
    with pytest.raises(ValueError, match="goes with an object storage URL"):
        ak.Archive("archive/", filesystem=object())


# ---- fencing: a writer paused past its lease ------------------------------------------------

_PAUSED = r"""
import sys, time
import auditkit as ak
import auditkit._archive.storage as S
from _s3 import S3Server

S.LEASE_SECONDS = float(sys.argv[4])
port, bucket, redis_url = int(sys.argv[1]), sys.argv[2], sys.argv[3]
server = S3Server()
server.port = port
original = S.ObjectStorage.replace

def replace(self, relative, data):
    # Says what it is about to write, then gives the test time to stop it right there:
    # after every check, before the write.
    if relative.endswith(".parquet") or relative.startswith("_manifest/"):
        print("writing", relative, flush=True)
        time.sleep(0.4)
    return original(self, relative, data)

S.ObjectStorage.replace = replace
arc = ak.Archive(f"s3://{bucket}/arc", filesystem=server.filesystem(), rows_per_file=200)
try:
    arc.export(ak.connect(redis_url), "orders")
except ak.ArchiveFenced as exc:
    print("fenced:", exc, flush=True)
    sys.exit(1)
"""


@pytest.mark.parametrize("stop_at", ["_manifest/", ".parquet"])
@pytest.mark.heavy
def test_a_writer_paused_past_its_lease_never_overwrites_or_removes_newer_work(
    s3_server, bucket, r, redis_server, stop_at
):
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    _fill(r, n=2_000)
    lease_seconds = 1.5
    child = subprocess.Popen(
        [
            *(sys.executable, "-c", _PAUSED, str(s3_server.port), bucket),
            *(redis_server.url, str(lease_seconds)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
    )
    writes = 0
    for line in child.stdout:
        writes += line.startswith("writing")
        if writes >= 3 and stop_at in line:
            break
    child.send_signal(signal.SIGSTOP)  # paused right before a write, every check passed
    try:
        time.sleep(lease_seconds + 1.0)  # its lease expires
        newer = _archive(s3_server, bucket, rows_per_file=300)
        assert newer.export(r, "orders").horizon is not None
        assert newer.verify(r, "orders").ok
        assert newer.trim(r, "orders") == 2_000  # trimmed: the archive is the only copy now
        _fill(r, n=500, start_ms=1_772_323_200_000 + 5 * 86_400_000)
        newer.export(r, "orders")
    finally:
        child.send_signal(signal.SIGCONT)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 1, err
    assert "fenced:" in out and "another writer took it" in out, (out, err)
    # The stale writer wrote its own objects at most; the next export removes them.
    newer.export(r, "orders")
    report = newer.verify(r, "orders")
    assert report.ok, report.findings
    ids = [
        entry_id
        for e in newer.entries("orders")
        for entry_id in newer.storage.read_table(e.file, columns=["id"]).column("id").to_pylist()
    ]
    assert len(ids) == len(set(ids)) == 2_500  # nothing lost, nothing twice
    assert all(e.epoch > 1 or e.n < 3 for e in newer.entries("orders"))
    assert [f for f in newer.storage.files("stream=orders")] == sorted(
        e.file for e in newer.entries("orders")
    )
