"""The storage contract: one suite, run over every place an archive can live.

The `backend` fixture gives each test a fresh, empty archive root on one of:

- `local`: a folder (`LocalStorage`: hidden temporary file and rename, `flock`);
- `s3`: a prefix in a bucket of a real S3-compatible server in its own process
  (`ObjectStorage` over pyarrow's `S3FileSystem`: one PUT per file, read-back, lease objects);
- `fsspec`: an fsspec in-memory file system passed as `filesystem=` (`ObjectStorage` over
  pyarrow's `FSSpecHandler`).

Part one holds the `Storage` interface to what its docstrings promise; part two runs the
archive's behaviours that depend on storage (export, verify, trim, query, restore, one
writer at a time, crash recovery) on each backend. Each backend also brings another client
of the same storage (the file system itself, boto3, the fsspec object), so the tests see
what other readers see, not only what auditkit reads back. What one backend does alone
(`flock` released on SIGKILL, lease expiry, read-back mismatch, credentials in URLs) is
tested in test_archive.py and test_object_storage.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_archive import BASE_MS, _count, _fill, _raw

import auditkit as ak
import auditkit._archive.storage as storage_module

STREAM = "orders"
LEASE = "_lease/orders.lock"


@dataclass
class Backend:
    """A fresh archive root on one storage backend, and another client's view of it."""

    name: str
    root: str | Path
    """What `Archive` takes, and shows as its `root`."""
    filesystem: Any
    list_files: Callable[[], list[str]]
    """The files under the root, relative and sorted, as another client lists them."""
    read_file: Callable[[str], bytes | None]
    """A file's bytes as another client reads them, or None."""
    child_root: str | None
    """The root as another process opens it; None when the storage lives in this process."""
    lease_outlives_its_holder: bool
    """True: a holder killed with SIGKILL leaves its lease object until it expires.
    False: the kernel frees the lock with the process."""

    def archive(self, **options: Any) -> ak.Archive:
        return ak.Archive(self.root, filesystem=self.filesystem, **options)

    def storage(self) -> storage_module.Storage:
        return self.archive().storage


@pytest.fixture(params=["local", "s3", "fsspec"])
def backend(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Backend]:
    # The settle time of an object storage lease only parts writers racing for it
    # (test_object_storage.py races two with the real one); here writers take turns.
    monkeypatch.setattr(storage_module, "_SETTLE_SECONDS", 0.05)
    if request.param == "local":
        yield _local(tmp_path / "arc")
    elif request.param == "s3":
        yield _s3(request.getfixturevalue("s3_server"), request.getfixturevalue("bucket"))
    else:
        fsspec = pytest.importorskip("fsspec")
        memory = fsspec.filesystem("memory")  # one store per process, shared by all tests
        folder = f"/auditkit/{uuid.uuid4().hex}"
        yield _fsspec(memory, f"{folder}/arc")
        if memory.exists(folder):
            memory.rm(folder, recursive=True)


def _local(root: Path) -> Backend:
    def list_files() -> list[str]:
        return sorted(
            (Path(folder) / name).relative_to(root).as_posix()
            for folder, _, names in os.walk(root)
            for name in names
        )

    def read_file(relative: str) -> bytes | None:
        path = root / relative
        return path.read_bytes() if path.is_file() else None

    return Backend("local", root, None, list_files, read_file, str(root), False)


def _s3(s3_server: Any, bucket: str) -> Backend:
    client = s3_server.client()

    def list_files() -> list[str]:
        keys = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="arc/"):
            keys.extend(item["Key"].removeprefix("arc/") for item in page.get("Contents", []))
        # pyarrow keeps a folder whose last file it deletes as an empty `folder/` object, a
        # marker that S3 tools show as a folder, not as a file.
        return sorted(key for key in keys if not key.endswith("/"))

    def read_file(relative: str) -> bytes | None:
        try:
            data: bytes = client.get_object(Bucket=bucket, Key=f"arc/{relative}")["Body"].read()
        except client.exceptions.NoSuchKey:
            return None
        return data

    return Backend(
        "s3",
        f"s3://{bucket}/arc",
        s3_server.filesystem(),
        list_files,
        read_file,
        s3_server.url(bucket, "arc"),
        True,
    )


def _fsspec(memory: Any, base: str) -> Backend:
    def list_files() -> list[str]:
        return sorted(path.removeprefix(f"{base}/") for path in memory.find(base))

    def read_file(relative: str) -> bytes | None:
        try:
            data: bytes = memory.cat_file(f"{base}/{relative}")
        except FileNotFoundError:
            return None
        return data

    return Backend("fsspec", f"memory:/{base}", memory, list_files, read_file, None, True)


def _known_bug(request: pytest.FixtureRequest, backend: Backend, reasons: dict[str, str]) -> None:
    """Mark the test an expected failure on the backends named in `reasons`."""
    if backend.name in reasons:
        request.applymarker(pytest.mark.xfail(strict=True, reason=reasons[backend.name]))


# ---- the Storage interface --------------------------------------------------------------


def test_replace_is_read_back_whole(backend):
    storage = backend.storage()
    path = "_state/orders.json"
    assert storage.read_bytes(path) is None
    assert storage.read_json(path) is None
    storage.replace(path, b'{"horizon": "1-0"}')  # creates the folders on the way
    assert storage.read_bytes(path) == b'{"horizon": "1-0"}'
    assert storage.read_json(path) == {"horizon": "1-0"}
    longer = b'{"horizon": "1772323200000-0", "rows": 3000}'
    storage.replace(path, memoryview(longer))
    assert storage.read_json(path) == {"horizon": "1772323200000-0", "rows": 3000}
    storage.replace(path, b"{}")  # shorter than before: nothing of the old content stays
    assert storage.read_bytes(path) == b"{}"
    assert backend.read_file(path) == b"{}"
    assert backend.list_files() == [path]  # no temporary file left behind


def test_missing_or_unreadable_files_read_as_none(backend):
    storage = backend.storage()
    storage.replace("_state/orders.json", b"not json")
    assert storage.read_json("_state/orders.json") is None
    assert storage.read_bytes("_state/other.json") is None
    assert storage.read_bytes("_nothing/here.json") is None
    assert storage.read_bytes("_state/orders.json/inside") is None  # a file is no folder
    assert storage.read_json("_state/other.json") is None


def test_replace_shows_readers_the_old_content_or_the_new(backend, request):
    _known_bug(
        request,
        backend,
        {
            "s3": "the PUT is atomic, the read is not: pyarrow's S3 input stream takes the "
            "size from a HEAD request and the bytes from later ranged GETs, so a read during "
            "a replace mixes two versions (apache/arrow#41310); ObjectStorage.read_bytes "
            "and read_json use it for the manifest, export state and lease",
            "fsspec": "fsspec's memory file system stores a file when it is opened for "
            "writing, empty, and fills it as it is written: ObjectStorage.replace relies on "
            "the file system to publish a file when it is closed, which S3 does and fsspec "
            "file systems need not",
        },
    )
    storage = backend.storage()
    path = "_manifest/orders.jsonl"
    old, new = b"o" * 200_000, b"n" * 100_000
    storage.replace(path, old)
    torn: list[int | None] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            data = storage.read_bytes(path)
            if data != old and data != new:
                torn.append(None if data is None else len(data))

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # let the reader run between any two steps of a write
    reader = threading.Thread(target=read)
    reader.start()
    writes = 0
    try:
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline and not torn:
            storage.replace(path, new if writes % 2 == 0 else old)
            writes += 1
    finally:
        stop.set()
        reader.join()
        sys.setswitchinterval(switch)
    assert writes >= 10
    assert torn == [], f"readers saw {len(torn)} files that were neither (sizes {torn[:5]})"


def test_publish_hash_and_read_table(backend):
    storage = backend.storage()
    table = pa.table({"id": [f"{BASE_MS}-{n}" for n in range(100)], "n": list(range(100))})
    out = io.BytesIO()
    pq.write_table(table, out)
    data = out.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    path = f"stream=orders/date=2026-03-01/{BASE_MS}-0_{BASE_MS}-99.parquet"
    storage.publish(path, memoryview(data), digest)
    assert storage.exists(path)
    assert storage.sha256(path) == (digest, len(data))
    assert backend.read_file(path) == data
    assert storage.read_table(path).equals(table)
    assert storage.read_table(path, columns=["id"]).column_names == ["id"]
    assert storage.read_table(path, filters=[("n", ">=", 90)]).column("n").to_pylist() == list(
        range(90, 100)
    )
    storage.publish(path, data, digest)  # a rerun after a crash publishes the same file again
    assert storage.sha256(path) == (digest, len(data))
    assert backend.list_files() == [path]


def test_files_lists_one_folder_sorted_and_relative(backend):
    storage = backend.storage()
    assert storage.files("") == []
    names = [
        "stream=orders/date=2026-03-02/b.parquet",
        "stream=orders:eu/date=2026-03-01/a.parquet",  # colons stay readable in keys
        "stream=orders/date=2026-03-01/a b.parquet",
        "stream=orders%2Fx/date=2026-03-01/c.parquet",
        "stream=ordersx/date=2026-03-01/d.parquet",  # shares the prefix, not the folder
        "_manifest/orders.jsonl",
        "top.json",
    ]
    for name in names:
        storage.replace(name, b"x")
    assert storage.files("stream=orders") == [
        "stream=orders/date=2026-03-01/a b.parquet",
        "stream=orders/date=2026-03-02/b.parquet",
    ]
    assert storage.files("stream=orders/date=2026-03-02") == [
        "stream=orders/date=2026-03-02/b.parquet"
    ]
    assert storage.files("stream=orders:eu") == ["stream=orders:eu/date=2026-03-01/a.parquet"]
    assert storage.files("_manifest") == ["_manifest/orders.jsonl"]
    assert storage.files("stream=missing") == []
    assert storage.files("") == sorted(names)
    assert backend.list_files() == sorted(names)


def test_a_file_has_no_files_under_it(backend, request):
    _known_bug(
        request,
        backend,
        {
            "fsspec": "pyarrow's FSSpecHandler raises NotADirectoryError for a FileSelector "
            "on a file, where S3FileSystem answers with nothing; ObjectStorage.files passes "
            "it on, so a stray file named like a folder of the archive stops streams(), "
            "verify() and export()",
        },
    )
    storage = backend.storage()
    storage.replace("_manifest", b"a stray file where a folder belongs")
    assert storage.files("_manifest") == []


def test_delete_and_exists(backend):
    storage = backend.storage()
    path = "stream=orders/date=2026-03-01/a.parquet"
    assert not storage.exists(path)
    storage.replace(path, b"x")
    assert storage.exists(path)
    assert not storage.exists("stream=orders")  # a folder is not a file
    assert not storage.exists("stream=orders/date=2026-03-01")
    storage.delete(path)
    assert not storage.exists(path)
    assert backend.read_file(path) is None
    storage.delete(path)  # deleting what is gone is no error
    storage.delete("stream=missing/date=2026-03-01/a.parquet")
    assert storage.files("") == []


def _hold(storage: Any, relative: str = LEASE, stream: str = STREAM) -> None:
    with storage.lease(relative, stream=stream):
        pass


def test_the_lease_is_exclusive(backend):
    storage = backend.storage()
    rival = backend.storage()  # another Archive on the same root, as a second exporter has
    with storage.lease(LEASE, stream=STREAM):
        with pytest.raises(ak.ArchiveBusy, match=rf"`orders`.*pid {os.getpid()} on ") as busy:
            _hold(rival)
        assert busy.value.stream == STREAM
        with pytest.raises(ak.ArchiveBusy):  # a refused taker changed nothing: still held
            _hold(rival)
        _hold(rival, "_lease/payments.lock", "payments")  # other streams are independent
    _hold(rival)  # released
    with pytest.raises(KeyError), storage.lease(LEASE, stream=STREAM):
        raise KeyError("an export failing under the lease")
    _hold(rival)  # released on the way out of an exception too


_HOLDER = r"""
import sys
import auditkit as ak

archive = ak.Archive(sys.argv[1])
with archive.storage.lease(archive.layout.paths("orders").lease, stream="orders"):
    print("held", flush=True)
    sys.stdin.read()  # until the parent closes the pipe
"""


@contextlib.contextmanager
def lease_held_by_another_process(root: str) -> Iterator[subprocess.Popen[str]]:
    """A child process that holds the lease of `orders` in `root` until its stdin closes."""
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, root],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline() == "held\n", child.stderr.read()
        yield child
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        for pipe in (child.stdin, child.stdout, child.stderr):
            pipe.close()


def test_the_lease_is_exclusive_across_processes(backend):
    if backend.child_root is None:
        pytest.skip(f"the {backend.name} storage lives inside this process")
    storage = backend.storage()
    with lease_held_by_another_process(backend.child_root) as child:
        with pytest.raises(ak.ArchiveBusy, match=rf"pid {child.pid} on "):
            _hold(storage)
        child.stdin.close()
        assert child.wait(timeout=60) == 0, child.stderr.read()
    _hold(storage)  # a holder that finished released the lease


# ---- the archive on each storage --------------------------------------------------------


def test_export_verify_trim_export_query_restore(backend, any_r, tmp_path):
    r = any_r
    _fill(r)
    original = _raw(r, STREAM)
    arc = backend.archive(rows_per_file=1_000)
    assert str(arc.root) == str(backend.root)
    report = arc.export(r, STREAM)
    # The same entries give the same files, byte for byte, wherever they are stored.
    reference = ak.Archive(tmp_path / "reference", rows_per_file=1_000)
    reference.export(r, STREAM)
    expected = [(e.file, e.sha256) for e in reference.entries(STREAM)]
    assert [(e.file, e.sha256) for e in arc.entries(STREAM)] == expected
    assert report.rows == 3_000 and report.files == len(expected) == 3  # 1,000 rows each
    assert arc.export(r, STREAM).rows == 0  # idempotent: nothing new, nothing written
    assert arc.verify(r, STREAM).ok
    assert arc.trim(r, STREAM) == 3_000
    assert r.xlen(STREAM) == 0
    _fill(r, n=500, start_ms=BASE_MS + 86_400_000 * 3)
    after_trim = _raw(r, STREAM)
    con = arc.duckdb(live=r)  # archive + live tail, each event once
    assert _count(con) == 3_500
    by_type = dict(con.execute("select event_type, count(*) from events group by 1").fetchall())
    assert by_type == {"Placed": 1_167, "Paid": 1_167, "Shipped": 1_166}
    assert _count(con, "select count(distinct date) from events") == 4
    arc.export(r, STREAM)
    assert arc.verify(r, STREAM).ok
    assert _count(arc.duckdb()) == 3_500
    assert arc.events_table().num_rows == 3_500
    assert arc.restore(r, STREAM, "orders:restored") == 3_500
    assert _raw(r, "orders:restored") == original + after_trim
    # Another client sees the documented layout: the listed files and the bookkeeping.
    seen = backend.list_files()
    assert seen == arc.storage.files("")
    assert {n for n in seen if n.endswith(".parquet")} == {e.file for e in arc.entries(STREAM)}
    # One manifest version, the latest writer's: the lower ones were removed.
    (latest,) = [n for n in seen if n.startswith("_manifest/")]
    assert latest == arc.layout.versions(STREAM)[-1][1]
    assert latest.startswith("_manifest/orders/") and "_lease/orders.lock" in seen
    assert backend.read_file(latest) == arc.storage.read_bytes(latest)


def _flip_a_byte(arc: ak.Archive) -> None:
    victim = arc.entries(STREAM)[1].file
    data = bytearray(arc.storage.read_bytes(victim))
    data[len(data) // 2] ^= 0x01
    arc.storage.replace(victim, bytes(data))


def _delete_a_file(arc: ak.Archive) -> None:
    arc.storage.delete(arc.entries(STREAM)[2].file)


def _add_a_file(arc: ak.Archive) -> None:
    source = arc.entries(STREAM)[0].file
    copy = source.rsplit("/", 1)[0] + "/1-0_2-0.parquet"
    arc.storage.replace(copy, arc.storage.read_bytes(source))


def _edit_the_manifest(change: Callable[[list[str]], None]) -> Callable[[ak.Archive], None]:
    def edit(arc: ak.Archive) -> None:
        path = arc.layout.versions(STREAM)[-1][1]
        lines = arc.storage.read_bytes(path).decode().splitlines()[1:]  # after the header
        header = arc.storage.read_bytes(path).decode().splitlines()[0]
        change(lines)
        arc.storage.replace(path, ("\n".join([header, *lines]) + "\n").encode())

    return edit


def _swap_two_entries(lines: list[str]) -> None:
    lines[1], lines[2] = lines[2], lines[1]


def _add_a_row(lines: list[str]) -> None:
    entry = json.loads(lines[0])
    entry["rows"] += 1
    lines[0] = json.dumps(entry)


@pytest.mark.parametrize(
    ("tamper", "checks"),
    [
        pytest.param(_flip_a_byte, ["file-changed"], id="flipped-byte"),
        pytest.param(_delete_a_file, ["file-missing"], id="deleted-file"),
        pytest.param(_add_a_file, ["file-unlisted"], id="added-file"),
        pytest.param(
            _edit_the_manifest(_swap_two_entries),
            [*["manifest-chain"] * 3, "range-gap", "range-gap", "range-overlap"],
            id="reordered-manifest",
        ),
        pytest.param(
            _edit_the_manifest(_add_a_row),
            ["file-content", "manifest-chain"],
            id="edited-manifest",
        ),
    ],
)
def test_tampering_is_caught_and_blocks_trim(backend, r, tamper, checks):
    _fill(r, n=600)
    arc = backend.archive(rows_per_file=150)
    arc.export(r, STREAM)
    assert arc.verify().ok  # offline: no Redis needed
    assert arc.verify(r, STREAM).ok
    tamper(arc)
    # Changed after verify: trim checks the files again, under the lease, and refuses.
    with pytest.raises(
        ak.TrimRefused, match=r"no longer matches its manifest|cannot be trusted|should list"
    ):
        arc.trim(r, STREAM)
    report = arc.verify(r, STREAM)
    assert not report.ok
    assert sorted(report.findings["check"]) == checks, report.findings  # each found once
    assert not arc.verify().ok
    with pytest.raises(ak.TrimRefused):
        arc.trim(r, STREAM, dry_run=True)
    assert r.xlen(STREAM) == 600


def test_one_exporter_at_a_time(backend, r):
    _fill(r, n=300)
    arc = backend.archive()
    second = backend.archive()
    with arc.storage.lease(arc.layout.paths(STREAM).lease, stream=STREAM):
        with pytest.raises(ak.ArchiveBusy, match=rf"`orders`.*pid {os.getpid()} on "):
            second.export(r, STREAM)
        with pytest.raises(ak.ArchiveBusy):
            second.trim(r, STREAM)
        assert second.entries(STREAM) == []
    assert second.export(r, STREAM).rows == 300
    assert r.xlen(STREAM) == 300


_KILLED = r"""
import os, signal, sys
import auditkit as ak
import auditkit._archive.layout as L
import auditkit._archive.storage as S

root, redis_url, point, nth = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
S.LEASE_SECONDS = float(sys.argv[5])  # a killed holder's lease object expires quickly
S._SETTLE_SECONDS = 0.05  # nobody races this writer
archive = ak.Archive(root, rows_per_file=250)
seen = {"n": 0}

def die():
    os.kill(os.getpid(), signal.SIGKILL)

def after(owner, name):
    original = getattr(owner, name)
    def wrapped(*args, **kwargs):
        result = original(*args, **kwargs)
        seen["n"] += 1
        if seen["n"] == nth:
            die()
        return result
    setattr(owner, name, wrapped)

if point == "after-publish":  # the file is complete, the manifest does not list it yet
    after(type(archive.storage), "publish")
elif point == "after-manifest":  # a manifest version written (the first: before any file)
    after(L.StreamWriter, "save")
elif point == "before-export-state":  # every file listed, the stream's counters not yet
    original = L.StreamWriter.save
    def save(self, records, state=None):
        if state is not None:
            die()
        return original(self, records, state)
    L.StreamWriter.save = save
archive.export(ak.connect(redis_url), "orders")
"""


_CHILD_LEASE_SECONDS = 0.3


@pytest.mark.parametrize(
    ("point", "nth"),
    [
        ("after-publish", 1),
        ("after-publish", 3),
        ("after-manifest", 2),
        ("after-manifest", 5),
        ("before-export-state", 1),
    ],
)
@pytest.mark.heavy
def test_a_killed_exporter_leaves_no_gap_no_duplicate(
    backend, r, redis_server, tmp_path, point, nth
):
    if backend.child_root is None:
        pytest.skip(f"the {backend.name} storage lives inside this process")
    _fill(r, n=1_500)  # 6 files
    reference = ak.Archive(tmp_path / "reference", rows_per_file=250)
    reference.export(r, STREAM)
    done = subprocess.run(
        [
            *(sys.executable, "-c", _KILLED, backend.child_root, redis_server.url),
            *(point, str(nth), str(_CHILD_LEASE_SECONDS)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    killed = time.monotonic()
    assert done.returncode == -signal.SIGKILL, done.stderr
    arc = backend.archive(rows_per_file=250)
    if point == "after-publish":
        report = arc.verify(r, STREAM)
        # The orphan, seen and not counted; past the manifest's end, it fails nothing (an
        # export at work looks the same).
        assert "file-in-flight" in set(report.findings["check"]) and report.ok
    # A flock dies with its holder: the rerun goes on at once. A lease object stays until
    # it expires.
    wait = _CHILD_LEASE_SECONDS + 1.0 if backend.lease_outlives_its_holder else 0.0
    _export_once_the_lease_is_free(arc, r, deadline=killed + wait)
    entries = arc.entries(STREAM)
    expected = [(e.first_id, e.last_id, e.sha256) for e in reference.entries(STREAM)]
    assert [(e.first_id, e.last_id, e.sha256) for e in entries] == expected
    ids = [
        entry_id
        for e in entries
        for entry_id in arc.storage.read_table(e.file, columns=["id"]).column("id").to_pylist()
    ]
    assert ids == [entry_id.decode() for entry_id, _ in _raw(r, STREAM)]  # no gap, no duplicate
    # What another client lists is what the manifest lists: no orphan to count twice.
    assert [n for n in backend.list_files() if n.endswith(".parquet")] == [e.file for e in entries]
    assert arc.verify(r, STREAM).ok
    assert arc.duckdb().execute("select count(*), count(distinct id) from events").fetchall() == [
        (1_500, 1_500)
    ]


def _export_once_the_lease_is_free(arc: ak.Archive, r: Any, *, deadline: float) -> None:
    """Export, trying again while the lease is busy, until `deadline` (time.monotonic)."""
    while True:
        try:
            arc.export(r, STREAM)
            return
        except ak.ArchiveBusy:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
