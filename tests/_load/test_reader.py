"""read_arrow / read_pandas / iter_batches against a real redis-server."""

import json
from datetime import UTC, datetime, timedelta, timezone

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import auditkit as ak
from auditkit._load.decode import BASE_COLUMNS

RAW = ak.Envelope(
    event_type=None, aggregate_id=None, schema_version=None, payload=None, occurred_at=None
)
"""An envelope that names nothing: every field stays a column under its own name."""

BASE_MS = 1_772_323_200_000  # 2026-03-01T00:00:00Z


def _xadd(r, key, fields, entry_id):
    """XADD with fields as a list of pairs (duplicates and bytes allowed)."""
    flat = [part for pair in fields for part in pair]
    return r.execute_command("XADD", key, entry_id, *flat)


def _rows_as_entries(table: pa.Table) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """Rebuild (id, {field: value}) from a table read with the RAW envelope."""
    fixed = {*BASE_COLUMNS, "payload_error"}
    out = []
    for row in table.to_pylist():
        fields = {}
        for name, value in row.items():
            if name in fixed or value is None:
                continue
            name = name.removeprefix("fields.")
            fields[name.encode()] = value if isinstance(value, bytes) else value.encode()
        out.append((row["id"].encode(), fields))
    return out


field_names = st.sampled_from(["a", "b", "type", "payload", "d\u00e9j\u00e0", "id", "ts"])
field_values = st.one_of(st.binary(max_size=12), st.text(max_size=12).map(str.encode))
entries = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=3),  # ms step: many entries share a millisecond
        st.dictionaries(field_names, field_values, min_size=1, max_size=4),
        st.booleans(),  # deleted afterwards with XDEL
    ),
    min_size=0,
    max_size=40,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(entries=entries, lo=st.integers(0, 60), hi=st.integers(0, 60), data=st.data())
def test_read_arrow_is_exactly_xrange(any_r, entries, lo, hi, data):
    r = any_r
    r.delete("s")
    ms, seq, ids = BASE_MS, 0, []
    for step, fields, _ in entries:
        ms, seq = (ms + step, 0) if step else (ms, seq + 1)
        ids.append(f"{ms}-{seq}")
        _xadd(r, "s", sorted(fields.items()), ids[-1])
    deleted = [i for i, (_, _, gone) in zip(ids, entries, strict=True) if gone]
    if deleted:
        r.xdel("s", *deleted)
    if not r.exists("s"):
        r.xadd("s", {"a": "1"}, id=f"{ms + 1}-0")
    # Bounds as IDs, bare milliseconds, or times, around (and on) the entries' IDs.
    start_ms, end_ms = BASE_MS + lo, BASE_MS + hi
    style = data.draw(st.sampled_from(["id", "ms", "time"]))
    if style == "id":
        start, end = f"{start_ms}-1", f"{end_ms}-0"
    elif style == "ms":
        start, end = str(start_ms), str(end_ms)
    else:
        start = datetime.fromtimestamp(start_ms / 1000, UTC)
        end = datetime.fromtimestamp(end_ms / 1000, UTC)
    expected = r.xrange("s", min=_redis_bound(start, "-"), max=_redis_bound(end, "+"))
    table = ak.read_arrow(r, "s", start=start, end=end, envelope=RAW, progress=False)
    assert _rows_as_entries(table) == expected


def _redis_bound(value, side):
    if isinstance(value, datetime):
        ms = int(value.timestamp() * 1000)
        return f"{ms}-0" if side == "-" else f"{ms}-18446744073709551615"
    return value


def test_pages_cover_long_streams_without_gaps_or_duplicates(r):
    pipe = r.pipeline(transaction=False)
    for i in range(12_345):
        pipe.xadd("long", {"n": str(i)}, id=f"{BASE_MS + i // 1000}-{i % 1000}")
    pipe.execute()
    table = ak.read_arrow(r, "long", envelope=RAW, progress=False)
    assert table.num_rows == 12_345
    assert table.column("n").to_pylist() == [str(i) for i in range(12_345)]
    assert table.column("id").to_pylist() == [e[0].decode() for e in r.xrange("long")]


@pytest.fixture
def boundary_stream(r):
    for entry_id in ("1772323200000-0", "1772323200000-1", "1772323200001-0", "1772323200002-5"):
        r.xadd("b", {"type": "T"}, id=entry_id)
    return r


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        # a time at a millisecond includes that millisecond, on both ends
        (
            datetime(2026, 3, 1),
            datetime(2026, 3, 1, 0, 0, 0, 1000),
            ["1772323200000-0", "1772323200000-1", "1772323200001-0"],
        ),
        # a start between two milliseconds begins at the next one
        (datetime(2026, 3, 1, 0, 0, 0, 500), None, ["1772323200001-0", "1772323200002-5"]),
        # an end between two milliseconds stops at the one before
        (
            None,
            datetime(2026, 3, 1, 0, 0, 0, 1999),
            ["1772323200000-0", "1772323200000-1", "1772323200001-0"],
        ),
        # tz-aware inputs are converted: 01:00+01:00 is 00:00Z
        (
            datetime(2026, 3, 1, 1, 0, 0, 1000, tzinfo=timezone(timedelta(hours=1))),
            None,
            ["1772323200001-0", "1772323200002-5"],
        ),
        (pd.Timestamp("2026-03-01T01:00:00.002", tz="Europe/Paris"), None, ["1772323200002-5"]),
        ("2026-03-01T00:00:00.001Z", "2026-03-01T00:00:00.001Z", ["1772323200001-0"]),
        ("2026-03-01T01:00:00.001+01:00", "2026-03-01 00:00:00.001", ["1772323200001-0"]),
        # bare milliseconds take every sequence of that millisecond
        ("1772323200000", "1772323200000", ["1772323200000-0", "1772323200000-1"]),
        ("1772323200000-1", "1772323200002-4", ["1772323200000-1", "1772323200001-0"]),
        ("-", "+", ["1772323200000-0", "1772323200000-1", "1772323200001-0", "1772323200002-5"]),
        ("2026-03-02", None, []),
    ],
)
def test_time_range_boundaries(boundary_stream, start, end, expected):
    table = ak.read_arrow(boundary_stream, "b", start=start, end=end, progress=False)
    assert table.column("id").to_pylist() == expected


def test_ts_and_seq_come_from_the_id(boundary_stream):
    table = ak.read_arrow(boundary_stream, "b", progress=False)
    assert table.schema.field("ts").type == pa.timestamp("ms", tz="UTC")
    assert table.column("ts")[3].as_py() == datetime(2026, 3, 1, 0, 0, 0, 2000, tzinfo=UTC)
    assert table.column("seq").to_pylist() == [0, 1, 0, 5]


def test_count_and_latest(boundary_stream):
    first = ak.read_arrow(boundary_stream, "b", count=2, progress=False)
    assert first.column("id").to_pylist() == ["1772323200000-0", "1772323200000-1"]
    latest = ak.read_arrow(boundary_stream, "b", count=2, reverse=True, progress=False)
    assert latest.column("id").to_pylist() == ["1772323200002-5", "1772323200001-0"]
    assert ak.read_arrow(boundary_stream, "b", count=0, progress=False).num_rows == 0


def test_several_streams_merge_in_id_order(r):
    r.xadd("orders", {"type": "OrderPlaced"}, id="1772323200000-0")
    r.xadd("orders", {"type": "OrderShipped"}, id="1772323200002-0")
    r.xadd("payments", {"type": "Paid"}, id="1772323200001-0")
    r.xadd("payments", {"type": "Refunded"}, id="1772323200002-1")
    r.hset("orders:index", "x", "1")  # matches the pattern, is not a stream
    for streams in (["orders", "payments"], "*"):
        table = ak.read_arrow(r, streams, progress=False)
        assert table.column("stream").to_pylist() == ["orders", "payments", "orders", "payments"]
        assert table.column("event_type").to_pylist() == [
            "OrderPlaced",
            "Paid",
            "OrderShipped",
            "Refunded",
        ]
    latest = ak.read_arrow(r, ["orders", "payments"], count=3, reverse=True, progress=False)
    assert latest.column("event_type").to_pylist() == ["Refunded", "OrderShipped", "Paid"]


def test_pattern_uses_scan_type_and_must_match(r):
    r.xadd("orders:1", {"a": "1"})
    r.set("orders:2", "not a stream")
    table = ak.read_arrow(r, "orders:*", envelope=RAW, progress=False)
    assert table.column("stream").to_pylist() == ["orders:1"]
    with pytest.raises(ak.StreamNotFound, match="No stream matches `invoices:\\*`"):
        ak.read_arrow(r, "invoices:*")


def test_named_streams_are_checked(r):
    r.set("counter", 1)
    with pytest.raises(ak.StreamNotFound, match="`missing`"):
        ak.read_arrow(r, "missing")
    with pytest.raises(ak.WrongKeyType, match="`counter` holds a string"):
        ak.read_arrow(r, ["counter"])
    r.xadd("s", {"a": "1"})
    with pytest.raises(ak.InvalidStreamID, match="`yesterday-ish`"):
        ak.read_arrow(r, "s", start="yesterday-ish")
    with pytest.raises(ValueError, match="count"):
        ak.read_arrow(r, "s", count=-1)


def _payload_rows(r, payloads, **kw):
    for i, payload in enumerate(payloads):
        _xadd(
            r,
            "p",
            [(b"type", b"T"), (b"aggregate_id", b"a-1"), (b"payload", payload)],
            f"{BASE_MS}-{i}",
        )
    return ak.read_arrow(r, "p", progress=False, **kw)


def test_payload_is_expanded_with_types(r):
    payloads = [
        json.dumps(
            {
                "n": 1,
                "x": 1.5,
                "ok": True,
                "who": {"name": "ann", "geo": {"lat": 1.25}},
                "tags": ["a", "b"],
                "day": "2026-03-01",
            }
        ).encode(),
        json.dumps(
            {"n": 2, "x": 2, "ok": False, "who": {"name": "bob"}, "tags": [], "day": "2026-03-02"}
        ).encode(),
    ]
    table = _payload_rows(r, payloads)
    schema = table.schema
    assert schema.field("payload.n").type == pa.int64()
    assert schema.field("payload.x").type == pa.float64()
    assert schema.field("payload.ok").type == pa.bool_()
    assert schema.field("payload.who.name").type == pa.string()
    assert schema.field("payload.who.geo.lat").type == pa.float64()
    assert pa.types.is_list(schema.field("payload.tags").type)
    assert schema.field("payload.day").type == pa.string()  # dates stay text, as written
    assert table.column("payload.tags").to_pylist() == [["a", "b"], []]
    assert table.column("payload.who.geo.lat").to_pylist() == [1.25, None]
    assert table.column("payload.day").to_pylist() == ["2026-03-01", "2026-03-02"]
    assert table.column("payload_error").null_count == 2


def test_bad_payloads_keep_their_rows(r):
    payloads = [
        b'{"amount": 10}',
        b"not json",
        b"[1, 2]",
        b"",
        b"\xff\xfe{}",
        b'{\n  "amount": 20\n}',  # pretty-printed: valid
        b'{"amount": 30, "amount": 31}',  # duplicate key: valid, last wins
        b'{"amount": 40}',
    ]
    # Half of them do not decode: a read says so once, rather than return the half...
    with pytest.raises(ak.EnvelopeMismatch, match=r"decodes in 4 of 8 entries read \(50%\)"):
        _payload_rows(r, payloads)
    # ... and with the check off, every row is there, each problem named.
    table = ak.read_arrow(r, "p", progress=False, envelope=ak.Envelope(min_match=0))
    assert table.num_rows == len(payloads)
    assert table.column("payload.amount").to_pylist() == [10, None, None, None, None, 20, 31, 40]
    errors = table.column("payload_error").to_pylist()
    assert errors[0] is None and errors[5] is None and errors[6] is None and errors[7] is None
    assert "not valid JSON" in errors[1] and "'not json'" in errors[1]
    assert "JSON list, not an object" in errors[2]
    assert "not valid JSON" in errors[3]
    assert "not UTF-8" in errors[4]
    assert table.column("aggregate_id").to_pylist() == ["a-1"] * len(payloads)


def test_conflicting_payload_types_become_text(r):
    table = _payload_rows(r, [b'{"v": 1}', b'{"v": "one"}', b'{"v": 2.5}'])
    assert table.column("payload.v").to_pylist() == ["1", "one", "2.5"]
    # ... and the column says so, for readers that need the values as written
    assert table.schema.field("payload.v").metadata == {b"auditkit.mixed_types": b"1"}
    assert table.schema.field("payload_error").metadata is None


def test_a_payload_type_change_between_pages_is_unified(r):
    pipe = r.pipeline(transaction=False)
    for i in range(12_000):
        value = i if i < 6_000 else i + 0.5
        pipe.xadd("p", {"payload": json.dumps({"v": value})}, id=f"{BASE_MS + i}-0")
    pipe.execute()
    table = ak.read_arrow(r, "p", progress=False, envelope=ak.Envelope(event_type=None))
    assert table.schema.field("payload.v").type == pa.float64()
    values = table.column("payload.v").to_pylist()
    assert values[0] == 0.0 and values[-1] == 11_999.5


def test_binary_fields_are_kept_as_bytes(r):
    _xadd(r, "bin", [(b"blob", b"\x00\xff\x10"), (b"text", "caf\u00e9".encode())], f"{BASE_MS}-0")
    _xadd(r, "bin", [(b"blob", b"plain"), (b"\xffname", b"v")], f"{BASE_MS}-1")
    table = ak.read_arrow(r, "bin", envelope=RAW, progress=False)
    assert table.schema.field("blob").type == pa.binary()
    assert table.column("blob").to_pylist() == [b"\x00\xff\x10", b"plain"]
    assert table.column("text").to_pylist() == ["caf\u00e9", None]
    assert table.column("\\xffname").to_pylist() == [None, "v"]


def test_different_field_sets_and_duplicate_fields(r):
    _xadd(r, "mixed", [(b"a", b"1"), (b"b", b"2")], f"{BASE_MS}-0")
    _xadd(r, "mixed", [(b"b", b"3"), (b"c", b"4")], f"{BASE_MS}-1")
    _xadd(r, "mixed", [(b"a", b"5"), (b"a", b"6")], f"{BASE_MS}-2")
    table = ak.read_arrow(r, "mixed", envelope=RAW, progress=False)
    assert table.column("a").to_pylist() == ["1", None, "5"]
    assert table.column("b").to_pylist() == ["2", "3", None]
    assert table.column("c").to_pylist() == [None, "4", None]
    assert table.column("a#2").to_pylist() == [None, None, "6"]


def test_envelope_columns(r):
    r.xadd(
        "account:42",
        {
            "kind": "Deposited",
            "v": "3",
            "at": "2026-03-01T10:00:00+02:00",
            "producer": "svc",
            "body": '{"amount": 5}',
        },
        id=f"{BASE_MS}-0",
    )
    r.xadd(
        "account:42",
        {
            "kind": "Withdrawn",
            "v": "3",
            "at": "1772359200000",
            "producer": "svc",
            "body": '{"amount": 2}',
        },
        id=f"{BASE_MS}-1",
    )
    envelope = ak.Envelope(
        event_type="kind",
        aggregate_id=None,
        schema_version="v",
        payload="body",
        occurred_at="at",
        aggregate_id_from_key=r"account:(.+)",
    )
    table = ak.read_arrow(r, "account:42", envelope=envelope, progress=False)
    assert table.column_names[:8] == [
        "stream",
        "id",
        "ts",
        "seq",
        "event_type",
        "aggregate_id",
        "schema_version",
        "occurred_at",
    ]
    assert table.column("event_type").to_pylist() == ["Deposited", "Withdrawn"]
    assert table.column("aggregate_id").to_pylist() == ["42", "42"]
    assert table.column("schema_version").to_pylist() == [3, 3]
    assert table.column("occurred_at").to_pylist() == [
        datetime(2026, 3, 1, 8, 0, tzinfo=UTC),
        datetime(2026, 3, 1, 10, 0, tzinfo=UTC),
    ]
    assert table.column("producer").to_pylist() == ["svc", "svc"]
    assert table.column("payload.amount").to_pylist() == [5, 2]


def test_envelope_rejects_nonsense():
    with pytest.raises(ValueError, match="twice"):
        ak.Envelope(event_type="x", payload="x")
    with pytest.raises(ValueError, match="group"):
        ak.Envelope(aggregate_id_from_key="account:.+")


def test_read_pandas_keeps_integers_integers(r):
    table = _payload_rows(r, [b'{"n": 1, "ok": true}', b'{"x": 1}'])
    frame = ak.read_pandas(r, "p", progress=False)
    assert len(frame) == table.num_rows
    assert str(frame["payload.n"].dtype) == "Int64"
    assert frame["payload.n"].tolist()[0] == 1 and frame["payload.n"].isna().tolist() == [
        False,
        True,
    ]
    assert str(frame["payload.ok"].dtype) == "boolean"
    assert str(frame["ts"].dtype) == "datetime64[ms, UTC]"


def test_iter_batches_bounded_and_complete(r):
    pipe = r.pipeline(transaction=False)
    for i in range(12_000):
        pipe.xadd("a:1", {"n": str(i)}, id=f"{BASE_MS + i}-0")
    for i in range(10):
        pipe.xadd("a:2", {"n": str(i)}, id=f"{BASE_MS + i}-1")
    pipe.execute()
    batches = list(ak.iter_batches(r, "a:*", batch_size=5_000, envelope=RAW, progress=False))
    assert [b.num_rows for b in batches] == [5_000, 5_000, 2_000, 10]
    assert all(isinstance(b, pa.RecordBatch) for b in batches)
    assert [b.column(0)[0].as_py() for b in batches] == ["a:1", "a:1", "a:1", "a:2"]
    numbers = [int(v) for b in batches[:3] for v in b.column("n").to_pylist()]
    assert numbers == list(range(12_000))
    with pytest.raises(ValueError, match="batch_size"):
        next(ak.iter_batches(r, "a:1", batch_size=0))


def test_empty_range_has_the_base_columns(r):
    r.xadd("s", {"a": "1"}, id=f"{BASE_MS}-0")
    table = ak.read_arrow(r, "s", start=f"{BASE_MS + 5}", progress=False)
    assert table.num_rows == 0
    assert table.column_names[:4] == ["stream", "id", "ts", "seq"]


def test_a_connection_drop_mid_read_is_retried(start_redis):
    server = start_redis()
    client = ak.connect(server.url)
    pipe = client.pipeline(transaction=False)
    for i in range(60_000):
        pipe.xadd("s", {"n": str(i)}, id=f"{BASE_MS + i}-0")
    pipe.execute()
    seen = 0
    for batch in ak.iter_batches(client, "s", batch_size=5_000, envelope=RAW, progress=False):
        seen += batch.num_rows
        if seen == 5_000:
            killed = client.client_kill_filter(_type="normal", skipme=True)
            assert killed >= 1  # the page connection, mid-read
    assert seen == 60_000


def test_a_field_whose_type_alternates_reads_fast_and_marked(r):
    # A number in one event, text in the next, all through the page: the bulk reader
    # cannot type it; the column becomes text, marked, and the page is not read row by row.
    pipe = r.pipeline(transaction=False)
    for i in range(20_000):
        value = i if i % 2 else f"t{i}"
        payload = json.dumps({"v": value, "n": i, "o": {"a": i} if i % 3 else i})
        pipe.xadd("p", {"type": "T", "payload": payload}, id=f"{BASE_MS + i}-0")
    pipe.execute()
    table = ak.read_arrow(r, "p", progress=False)
    assert table.column("payload.v").to_pylist()[:4] == ["t0", "1", "t2", "3"]
    assert table.schema.field("payload.v").metadata == {b"auditkit.mixed_types": b"1"}
    assert table.column("payload.n").to_pylist() == list(range(20_000))
    # `o` is an object in some events and a number in others: one column of text, not an
    # object's field beside a column that silently lacks those events
    assert table.column("payload.o").to_pylist()[:4] == ["0", '{"a": 1}', '{"a": 2}', "3"]
    assert "payload.o.a" not in table.column_names
    assert table.column("payload.v").num_chunks < 100  # one piece per page, not per row


def test_a_reader_given_an_archive_says_how_to_read_one(tmp_path):
    import auditkit as ak

    with pytest.raises(
        TypeError, match=r"got Archive\. For an Archive's events: archive\.events_table"
    ):
        ak.read_pandas(ak.Archive(tmp_path), "fines")
