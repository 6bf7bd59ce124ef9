"""Samples and seed(): a stream's entries and consumer-group state survive the round trip
sample -> file -> seed, so every audit finding of the original is reproduced."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import auditkit as ak
from auditkit.testing import Sample, read_sample, seed, write_sample
from auditkit.testing._idle import crc64, set_consumer_idle

BASE = 1_780_000_000_000
MINUTE = 60_000
HOUR = 60 * MINUTE
SAME = ["check", "severity", "stream", "id", "aggregate_id"]
DURABILITY = {"no-persistence", "aof-off", "appendfsync-no", "evicting-policy", "replica"}


def _incident(r, stream="jobs"):
    """A flat-field layout (no payload): the type and the job id are fields of their own.
    Groups with poison, stale and trimmed pending entries, lag, and trimmed history."""
    for n in range(1, 61):
        fields = {"kind": "resize" if n % 7 else "transcode", "job": f"job-{n % 9}", "n": str(n)}
        if n == 13:
            fields["blob"] = b"\xff\xfe\x00not utf-8"
        r.xadd(stream, fields, id=f"{BASE + n}-{n % 3}")
    r.xgroup_create(stream, "workers", id="0")
    r.xreadgroup("workers", "w1", {stream: ">"}, count=40)
    r.xack(stream, "workers", *[f"{BASE + n}-{n % 3}" for n in range(6, 40) if n not in (21, 28)])
    for _ in range(7):  # poison: delivered 8 times
        r.xclaim(stream, "workers", "w2", 0, [f"{BASE + 21}-0"])
    r.xclaim(stream, "workers", "w3", 0, [f"{BASE + 28}-1"], idle=50 * MINUTE)  # stale
    r.xtrim(stream, minid=f"{BASE + 4}-0", approximate=False)  # 1..3 pending, now trimmed
    r.xgroup_create(stream, "auditors", id=f"{BASE + 50}-2")  # lag Redis cannot count
    r.xgroup_createconsumer(stream, "auditors", "never-read")
    # A worker gone for hours: no command makes a consumer idle, the DUMP patch does.
    assert set_consumer_idle(r, stream, {"workers": {"w1": 3 * HOUR}, "auditors": {}})
    return stream


def _envelope():
    return ak.Envelope(event_type="kind", aggregate_id="job", payload=None, decoder="flat")


def _findings(client, stream):
    found = ak.audit(client, stream, envelope=_envelope(), poison_after=5)
    return found[~found["check"].isin(DURABILITY)].reset_index(drop=True)


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_a_seeded_sample_gives_the_original_findings(r, auditkit_redis, tmp_path, suffix):
    stream = _incident(r)
    original = _findings(r, stream)
    assert {
        "poison-message",
        "pending-stale",
        "pending-trimmed",
        "group-lag",
        "consumer-idle",
    } <= set(original["check"])
    assert "trimmed-not-archived" in set(original["check"])
    path = tmp_path / f"jobs{suffix}"
    write_sample(r, stream, path)
    assert seed(auditkit_redis, stream, path) == r.xlen(stream)
    seeded = _findings(auditkit_redis, stream)
    pd.testing.assert_frame_equal(seeded[SAME], original[SAME])
    # Durations and counts in the details too (the stale entry's minutes included).
    assert seeded["detail"].tolist() == original["detail"].tolist()
    assert auditkit_redis.xrange(stream) == r.xrange(stream)
    for key in ("length", "last-generated-id", "entries-added", "max-deleted-entry-id"):
        assert auditkit_redis.xinfo_stream(stream)[key] == r.xinfo_stream(stream)[key], key


def test_the_durable_server_adds_no_durability_finding(r, auditkit_redis, tmp_path):
    stream = _incident(r)
    write_sample(r, stream, tmp_path / "jobs.jsonl")
    seed(auditkit_redis, stream, tmp_path / "jobs.jsonl")
    assert "no-persistence" in set(ak.audit(r, stream, envelope=_envelope())["check"])
    checks = set(ak.audit(auditkit_redis, stream, envelope=_envelope())["check"])
    assert not checks & DURABILITY


def test_a_sample_cut_short_keeps_lag_and_pending(r, auditkit_redis, tmp_path):
    stream = _incident(r)
    original = _findings(r, stream)
    sample = write_sample(r, stream, tmp_path / "short.jsonl", count=5)
    # The 5 latest, plus every pending message that still exists (poison and stale too).
    latest = {e[0].decode() for e in r.xrevrange(stream, count=5)}
    pending = {p["message_id"].decode() for p in r.xpending_range(stream, "workers", "-", "+", 99)}
    held = {e[0].decode() for e in r.xrange(stream)}
    assert {i for i, _ in sample.entries} == latest | (pending & held)
    assert len(sample.entries) < r.xlen(stream)
    seed(auditkit_redis, stream, tmp_path / "short.jsonl")
    seeded = _findings(auditkit_redis, stream)
    pd.testing.assert_frame_equal(seeded[SAME], original[SAME])


def test_seeding_on_redis_6_2_reproduces_the_findings(r62, tmp_path):
    stream = _incident(r62)
    original = _findings(r62, stream)
    assert "poison-message" in set(original["check"])
    write_sample(r62, stream, tmp_path / "jobs.jsonl")
    r62.flushall()
    seed(r62, stream, tmp_path / "jobs.jsonl")
    pd.testing.assert_frame_equal(_findings(r62, stream)[SAME], original[SAME])


def test_a_sample_file_is_readable_json_lines(r, tmp_path):
    stream = _incident(r)
    path = tmp_path / "jobs.jsonl"
    write_sample(r, stream, path)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0]["format"] == "auditkit-sample/1" and lines[0]["stream"] == "jobs"
    entries = [line for line in lines if "fields" in line]
    assert len(entries) == r.xlen(stream)
    blob = next(e for e in entries if e["id"] == f"{BASE + 13}-1")
    assert ["blob", {"base64": "//4Abm90IHV0Zi04"}] in blob["fields"]
    pending = [line for line in lines if "pending" in line]
    poison = next(p for p in pending if p["pending"] == f"{BASE + 21}-0")
    assert (poison["consumer"], poison["deliveries"]) == ("w2", 8)
    assert {g["group"] for g in lines if "last_delivered_id" in g} == {"workers", "auditors"}


def test_privacy_rules_apply_to_the_sample(auditkit_redis, tmp_path):
    payload = {"amount": 5, "customer": {"email": "ann@example.com", "id": "c-1"}}
    for _ in range(3):
        auditkit_redis.xadd(
            "orders", {"type": "Placed", "ip": "10.0.0.7", "payload": json.dumps(payload)}
        )
    path = tmp_path / "orders.jsonl"
    sample = write_sample(
        auditkit_redis,
        "orders",
        path,
        drop=["ip"],
        pseudonymize=["payload.customer.email"],
        key="test-key-not-a-secret",
    )
    text = path.read_text()
    assert "ann@example.com" not in text and "10.0.0.7" not in text
    assert "test-key-not-a-secret" not in text
    assert "hmac:" in text and "c-1" in text
    assert read_sample(path).privacy == sample.privacy
    assert sample.privacy is not None and sample.privacy["drop"] == ["ip"]


def test_seed_from_a_dataframe(auditkit_redis):
    frame = pd.DataFrame(
        {
            "id": ["5-0", "5-1", "9-0"],
            "type": ["Placed", "Paid", "Placed"],
            "payload": [{"amount": 5}, None, {"amount": 7}],
            "raw": [b"\x00\xff", b"x", None],
        }
    )
    assert seed(auditkit_redis, "orders", frame) == 3
    entries = auditkit_redis.xrange("orders")
    assert [e[0] for e in entries] == [b"5-0", b"5-1", b"9-0"]
    assert entries[0][1] == {b"type": b"Placed", b"payload": b'{"amount":5}', b"raw": b"\x00\xff"}
    assert entries[1][1] == {b"type": b"Paid", b"raw": b"x"}  # nulls leave the field out
    table = ak.read_pandas(auditkit_redis, "orders")
    assert table["payload.amount"].tolist()[::2] == [5, 7]


def test_seed_from_a_dataframe_without_ids_lets_redis_number_them(auditkit_redis):
    seed(auditkit_redis, "log", pd.DataFrame({"type": ["a", "b"], "n": [1, 2]}))
    assert [e[1][b"n"] for e in auditkit_redis.xrange("log")] == [b"1", b"2"]


def test_seed_from_an_archive(r, auditkit_redis, tmp_path):
    stream = _incident(r)
    archive = ak.Archive(tmp_path / "archive", envelope=_envelope())
    archive.export(r, stream)
    assert seed(auditkit_redis, "restored", (archive, stream)) == r.xlen(stream)
    assert auditkit_redis.xrange("restored") == r.xrange(stream)
    assert seed(auditkit_redis, stream, archive) == r.xlen(stream)  # same name by default
    assert auditkit_redis.xrange(stream) == r.xrange(stream)


def test_seed_from_parquet_files_that_are_not_samples(r, auditkit_redis, tmp_path):
    frame = pd.DataFrame({"id": ["3-0", "4-0"], "type": ["a", "b"], "n": [1, None]})
    frame.to_parquet(tmp_path / "events.parquet")
    assert seed(auditkit_redis, "events", tmp_path / "events.parquet") == 2
    assert auditkit_redis.xrange("events") == [
        (b"3-0", {b"type": b"a", b"n": b"1.0"}),
        (b"4-0", {b"type": b"b"}),
    ]
    # One file of an archive: its entries, byte-exact.
    stream = _incident(r)
    archive = ak.Archive(tmp_path / "archive", envelope=_envelope())
    archive.export(r, stream)
    (entry,) = archive.entries(stream)
    seed(auditkit_redis, "from-file", tmp_path / "archive" / entry.file)
    assert auditkit_redis.xrange("from-file") == r.xrange(stream)


def test_seed_refuses_an_existing_stream(auditkit_redis, tmp_path):
    auditkit_redis.xadd("orders", {"type": "Placed"})
    with pytest.raises(ak.TargetExists, match="`orders` exists"):
        seed(auditkit_redis, "orders", pd.DataFrame({"type": ["x"]}))
    assert auditkit_redis.xlen("orders") == 1


def test_a_file_that_is_not_a_sample_is_refused(auditkit_redis, tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text('{"id": "1-0"}\n')
    with pytest.raises(ValueError, match="not an auditkit sample"):
        seed(auditkit_redis, "orders", path)
    with pytest.raises(FileNotFoundError, match="No sample file"):
        seed(auditkit_redis, "orders", tmp_path / "missing.jsonl")
    assert not auditkit_redis.exists("orders")


_BYTES = st.binary(min_size=0, max_size=24)
_ENTRIES = st.lists(
    st.lists(st.tuples(st.binary(min_size=1, max_size=8), _BYTES), min_size=1, max_size=4),
    min_size=1,
    max_size=12,
)


@given(entries=_ENTRIES, parquet=st.booleans())
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_entries_round_trip_byte_exact(auditkit_redis, tmp_path, entries, parquet):
    auditkit_redis.flushall()
    for n, pairs in enumerate(entries, 1):
        flat = [part for pair in pairs for part in pair]
        auditkit_redis.execute_command("XADD", "s", f"{n}-{n}", *flat)
    original = auditkit_redis.xrange("s")
    path = tmp_path / ("s.parquet" if parquet else "s.jsonl")
    written = write_sample(auditkit_redis, "s", path)
    assert isinstance(written, Sample)
    read = read_sample(path)
    assert read.entries == written.entries
    auditkit_redis.flushall()
    seed(auditkit_redis, "s", path)
    assert auditkit_redis.xrange("s") == original


def test_the_dump_patch_changes_only_the_consumers_idle_times(any_r):
    assert crc64(b"123456789") == 0xE9C6D914C4B8D9CA  # Redis's own check value
    for n in range(300):  # several listpacks, compressed
        any_r.xadd("s", {"payload": "x" * 40, "n": str(n)})
    any_r.xgroup_create("s", "g", id="0")
    any_r.xreadgroup("g", "c1", {"s": ">"}, count=7)
    any_r.xreadgroup("g", "c2", {"s": ">"}, count=3)
    any_r.xgroup_create("s", "h", id="0")
    any_r.xgroup_createconsumer("s", "h", "c1")
    long = "payments-worker-" + "a" * 40  # a name long enough for Redis to compress
    any_r.xgroup_createconsumer("s", "h", long)

    def state():
        pending = any_r.xpending_range("s", "g", "-", "+", 99)
        return any_r.xrange("s"), any_r.xinfo_groups("s"), pending

    before = state()
    wanted = {"g": {"c2": 5 * HOUR}, "h": {"c1": 2 * HOUR, long: 4 * HOUR}}
    assert set_consumer_idle(any_r, "s", wanted)
    idle = {
        (group, c["name"].decode()): c["idle"]
        for group in ("g", "h")
        for c in any_r.xinfo_consumers("s", group)
    }
    assert 5 * HOUR <= idle[("g", "c2")] < 5 * HOUR + MINUTE
    assert 2 * HOUR <= idle[("h", "c1")] < 2 * HOUR + MINUTE
    assert 4 * HOUR <= idle[("h", long)] < 4 * HOUR + MINUTE
    assert idle[("g", "c1")] < MINUTE
    after = state()
    assert after[0] == before[0] and after[1] == before[1]
    assert [(p["message_id"], p["consumer"], p["times_delivered"]) for p in after[2]] == [
        (p["message_id"], p["consumer"], p["times_delivered"]) for p in before[2]
    ]
