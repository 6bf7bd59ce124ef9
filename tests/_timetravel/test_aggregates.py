"""One aggregate: ids with no event at all, events that all come later, and binary ids."""

import json
from datetime import UTC, datetime

import pandas as pd
import pyarrow as pa
import pytest

import auditkit as ak

BASE_MS = 1_772_323_200_000  # 2026-03-01T00:00:00Z
INITIAL = {"total": 0}


def add(state, event):
    return {"total": state["total"] + event["payload"]["n"]}


ADDER = ak.Projection(INITIAL, {"Add": add})


def write(r, events, stream="s"):
    """Events as (aggregate id, type, n), one second apart."""
    pipe = r.pipeline(transaction=False)
    for k, (aggregate, event_type, n) in enumerate(events):
        fields = {
            "type": event_type,
            "aggregate_id": aggregate,
            "payload": json.dumps({"n": n}),
            "occurred_at": datetime.fromtimestamp(BASE_MS / 1000 + k, UTC).isoformat(),
        }
        pipe.xadd(stream, fields, id=f"{BASE_MS + 1000 * k}-0")
    pipe.execute()


ACCOUNTS = [("acct-00007", "Add", 5), ("acct-00070", "Add", 1), ("acct-00700", "Add", 2)]
ACCOUNTS += [("zebra", "Add", 3)]


@pytest.mark.parametrize("kind", ["redis", "table", "frame"])
def test_an_id_without_events_is_refused_naming_the_closest(r, kind):
    write(r, ACCOUNTS)
    source = {
        "redis": (r, "s"),
        "table": ak.read_arrow(r, "s"),
        "frame": ak.read_pandas(r, "s"),
    }[kind]
    for call in (
        lambda: ADDER.state_at(source, "acct-0007"),
        lambda: ADDER.state_at(source, "acct-0007", at=f"{BASE_MS}-0"),
        lambda: ADDER.history(source, "acct-0007"),
    ):
        with pytest.raises(KeyError) as raised:  # callers who know only the builtin
            call()
        error = raised.value
        assert isinstance(error, ak.AggregateNotFound) and isinstance(error, ak.ProjectionError)
        assert error.aggregate_id == "acct-0007"
        assert error.close_matches == ["acct-00007", "acct-00070", "acct-00700"]
        # KeyError would quote its message; ours reads as a sentence.
        assert str(error).startswith("No event of aggregate `acct-0007` in ")
        assert "The closest ids: `acct-00007`, `acct-00070`, `acct-00700`." in str(error)
        assert "missing='initial'" in str(error)
    assert ADDER.state_at(source, "acct-0007", missing="initial") == INITIAL
    assert ADDER.history(source, "acct-0007", missing="initial").empty
    with pytest.raises(ak.AggregateNotFound, match="No id there is close to it \\(4 aggregates\\)"):
        ADDER.state_at(source, "nobody")
    # Case slips are the likeliest of all.
    with pytest.raises(ak.AggregateNotFound, match="closest ids: `zebra`"):
        ADDER.state_at(source, "ZEBRA")


def test_among_many_ids_a_slip_at_either_end_is_found():
    """Beyond tens of thousands of ids only the neighbours are scored: still the right one."""
    n = 60_000
    ids = [f"cust-{k:06d}-eu" for k in range(n)]
    table = pa.table(
        {
            "id": [f"{BASE_MS + k}-0" for k in range(n)],
            "ts": pa.array([BASE_MS + k for k in range(n)], pa.timestamp("ms", "UTC")),
            "seq": pa.array([0] * n, pa.uint64()),
            "event_type": ["Add"] * n,
            "aggregate_id": ids,
            "schema_version": [1] * n,
            "payload.n": [1] * n,
        }
    )
    for slip, meant in [("cust-031415-e", "cust-031415-eu"), ("kust-031415-eu", "cust-031415-eu")]:
        with pytest.raises(ak.AggregateNotFound) as raised:
            ADDER.state_at(table, slip)
        assert raised.value.close_matches[0] == meant, slip


def test_an_empty_stream_says_it_holds_no_aggregate(r):
    r.xadd("s", {"type": "Add", "aggregate_id": "a", "payload": "{}"}, id="1-0")
    r.xtrim("s", maxlen=0)
    with pytest.raises(ak.AggregateNotFound, match="It holds no aggregate at all"):
        ADDER.state_at((r, "s"), "a")


def test_an_aggregate_whose_events_all_come_later_existed(r):
    write(r, [("early", "Add", 1), ("late", "Add", 10), ("late", "Add", 20)])
    table = ak.read_arrow(r, "s")
    before_late = f"{BASE_MS}-0"
    for source in ((r, "s"), table):
        assert ADDER.state_at(source, "late", at=before_late) == INITIAL
        assert ADDER.history(source, "late", at=before_late).empty
        assert ADDER.state_at(source, "late") == {"total": 30}
        one_second_in = datetime.fromtimestamp(BASE_MS / 1000, UTC)
        assert ADDER.state_at(source, "late", at=one_second_in, clock="effective") == INITIAL
        assert ADDER.history(source, "late", at=one_second_in, clock="effective").empty


def test_an_aggregate_with_unhandled_events_only_exists(r, tmp_path):
    write(r, [("quiet", "Noise", 0), ("busy", "Add", 1), ("busy", "Add", 2)])
    assert ADDER.state_at((r, "s"), "quiet") == INITIAL
    assert ADDER.history((r, "s"), "quiet").empty
    # After a snapshot that holds no state for it, the events before the cut still count.
    ADDER.snapshot((r, "s"), at=f"{BASE_MS + 1000}-0", path=tmp_path)
    assert ADDER.state_at((r, "s"), "quiet", snapshots=tmp_path) == INITIAL
    with pytest.raises(ak.AggregateNotFound, match="`quiet`"):
        ADDER.state_at((r, "s"), "quite", snapshots=tmp_path)


def test_an_id_without_events_is_named_even_when_ids_cannot_be_listed(redis_server, r):
    write(r, [("", "Add", 1)], stream="account:1")
    # May read any account's stream, but not SCAN for the others.
    r.acl_setuser(
        "noscan",
        enabled=True,
        passwords=["+pw"],
        keys=["account:*"],
        commands=["+type", "+exists", "+xrange", "+xlen", "+ping", "+hello", "+auth"],
    )
    try:
        client = ak.connect(f"redis://noscan:pw@127.0.0.1:{redis_server.port}/0")
        projection = ak.Projection(INITIAL, {"Add": add}, envelope=ak.Envelope(aggregate_id=None))
        assert projection.state_at((client, "account:{aggregate_id}"), "1") == {"total": 1}
        with pytest.raises(ak.AggregateNotFound) as raised:
            projection.state_at((client, "account:{aggregate_id}"), "11")
        assert raised.value.close_matches == []
        assert "closest" not in str(raised.value) and "Check the id" in str(raised.value)
    finally:
        r.acl_deluser("noscan")


def test_missing_is_checked_before_any_read():
    with pytest.raises(ValueError, match="missing must be"):
        ADDER.state_at(("not", "a source"), "a", missing="skip")
    with pytest.raises(ValueError, match="missing must be"):
        ADDER.history(("not", "a source"), "a", missing=None)


# ---- ids that are not UTF-8: the column is binary ------------------------------------------


NOT_UTF8 = b"\xff\xfeacct"


def _binary_ids(r):
    for k, (aggregate, n) in enumerate([(NOT_UTF8, 1), (b"acct-1", 5), (b"acct-1", 7)]):
        fields = {"type": "Add", "aggregate_id": aggregate, "payload": json.dumps({"n": n})}
        r.xadd("b", fields, id=f"{BASE_MS + k}-0")


def test_binary_ids_match_as_text_or_bytes(r, tmp_path):
    _binary_ids(r)
    table = ak.read_arrow(r, "b")
    assert table.schema.field("aggregate_id").type == "binary"
    for source in ((r, "b"), table, ak.read_pandas(r, "b")):
        for spelling in ("acct-1", b"acct-1", bytearray(b"acct-1")):
            assert ADDER.state_at(source, spelling) == {"total": 12}
            assert ADDER.history(source, spelling)["total"].tolist() == [5, 12]
        assert ADDER.state_at(source, NOT_UTF8) == {"total": 1}
        with pytest.raises(ak.AggregateNotFound, match="closest ids: `acct-1`") as raised:
            ADDER.state_at(source, "acct-2")
        assert raised.value.close_matches == [b"acct-1"]
    # Both engines give bytes ids (DuckDB's bytearray would not equal them in a join).
    declarative = ak.Projection.declarative(sum={"total": {"Add": "payload.n"}})
    for projection in (ADDER, declarative):
        frame = projection.states_at(table)
        assert frame["aggregate_id"].tolist() == [b"acct-1", NOT_UTF8]
        assert frame["total"].tolist() == [12, 1]


def test_snapshots_keep_binary_ids(r, tmp_path):
    _binary_ids(r)
    ADDER.snapshot((r, "b"), at=f"{BASE_MS + 1}-0", path=tmp_path)
    assert ADDER.state_at((r, "b"), "acct-1", snapshots=tmp_path) == {"total": 12}
    assert ADDER.state_at((r, "b"), NOT_UTF8, snapshots=tmp_path) == {"total": 1}
    pd.testing.assert_frame_equal(
        ADDER.states_at((r, "b"), snapshots=tmp_path), ADDER.states_at((r, "b"))
    )


def test_a_snapshot_from_text_ids_applies_once_the_ids_turn_binary(r, tmp_path):
    write(r, [("acct-1", "Add", 5)], stream="b")
    ADDER.snapshot((r, "b"), path=tmp_path)
    # A producer now writes an id that is not UTF-8: the whole column loads as bytes.
    r.xadd("b", {"type": "Add", "aggregate_id": NOT_UTF8, "payload": '{"n": 1}'})
    r.xadd("b", {"type": "Add", "aggregate_id": "acct-1", "payload": '{"n": 7}'})
    assert ADDER.state_at((r, "b"), "acct-1", snapshots=tmp_path) == {"total": 12}
    from_snapshot = ADDER.states_at((r, "b"), snapshots=tmp_path)
    assert from_snapshot["aggregate_id"].tolist() == [b"acct-1", NOT_UTF8]
    pd.testing.assert_frame_equal(from_snapshot, ADDER.states_at((r, "b")))


def test_an_id_that_is_not_utf8_cannot_name_a_stream(r):
    with pytest.raises(TypeError, match="not UTF-8, so it cannot name a stream"):
        ADDER.state_at((r, "account:{aggregate_id}"), NOT_UTF8)
