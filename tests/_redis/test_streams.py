import pandas as pd
import pytest
import redis

import auditkit as ak


def test_streams_lists_each_stream_once(any_r):
    r = any_r
    r.xadd("orders", {"a": "1"}, id="1772323200000-0")
    r.xadd("orders", {"a": "2"}, id="1772323200500-3")
    r.xadd("payments", {"a": "1"}, id="1772323200001-0")
    r.xgroup_create("orders", "billing", id="0")
    r.set("orders:count", 2)  # not a stream: never listed
    frame = ak.streams(r)
    assert frame["key"].tolist() == ["orders", "payments"]
    orders = frame.set_index("key").loc["orders"]
    assert orders["length"] == 2
    assert orders["first_id"] == "1772323200000-0" and orders["last_id"] == "1772323200500-3"
    assert orders["first_ts"] == pd.Timestamp("2026-03-01T00:00:00Z")
    assert orders["last_ts"] == pd.Timestamp("2026-03-01T00:00:00.500Z")
    assert orders["groups"] == 1
    assert orders["memory_bytes"] > 0
    assert ak.streams(r, "pay*")["key"].tolist() == ["payments"]
    assert ak.streams(r, "nothing*").empty


@pytest.mark.redis_min("7.0")
def test_streams_reports_redis7_counters(r):
    for i in range(5):
        r.xadd("s", {"n": str(i)}, id=f"1772323200000-{i}")
    r.xdel("s", "1772323200000-1")
    r.xtrim("s", minid="1772323200000-2", approximate=False)
    row = ak.streams(r).iloc[0]
    assert row["length"] == 3
    assert row["entries_added"] == 5
    assert row["max_deleted_entry_id"] == "1772323200000-1"
    assert row["recorded_first_entry_id"] == "1772323200000-2"


def test_streams_on_redis62_has_null_counters(r62):
    r62.xadd("s", {"n": "1"})
    row = ak.streams(r62).iloc[0]
    assert row["length"] == 1
    assert pd.isna(row["entries_added"]) and row["max_deleted_entry_id"] is None


def test_an_empty_stream_is_listed(r):
    r.xadd("s", {"n": "1"}, id="1-0")
    r.xdel("s", "1-0")
    row = ak.streams(r).iloc[0]
    assert row["length"] == 0 and row["first_id"] is None and pd.isna(row["first_ts"])


def test_a_decoding_client_reads_the_same_bytes(redis_server, r):
    r.xadd("s", {"type": "T", "blob": b"\xff\x00", "payload": '{"n": 1}'}, id="1772323200000-0")
    decoding = redis.Redis(port=redis_server.port, decode_responses=True)
    table = ak.read_arrow(decoding, "s", progress=False)
    assert table.column("blob").to_pylist() == [b"\xff\x00"]
    assert table.column("payload.n").to_pylist() == [1]
    assert ak.streams(decoding)["last_id"].tolist() == ["1772323200000-0"]


def test_progress_bar_only_when_asked_or_on_a_terminal(r, capsys):
    r.xadd("s", {"type": "T", "n": "1"})
    ak.read_arrow(r, "s", envelope="flat")  # stderr is not a terminal here
    assert capsys.readouterr().err == ""
    ak.read_arrow(r, "s", envelope="flat", progress=True)
    assert "s:" in capsys.readouterr().err
