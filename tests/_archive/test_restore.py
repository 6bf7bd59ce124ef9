"""Restore: checked before writing, resumable after a kill, and refilling a trimmed stream.

Everything runs against real servers (Redis 7 and 6.2, an S3-compatible server) and real
processes: a restore killed with SIGKILL, a producer writing while a refill runs.
"""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from redis.crc import key_slot

import auditkit as ak
from auditkit._archive.restore import scratch_key
from auditkit._cli.main import main
from auditkit._redis.pages import iter_pages

BASE_MS = 1_772_323_200_000  # 2026-03-01T00:00:00Z


def _fill(r, key="orders", n=3_000, start_ms=BASE_MS, per_ms=3):
    """n entries of varied shapes: binary values, a field name twice, several per ms."""
    pipe = r.pipeline(transaction=False)
    for i in range(n):
        flat = [b"type", [b"Placed", b"Paid", b"Shipped"][i % 3], b"aggregate_id", b"o-%d" % i]
        flat += [b"payload", json.dumps({"n": i}).encode()]
        if i % 7 == 0:
            flat += [b"blob", bytes([i % 256, 255, 0])]
        if i % 11 == 0:
            flat += [b"note", b"first", b"note", b"second"]
        pipe.execute_command("XADD", key, f"{start_ms + i // per_ms}-{i % per_ms}", *flat)
        if len(pipe) == 10_000:
            pipe.execute()
    pipe.execute()


def _raw(r, key):
    return [(entry_id, flat) for page in iter_pages(r, key) for entry_id, flat in page]


def _url(client):
    options = client.connection_pool.connection_kwargs
    return f"redis://{options['host']}:{options['port']}/0"


def _archived(r, tmp_path, n=3_000, rows_per_file=500, key="orders"):
    _fill(r, key, n)
    arc = ak.Archive(tmp_path / "arc", rows_per_file=rows_per_file)
    arc.export(r, key)
    return arc, _raw(r, key)


def _flip_one_byte(path: Path, where: str = "middle") -> None:
    data = bytearray(path.read_bytes())
    if where == "middle":  # inside compressed pages: Parquet itself may notice
        data[len(data) // 2] ^= 0x01
    else:  # a column statistic in the footer: nothing that reads `id` and `fields` notices
        data[data.rindex(b"Shipped") + 6] ^= 0x01
    path.write_bytes(bytes(data))


# ---- the archive is checked before anything is written ------------------------------------


@pytest.mark.parametrize(("which", "where"), [(0, "middle"), (-1, "middle"), (1, "statistic")])
def test_a_flipped_byte_is_refused_and_nothing_is_written(r, tmp_path, which, where):
    arc, _ = _archived(r, tmp_path)
    damaged = arc.entries("orders")[which].file
    _flip_one_byte(Path(arc.root) / damaged, where)
    with pytest.raises(ak.ArchiveError, match=damaged.replace(".", r"\.")):
        arc.restore(r, "orders", "orders:restored")
    assert not r.exists("orders:restored")


def test_a_flipped_byte_stops_a_refill_before_it_touches_the_stream(r, tmp_path):
    arc, _ = _archived(r, tmp_path)
    assert arc.verify(r, "orders").ok
    arc.trim(r, "orders")
    _flip_one_byte(Path(arc.root) / arc.entries("orders")[3].file)
    with pytest.raises(ak.ArchiveError, match="does not match its SHA-256"):
        arc.restore(r, "orders", "orders")
    assert r.xlen("orders") == 0
    assert not r.exists(scratch_key("orders"))


def test_an_edited_manifest_entry_is_refused(r, tmp_path):
    arc, _ = _archived(r, tmp_path)
    manifest = Path(arc.layout.storage.path(arc.layout.versions("orders")[-1][1]))
    lines = manifest.read_text().splitlines()  # a header line, then the records
    entry = json.loads(lines[3])
    entry["rows"] += 1  # the file is untouched; the chain no longer vouches for the entry
    lines[3] = json.dumps(entry, sort_keys=True)
    manifest.write_text("\n".join(lines) + "\n")
    with pytest.raises(ak.ArchiveError, match=r"manifest-chain: record 2 \(stream=orders/"):
        arc.restore(r, "orders", "orders:restored")
    assert not r.exists("orders:restored")


def test_a_stream_not_archived_is_refused(r, tmp_path):
    arc, _ = _archived(r, tmp_path)
    with pytest.raises(ak.ArchiveError, match="holds no entry of `payments`"):
        arc.restore(r, "payments", "payments:restored")
    assert not r.exists("payments:restored")


# ---- resumable --------------------------------------------------------------------------

_CHILD = r"""
import sys
import auditkit as ak
url, root, stream, target = sys.argv[1:5]
ak.Archive(root).restore(ak.connect(url), stream, target, progress=False)
"""


def _kill_when(r, root, stream, target, watched, threshold):
    """Run a restore in a child process; SIGKILL it once `watched` holds `threshold`."""
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, _url(r), str(root), stream, target],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while child.poll() is None and time.monotonic() < deadline:
        if r.exists(watched) and r.xlen(watched) >= threshold:
            child.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    code = child.wait(timeout=30)
    assert code == -signal.SIGKILL, child.stderr.read().decode()[-2000:]
    child.stderr.close()
    return r.xlen(watched)


@pytest.mark.heavy
def test_killed_twice_mid_restore_then_rerun_is_exact(r, tmp_path):
    total = 200_000
    arc, original = _archived(r, tmp_path, n=total, rows_per_file=50_000)
    held = []
    for threshold in (40_000, 120_000):
        held.append(_kill_when(r, arc.root, "orders", "copy", "copy", threshold))
        assert threshold <= held[-1] < total  # the kill landed mid-way
        assert _raw(r, "copy") == original[: held[-1]]  # a prefix, nothing torn
    assert arc.restore(r, "orders", "copy") == total - held[-1]
    assert _raw(r, "copy") == original
    assert arc.restore(r, "orders", "copy") == 0  # once more: nothing left to write


@pytest.mark.heavy
def test_a_refill_killed_mid_way_is_rerun_to_the_exact_stream(r, tmp_path):
    total = 200_000
    arc, original = _archived(r, tmp_path, n=total, rows_per_file=50_000)
    assert arc.verify(r, "orders").ok
    arc.trim(r, "orders")
    scratch = scratch_key("orders")
    held = _kill_when(r, arc.root, "orders", "orders", scratch, 60_000)
    assert 60_000 <= held < total
    assert r.xlen("orders") == 0  # the stream is untouched until the swap
    # What the stream lacked; the scratch key's part is not written again (an XADD of an
    # ID it holds would fail), the rerun goes on after it.
    assert arc.restore(r, "orders", "orders") == total
    assert _raw(r, "orders") == original
    assert not r.exists(scratch)


# ---- a target that holds entries already ------------------------------------------------


def test_entries_already_there_are_kept_and_the_rest_appended(any_r, tmp_path):
    arc, original = _archived(any_r, tmp_path)
    for entry_id, flat in original[:100]:
        any_r.execute_command("XADD", "copy", entry_id, *flat)
    assert arc.restore(any_r, "orders", "copy") == len(original) - 100
    assert _raw(any_r, "copy") == original


def test_an_entry_with_other_fields_is_refused_naming_its_id(any_r, tmp_path):
    arc, original = _archived(any_r, tmp_path)
    for n, (entry_id, flat) in enumerate(original[:100]):
        any_r.execute_command("XADD", "copy", entry_id, *(flat if n != 42 else [*flat, b"x", b"y"]))
    differing = original[42][0].decode()
    with pytest.raises(ak.TargetExists, match=rf"holds entry {differing} with other fields"):
        arc.restore(any_r, "orders", "copy")
    assert _raw(any_r, "copy")[:42] == original[:42]
    assert any_r.xlen("copy") == 100  # nothing written, nothing overwritten


def test_an_entry_the_archive_lacks_inside_its_range_is_refused(any_r, tmp_path):
    arc, original = _archived(any_r, tmp_path)
    for entry_id, flat in original[:10]:
        any_r.execute_command("XADD", "copy", entry_id, *flat)
    ms = int(original[9][0].split(b"-")[0])
    any_r.execute_command("XADD", "copy", f"{ms}-99", b"type", b"Forged")
    with pytest.raises(ak.TargetExists, match=rf"holds entry {ms}-99, which the archive"):
        arc.restore(any_r, "orders", "copy")
    assert any_r.xlen("copy") == 11


def test_another_key_ending_past_what_it_lacks_is_refused(any_r, tmp_path):
    arc, _ = _archived(any_r, tmp_path)
    any_r.xadd("taken", {"a": "1"})  # now: after every archived ID
    with pytest.raises(ak.TargetExists, match="`taken` already exists and ends at"):
        arc.restore(any_r, "orders", "taken")
    assert any_r.xlen("taken") == 1


# ---- refilling the archived stream itself -----------------------------------------------

_PRODUCER = r"""
import sys, time
import redis
r = redis.Redis.from_url(sys.argv[1])
stop = sys.argv[2]
import os
n = 0
while not os.path.exists(stop):
    entry_id = r.xadd("orders", {"type": "Live", "n": str(n)})
    print(entry_id.decode(), flush=True)
    n += 1
"""


def _groups(r, key):
    groups = {}
    for group in r.xinfo_groups(key):
        pending = r.xpending_range(key, group["name"], "-", "+", 10_000)
        groups[group["name"]] = {
            "last-delivered-id": group["last-delivered-id"],
            "entries-read": group.get("entries-read"),
            "pending": [(p["message_id"], p["consumer"], p["times_delivered"]) for p in pending],
            "consumers": sorted(c["name"] for c in r.xinfo_consumers(key, group["name"])),
        }
    return groups


def test_refill_after_a_full_trim_keeps_groups_pending_and_every_producer_write(any_r, tmp_path):
    r = any_r
    arc, original = _archived(r, tmp_path, n=60_000, rows_per_file=5_000)
    # Groups as consumers left them: pending entries, a redelivered one, an idle consumer.
    r.xgroup_create("orders", "billing", id="0")
    r.xreadgroup("billing", "worker-1", {"orders": ">"}, count=500)
    r.xack("orders", "billing", *[entry_id for entry_id, _ in original[:450]])
    r.xclaim("orders", "billing", "worker-2", 0, [original[460][0]])
    r.xgroup_create("orders", "shipping", id=original[1000][0])
    r.xgroup_createconsumer("orders", "shipping", "idle-one")
    assert arc.verify(r, "orders").ok
    assert arc.trim(r, "orders", allow_pending=True, allow_undelivered=True) == len(original)
    live = [(r.xadd("orders", {"type": "AfterTrim", "n": str(n)}), n) for n in range(20)]
    before = _groups(r, "orders")
    info = r.xinfo_stream("orders")
    idle_before = {p["message_id"]: p["time_since_delivered"] for p in _pending(r)}

    stop, log = tmp_path / "stop", tmp_path / "produced.txt"
    with log.open("w") as out:  # a file: a pipe nobody reads would stall the producer
        producer = subprocess.Popen(
            [sys.executable, "-c", _PRODUCER, _url(r), str(stop)],
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            while r.xlen("orders") < 200:  # the producer is at work before the refill starts
                time.sleep(0.01)
            written = arc.restore(r, "orders", "orders")
            during = r.xlen("orders")
            time.sleep(0.2)  # and goes on writing on the refilled stream
        finally:
            stop.touch()
            _, err = producer.communicate(timeout=30)
    assert producer.returncode == 0, err
    produced = log.read_text().split()
    assert written == len(original)
    assert r.xlen("orders") > during  # writes after the swap landed too

    entries = _raw(r, "orders")
    assert entries[: len(original)] == original  # the archive, byte for byte, first
    tail = [entry_id.decode() for entry_id, _ in entries[len(original) :]]
    assert tail == [entry_id.decode() for entry_id, _ in live] + produced  # nothing lost
    assert entries[len(original) + 20 + 7][1] == [b"type", b"Live", b"n", b"7"]

    assert _groups(r, "orders") == before
    for message in _pending(r):
        assert message["time_since_delivered"] >= idle_before[message["message_id"]]
    after = r.xinfo_stream("orders")
    assert after["last-generated-id"] == entries[-1][0]
    if "entries-added" in info:  # Redis 7 keeps the counters; 6.2 has none to keep
        assert after["entries-added"] == info["entries-added"] + len(produced)
        assert after["max-deleted-entry-id"] == info["max-deleted-entry-id"]
    # The groups work on: the pending entries can be acknowledged, new entries read.
    assert r.xack("orders", "billing", *[m["message_id"] for m in _pending(r)]) == 50
    fresh = r.xreadgroup("billing", "worker-1", {"orders": ">"}, count=5)
    assert [entry_id for entry_id, _ in fresh[0][1]] == [i for i, _ in original[500:505]]


def _pending(r):
    return r.xpending_range("orders", "billing", "-", "+", 10_000)


def test_refill_of_a_partly_trimmed_stream_and_a_no_op_rerun(any_r, tmp_path):
    arc, original = _archived(any_r, tmp_path)
    assert arc.verify(any_r, "orders").ok
    arc.trim(any_r, "orders", before=original[1_234][0].decode())
    assert any_r.xlen("orders") == len(original) - 1_234
    assert arc.restore(any_r, "orders", "orders") == 1_234
    assert _raw(any_r, "orders") == original
    assert arc.restore(any_r, "orders", "orders") == 0
    assert arc.verify(any_r, "orders").ok


def test_refill_keeps_the_streams_ttl(r, tmp_path):
    arc, original = _archived(r, tmp_path)
    assert arc.verify(r, "orders").ok
    arc.trim(r, "orders")
    r.pexpire("orders", 600_000)
    arc.restore(r, "orders", "orders")
    assert 0 < r.pttl("orders") <= 600_000
    assert _raw(r, "orders") == original


@pytest.mark.parametrize(
    "key", ["orders", "{tenant-7}:orders", "a}b", "{}x}", "{a", "x{}y", "ev{ents}:{x}"]
)
def test_the_scratch_key_shares_the_streams_cluster_slot(key):
    scratch = scratch_key(key)
    assert scratch != key
    assert key_slot(scratch.encode()) == key_slot(key.encode())


@pytest.mark.parametrize("key", ["orders", "a}b"])
def test_refill_in_a_cluster(rc, tmp_path, key):
    _fill(rc, key, n=3_000)
    original = _raw(rc, key)
    rc.xgroup_create(key, "billing", id="0")
    rc.xreadgroup("billing", "worker-1", {key: ">"}, count=10)
    arc = ak.Archive(tmp_path / "arc", rows_per_file=500)
    arc.export(rc, key)
    assert arc.verify(rc, key).ok
    arc.trim(rc, key, allow_pending=True, allow_undelivered=True)
    assert arc.restore(rc, key, key) == 3_000
    assert _raw(rc, key) == original
    assert len(rc.xpending_range(key, "billing", "-", "+", 100)) == 10


# ---- object storage ---------------------------------------------------------------------


def test_restore_from_object_storage_checks_and_resumes(r, s3_server, bucket):
    _fill(r, n=3_000)
    original = _raw(r, "orders")
    fs = s3_server.filesystem()
    arc = ak.Archive(f"s3://{bucket}/arc", filesystem=fs, rows_per_file=500)
    arc.export(r, "orders")
    for entry_id, flat in original[:700]:  # as a killed restore leaves it
        r.execute_command("XADD", "copy", entry_id, *flat)
    assert arc.restore(r, "orders", "copy") == len(original) - 700
    assert _raw(r, "copy") == original

    damaged = arc.entries("orders")[2].file
    path = f"{bucket}/arc/{damaged}"
    with fs.open_input_stream(path) as source:
        data = bytearray(source.read())
    data[100] ^= 0x80
    with fs.open_output_stream(path) as out:
        out.write(bytes(data))
    with pytest.raises(ak.ArchiveError, match=damaged.replace(".", r"\.")):
        arc.restore(r, "orders", "copy2")
    assert not r.exists("copy2")


# ---- the command line -------------------------------------------------------------------


def test_cli_restore_into_a_new_key_then_again(r, redis_server, tmp_path, capsys):
    arc, original = _archived(r, tmp_path)
    options = ["--archive", str(arc.root), "--redis-url", redis_server.url]
    assert main(["restore", "orders", "--to", "copy", *options]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out == [
        "orders: restored 3,000 archived entries into `copy` (0 of 3,000 were there already)"
    ]
    assert _raw(r, "copy") == original
    assert main(["restore", "orders", "--to", "copy", *options]) == 0
    assert "restored 0 archived entries into `copy` (3,000 of 3,000" in capsys.readouterr().out


def test_cli_refills_the_stream_itself_by_default(r, redis_server, tmp_path, capsys):
    arc, original = _archived(r, tmp_path)
    assert arc.verify(r, "orders").ok
    arc.trim(r, "orders")
    options = ["--archive", str(arc.root), "--redis-url", redis_server.url]
    assert main(["restore", "orders", *options]) == 0
    assert "into `orders`" in capsys.readouterr().out
    assert _raw(r, "orders") == original


def test_cli_refusals_are_one_line(r, redis_server, tmp_path, capsys):
    arc, _ = _archived(r, tmp_path)
    options = ["--archive", str(arc.root), "--redis-url", redis_server.url]
    r.xadd("taken", {"a": "1"})
    assert main(["restore", "orders", "--to", "taken", *options]) == 3
    err = capsys.readouterr().err
    assert err.startswith("auditkit: error: `taken` already exists") and err.count("\n") == 1
    _flip_one_byte(Path(arc.root) / arc.entries("orders")[1].file)
    assert main(["restore", "orders", "--to", "fresh", *options]) == 3
    err = capsys.readouterr().err
    assert "does not match its SHA-256" in err and err.count("\n") == 1
    assert not r.exists("fresh")
    assert main(["restore", "payments", *options]) == 2  # a stream not archived: usage
    assert "does not hold stream `payments`" in capsys.readouterr().err


def test_cli_restore_help_shows_an_example_for_each_option(capsys):
    with pytest.raises(SystemExit):
        main(["restore", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "e.g. orders" in text and "e.g. --to orders:restored" in text
    assert "Example: auditkit restore orders --to orders:restored --archive archive/" in text
