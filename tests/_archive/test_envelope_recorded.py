"""An archive records the envelope each file was decoded with, reads with it, and refuses
an export with another (two envelopes in one stream's files would mix silently)."""

from __future__ import annotations

import json

import pytest
from _wire import faststream_frame as frame

import auditkit as ak

BASE_MS = 1772323200000

BULL = "bull:q:events"


def _bullmq_events(r, start=0, n=20):
    for i in range(start, start + n):
        r.xadd(BULL, {"event": ["added", "completed"][i % 2], "jobId": str(i // 2), "prev": "x"})


def test_the_envelope_is_recorded_and_used_again(r, tmp_path):
    _bullmq_events(r)
    ak.Archive(tmp_path, envelope="bullmq").export(r, BULL)
    entries = ak.Archive(tmp_path).entries(BULL)
    assert entries[0].envelope == ak.Envelope.preset("bullmq").to_dict(full=True)
    # A later export that names no envelope uses the recorded one (as the CLI does
    # without --envelope), and the chain still verifies.
    _bullmq_events(r, start=20)
    later = ak.Archive(tmp_path)
    assert later.envelope_of(BULL) == ak.Envelope.preset("bullmq")
    assert later.export(r, BULL).rows == 20
    assert later.verify(r, BULL).ok
    table = later.events_table(stream=BULL)
    assert table.column("event_type").to_pylist().count("completed") == 20
    assert set(table.column("aggregate_id").to_pylist()) == {str(i) for i in range(20)}
    # The live tail of a query decodes with it too.
    _bullmq_events(r, start=40, n=2)
    con = later.duckdb(live=r)
    counts = dict(con.execute("select event_type, count(*) from events group by 1").fetchall())
    assert counts == {"added": 21, "completed": 21}


def test_another_envelope_is_refused_and_nothing_written(r, tmp_path):
    _bullmq_events(r)
    ak.Archive(tmp_path, envelope="bullmq").export(r, BULL)
    _bullmq_events(r, start=20)
    other = {"preset": "bullmq", "aggregate_id": None}
    with pytest.raises(ak.ArchiveEnvelopeConflict, match="aggregate_id") as info:
        ak.Archive(tmp_path, envelope=other).export(r, BULL)
    assert "Nothing was exported" in str(info.value)
    assert ak.Archive(tmp_path).horizon(BULL) == ak.StreamID.parse(
        ak.Archive(tmp_path).entries(BULL)[-1].last_id
    )
    assert sum(e.rows for e in ak.Archive(tmp_path).entries(BULL)) == 20


def test_a_stream_the_envelope_does_not_fit_is_not_archived(r, tmp_path):
    _bullmq_events(r)
    with pytest.raises(ak.EnvelopeMismatch, match="`event`, `jobId`"):
        ak.Archive(tmp_path).export(r, BULL)
    assert ak.Archive(tmp_path).entries(BULL) == []
    # No manifest either: the archive holds no stream, so nothing later reads it as one
    # archived from its start with every trimmed entry lost, or with the wrong envelope.
    assert ak.Archive(tmp_path).streams() == []
    assert not list(tmp_path.rglob("*.jsonl"))
    r.xtrim(BULL, maxlen=5, approximate=False)
    arc = ak.Archive(tmp_path, envelope="bullmq")
    with pytest.raises(ak.EnvelopeMismatch):
        ak.Archive(tmp_path).export(r, BULL)
    assert arc.streams() == []
    assert arc.export(r, BULL).rows == 5  # the right envelope: a clean start
    con = ak.Archive(tmp_path).duckdb(live=r)
    assert con.execute("select count(*) from events").fetchall() == [(5,)]


def test_archived_payloads_read_as_the_recorded_decoder_reads_them(r, tmp_path):
    for i in range(5):
        body = json.dumps({"order_id": f"o{i % 2}", "amount": i}).encode()
        r.xadd("orders", {"__data__": frame({"correlation_id": str(i)}, body)})
    envelope = {"preset": "faststream", "aggregate_id": "payload.order_id"}
    archive = ak.Archive(tmp_path, envelope=envelope)
    archive.export(r, "orders")
    total = ak.Projection(
        {"total": 0}, {"*": lambda s, e: {"total": s["total"] + e["payload"]["amount"]}}
    )
    # From the archive alone (keep_payload reads the body out of the FastStream frame).
    reopened = ak.Archive(tmp_path)
    assert total.state_at(reopened, "o0") == {"total": 0 + 2 + 4}
    assert total.state_at(reopened, "o1") == {"total": 1 + 3}
    restored = archive.restore(r, "orders", "orders:restored")
    assert restored == 5
    assert r.xrange("orders") == r.xrange("orders:restored")
    assert archive.verify(r, "orders").ok


def test_payload_paths_in_privacy_rules_need_a_decoder_that_reaches_them(tmp_path):
    with pytest.raises(ValueError, match="not with the msgpack decoder"):
        ak.Archive(tmp_path, envelope={"decoder": "msgpack"}, drop=["payload.email"])


def test_one_stream_of_an_archive_is_a_source(r, tmp_path):
    for stream in ("a", "b"):
        for i in range(3):
            r.xadd(stream, {"type": "Add", "aggregate_id": "x", "payload": json.dumps({"n": i})})
    archive = ak.Archive(tmp_path)
    archive.export(r, "a")
    archive.export(r, "b")
    total = ak.Projection.declarative(sum={"total": {"Add": "payload.n"}})
    assert total.state_at((archive, "a"), "x") == {"total": 3}
    assert total.state_at(archive, "x") == {"total": 6}  # every stream the archive holds
    drift = ak.schema_drift((archive, "a"))
    assert drift.timeline["events"].sum() == 3
