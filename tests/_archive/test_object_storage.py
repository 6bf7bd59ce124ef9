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
    listed = sum(e.rows for e in arc.entries("orders"))  # files before the bad one stay
    monkeypatch.setattr(ObjectStorage, "replace", real_replace)
    assert arc.export(r, "orders").rows == 1_200 - listed
    assert corrupted[0] in {e.file for e in arc.entries("orders")}
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
    assert arc.storage.files("_lease") == []  # released: the lease object is gone


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


def test_filesystem_needs_a_url():
    with pytest.raises(ValueError, match="goes with an object storage URL"):
        ak.Archive("archive/", filesystem=object())
