"""Envelopes as data, the decoders, the match check and inspect, on real redis-server streams."""

from __future__ import annotations

import json

import msgpack
import pyarrow as pa
import pytest
from _wire import faststream_frame as frame
from hypothesis import given, settings
from hypothesis import strategies as st

import auditkit as ak
from auditkit._load.decoders import faststream_frame, type_flat

BASE_MS = 1772323200000  # 2026-03-01T00:00:00Z


# ---- as data -----------------------------------------------------------------------------


def test_every_form_gives_the_same_envelope(tmp_path):
    data = {
        "event_type": ["type", "payload.kind", {"key": "orders:(.+)"}],
        "aggregate_id": {"field": "order", "required": False},
        "schema_version": None,
        "payload": "body",
        "decoder": "msgpack",
    }
    envelope = ak.Envelope(**data)
    path = tmp_path / "orders.toml"
    path.write_text(envelope.to_toml())
    assert ak.Envelope.of(data) == envelope
    assert ak.Envelope.of(str(path)) == envelope
    assert ak.Envelope.of(path) == envelope
    assert ak.Envelope.of(envelope) is envelope
    assert hash(ak.Envelope.of(data)) == hash(envelope)
    assert ak.Envelope.of(None) == ak.Envelope() == ak.Envelope.of("default")
    # under [envelope], as in a larger file
    wrapped = tmp_path / "wrapped.toml"
    wrapped.write_text("[envelope]\npreset = 'bullmq'\n")
    assert ak.Envelope.of(wrapped) == ak.Envelope.preset("bullmq")


_DEFAULT_FIELDS = {"payload", "aggregate_id", "schema_version", "occurred_at"}


def test_default_fields_are_the_ones_the_round_trip_avoids():
    default = ak.Envelope()
    named = {default.payload} | {
        s.name for c in default.concepts.values() for s in c.sources if s.kind == "field"
    }
    assert named - {"type"} == _DEFAULT_FIELDS
    with pytest.raises(ValueError, match="`payload` twice"):
        ak.Envelope(event_type=["payload", "payload.a.b"])


@settings(max_examples=60, deadline=None)
@given(
    name=st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1).filter(
        # a field another concept of the default envelope reads is refused as named twice
        lambda s: not s.startswith("payload.") and s not in _DEFAULT_FIELDS
    ),
    pattern=st.sampled_from([r"acct:(.+)", r"(?P<id>\d+)$", r"x'y\"z"]),
    min_match=st.floats(0, 1),
)
def test_toml_round_trips(name, pattern, min_match):
    envelope = ak.Envelope(
        event_type=[name, "payload.a.b"], occurred_at={"key": pattern}, min_match=min_match
    )
    import tomllib

    assert ak.Envelope.from_dict(tomllib.loads(envelope.to_toml())) == envelope


def test_presets_and_their_promises():
    assert set(ak.Envelope.preset("default").to_dict()) == set()
    flat = ak.Envelope.preset("flat")
    assert flat.decoder == "flat" and flat.payload is None
    bullmq = ak.Envelope.preset("bullmq")
    assert bullmq.concepts["event_type"].describe() == "field `event`"
    assert bullmq.concepts["aggregate_id"].required is False  # `drained` has no jobId
    faststream = ak.Envelope.preset("faststream")
    assert (faststream.payload, faststream.decoder) == ("__data__", "faststream")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nonesuch", "neither a preset"),
        ({"event_type": "x", "payload": "x"}, "twice"),
        ({"evnt_type": "x"}, "unknown envelope key `evnt_type`"),
        ({"decoder": "yaml"}, "decoder `yaml` is not one of"),
        ({"decoder": "flat", "payload": "body"}, "flat decoder"),
        ({"event_type": {"key": "("}}, "not a regular expression"),
        ({"event_type": {"field": "a", "path": "b"}}, "exactly one of"),
        ({"payload": None, "event_type": "payload.kind"}, "names no payload field"),
        ({"min_match": 2}, "min_match"),
        ({"aggregate_id_from_key": "acct:.+"}, "group"),
    ],
)
def test_nonsense_is_refused_with_the_value_named(spec, message):
    with pytest.raises(ValueError, match=message):
        ak.Envelope.of(spec)


def test_a_bad_file_is_named(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("event_type = [")
    with pytest.raises(ValueError, match=r"bad\.toml` is not valid TOML"):
        ak.Envelope.of(bad)
    with pytest.raises(ValueError, match=r"missing\.toml` does not exist"):
        ak.Envelope.of(tmp_path / "missing.toml")


# ---- decoders ------------------------------------------------------------------------------


def test_flat_fields_are_the_payload_numbers_typed(r):
    rows = [
        {"case": "c1", "act": "Create", "amount": "35", "rate": "1.5", "code": "007", "x": ""},
        {"case": "c1", "act": "Pay", "amount": "", "rate": "2", "code": "010", "x": "y"},
        {"case": "c2", "act": "Create", "amount": "-4", "rate": "1e3", "code": "7", "x": ""},
    ]
    for i, row in enumerate(rows):
        r.xadd("flat", row, id=f"{BASE_MS + i}-0")
    table = ak.read_arrow(
        r, "flat", envelope={"preset": "flat", "event_type": "act", "aggregate_id": "case"}
    )
    assert table.column("event_type").to_pylist() == ["Create", "Pay", "Create"]
    assert table.schema.field("payload.amount").type == pa.int64()
    assert table.column("payload.amount").to_pylist() == [35, None, -4]  # empty -> missing
    assert table.column("payload.rate").to_pylist() == [1.5, 2.0, 1000.0]
    assert table.column("payload.code").to_pylist() == ["007", "010", "7"]  # ids keep zeros
    assert table.column("payload.x").to_pylist() == [None, "y", None]  # empty is missing
    assert "amount" not in table.column_names  # not twice
    amounts = {"Create": "payload.amount", "Pay": "payload.amount"}
    envelope = {"preset": "flat", "event_type": "act", "aggregate_id": "case"}
    totals = ak.Projection.declarative(sum={"total": amounts}, envelope=envelope).states_at(
        (r, "flat")
    )
    assert dict(zip(totals["aggregate_id"], totals["total"], strict=True)) == {"c1": 35, "c2": -4}


def test_type_flat_keeps_what_a_number_would_change():
    assert type_flat(pa.array(["1", "2"])).type == pa.int64()
    assert type_flat(pa.array(["12345678901234567890", "1"])).type == pa.string()
    assert type_flat(pa.array(["1", "x"])).type == pa.string()
    assert type_flat(pa.array(["", ""])).to_pylist() == [None, None]
    assert type_flat(pa.array(["a", ""])).to_pylist() == ["a", None]
    assert type_flat(pa.array(["1.0", None])).to_pylist() == [1.0, None]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(-(10**17), 10**17), min_size=1, max_size=20))
def test_flat_integers_round_trip(values):
    typed = type_flat(pa.array([str(v) for v in values]))
    assert typed.to_pylist() == values


def test_a_concept_from_a_payload_path_the_key_or_the_first_of_several(r):
    r.xadd("tasks:eu", {"data": json.dumps({"task_name": "send", "task_id": "t1"})})
    r.xadd("tasks:eu", {"kind": "Override", "data": json.dumps({"task_name": "send"})})
    r.xadd("tasks:eu", {"data": json.dumps({"task_id": 7})})
    envelope = {
        "event_type": ["kind", "payload.task_name", {"key": "tasks:(.+)"}],
        "aggregate_id": {"path": "task_id", "required": False},
        "payload": "data",
    }
    table = ak.read_arrow(r, "tasks:eu", envelope=envelope)
    assert table.column("event_type").to_pylist() == ["send", "Override", "eu"]
    assert table.column("aggregate_id").to_pylist() == ["t1", None, "7"]
    assert table.column("payload.task_name").to_pylist() == ["send", "send", None]


def test_faststream_frames_become_headers_and_a_json_body(r):
    for i in range(3):
        body = json.dumps({"order_id": f"o{i % 2}", "amount": 10 * i}).encode()
        headers = {"correlation_id": f"c{i}", "content-type": "application/json"}
        r.xadd("orders", {"__data__": frame(headers, body)}, id=f"{BASE_MS + i}-0")
    # FastStream's older JSON form decodes too
    legacy = json.dumps({"data": json.dumps({"order_id": "o9"}), "headers": {"x": "1"}})
    r.xadd("orders", {"__data__": legacy}, id=f"{BASE_MS + 3}-0")
    envelope = {"preset": "faststream", "aggregate_id": "payload.order_id"}
    table = ak.read_arrow(r, "orders", envelope=envelope, keep_payload=True)
    assert table.column("event_type").to_pylist() == ["orders"] * 4
    assert table.column("aggregate_id").to_pylist() == ["o0", "o1", "o0", "o9"]
    assert table.column("correlation_id").to_pylist() == ["c0", "c1", "c2", None]
    assert table.column("payload.amount").to_pylist() == [0, 10, 20, None]
    assert json.loads(table.column("payload")[1].as_py()) == {"order_id": "o1", "amount": 10}
    # The default envelope cannot read it, and says so, naming the field it saw.
    with pytest.raises(ak.EnvelopeMismatch, match="`__data__`"):
        ak.read_arrow(r, "orders")


def test_a_broken_frame_keeps_its_row_and_says_why():
    with pytest.raises(ValueError, match="not a FastStream frame"):
        faststream_frame(b"plain text")
    truncated = frame({"a": "b"}, b"{}")[:14]
    with pytest.raises(Exception, match=r"unpack|outside|past"):
        faststream_frame(truncated)


def test_msgpack_and_a_callable_decoder(r):
    r.xadd("mp", {"type": "A", "payload": msgpack.packb({"n": 1, "raw": b"\xff"})})
    r.xadd("mp", {"type": "A", "payload": msgpack.packb({"n": 2, "raw": b"ok"})})
    table = ak.read_arrow(r, "mp", envelope={"decoder": "msgpack"})
    assert table.column("payload.n").to_pylist() == [1, 2]
    assert table.column("payload.raw").to_pylist() == ["base64:/w==", "ok"]

    def upper(value: bytes) -> dict[str, str]:
        if value == b"bad":
            raise ValueError("cannot read bad")
        return {"word": value.decode().upper()}

    for word in [b"hi"] * 120 + [b"bad"]:
        r.xadd("words", {"type": "W", "payload": word})
    table = ak.read_arrow(r, "words", envelope=ak.Envelope(decoder=upper))
    assert table.column("payload.word").to_pylist()[:2] == ["HI", "HI"]
    error = table.column("payload_error").to_pylist()[-1]
    assert "cannot be decoded by" in error and "cannot read bad" in error
    # by import path, as a TOML file names it
    table = ak.read_arrow(r, "mp", envelope={"decoder": "msgpack:unpackb", "min_match": 0})
    assert table.column("payload.n").to_pylist() == [1, 2]
    with pytest.raises(ValueError, match="cannot be imported"):
        ak.read_arrow(r, "mp", envelope={"decoder": "no_such_module:f"})


# ---- the match check -----------------------------------------------------------------------


def test_one_percent_may_miss_two_may_not(r):
    pipe = r.pipeline(transaction=False)
    for i in range(200):
        fields = {"type": "T", "payload": "{}"} if i >= 3 else {"payload": "{}"}
        pipe.xadd("s", fields, id=f"{BASE_MS + i}-0")
    pipe.execute()
    with pytest.raises(ak.EnvelopeMismatch) as info:
        ak.read_arrow(r, "s")
    assert info.value.shares == {"event_type": (197, 200)}
    assert info.value.fields == ["payload", "type"]
    assert "is in 197 of 200 entries read (98.5%)" in str(info.value)
    assert "ak.inspect(client, 's')" in str(info.value)
    assert ak.read_arrow(r, "s", envelope={"min_match": 0.9}).num_rows == 200
    r.xdel("s", f"{BASE_MS}-0", f"{BASE_MS + 1}-0")
    assert ak.read_arrow(r, "s").num_rows == 198  # 1 in 198: within the allowance


def test_a_stream_that_changes_layout_after_the_sample_is_caught_at_the_end(r):
    pipe = r.pipeline(transaction=False)
    for i in range(3_000):
        fields = {"type": "T", "payload": "{}"} if i < 1_500 else {"event": "T", "payload": "{}"}
        pipe.xadd("s", fields, id=f"{BASE_MS + i}-0")
    pipe.execute()
    batches = ak.iter_batches(r, "s", batch_size=500)
    with pytest.raises(ak.EnvelopeMismatch, match="1,500 of 3,000"):
        for _ in batches:
            pass


def test_an_event_without_data_is_no_mismatch(r):
    r.xadd("s", {"type": "Opened"})
    r.xadd("s", {"type": "Closed"})
    assert ak.read_arrow(r, "s").num_rows == 2


# ---- inspect ------------------------------------------------------------------------------


def test_inspect_proposes_what_each_layout_needs(r, tmp_path):
    for i in range(30):
        r.xadd("bull:q:events", {"event": ["added", "completed"][i % 2], "jobId": str(i // 2)})
    r.xadd("bull:q:events", {"event": "drained"})
    found = ak.inspect(r, "bull:q:events")
    assert found.format == "flat"
    assert found.envelope.concepts["event_type"].describe() == "field `event`"
    assert found.envelope.concepts["aggregate_id"].describe() == "field `jobId`"
    assert found.matches["event_type"] == 1.0 and found.matches["aggregate_id"] < 1.0
    assert found.envelope.concepts["aggregate_id"].required is False
    # what it proposes reads the stream
    path = tmp_path / "bull.toml"
    path.write_text(found.toml())
    table = ak.read_arrow(r, "bull:q:events", envelope=path)
    assert table.column("event_type").to_pylist().count("completed") == 15

    for i in range(10):
        body = json.dumps({"kind": "OrderPlaced", "order_id": f"o{i}"}).encode()
        r.xadd("orders", {"__data__": frame({"correlation_id": str(i)}, body)})
    found = ak.inspect(r, "orders")
    assert found.format == "faststream"
    assert found.envelope.payload == "__data__"
    assert found.envelope.event_type == "payload.kind"
    assert found.envelope.aggregate_id == "payload.order_id"
    assert "FastStream" in str(found) and "fills 100%" in str(found)

    for i in range(10):
        r.xadd("tasks", {"data": json.dumps({"task_name": "t", "task_id": str(i)})})
    found = ak.inspect(r, "tasks")
    assert (found.format, found.envelope.payload) == ("json", "data")
    assert found.envelope.event_type == "payload.task_name"
    assert found.matches == {"event_type": 1.0, "aggregate_id": 1.0, "payload": 1.0}


def test_inspect_samples_head_middle_and_tail(r):
    pipe = r.pipeline(transaction=False)
    for i in range(9_000):
        pipe.xadd("big", {"type": "T", "payload": "{}"}, id=f"{BASE_MS + i}-0")
    pipe.execute()
    found = ak.inspect(r, "big", sample=30)
    assert found.length == 9_000 and found.sampled == 30
    # A stream no longer than the sample is read whole, unevenly spaced times or not.
    for i in range(390):
        r.xadd("fines", {"kind": "Paid", "n": str(i)}, id=f"{BASE_MS + i * i * 1000}-0")
    assert ak.inspect(r, "fines", sample=390).sampled == 390
    assert ak.inspect(r, "fines", sample=1000).sampled == 390
    with pytest.raises(ak.StreamNotFound):
        ak.inspect(r, "nope")
    with pytest.raises(ValueError, match="sample"):
        ak.inspect(r, "big", sample=0)
