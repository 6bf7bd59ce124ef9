"""read_polars: read_arrow's table as a polars DataFrame, or the install line without polars."""

import sys

import pytest

import auditkit as ak

polars = pytest.importorskip("polars")

FLAT = ak.Envelope(event_type="kind", aggregate_id="host", payload=None, decoder="flat")


def _samples(r):
    for i in range(30):
        r.xadd("metrics", {"kind": "sample", "host": f"web-{i % 3}", "cpu": str(i)})


def test_read_polars_holds_what_read_arrow_holds(r):
    _samples(r)
    frame = ak.read_polars(r, "metrics", envelope=FLAT, start="-", count=20)
    table = ak.read_arrow(r, "metrics", envelope=FLAT, count=20)
    assert isinstance(frame, polars.DataFrame)
    assert frame.columns == table.column_names
    # polars holds text as large_string: the values, not the Arrow types, are compared.
    assert frame.to_arrow().to_pylist() == table.to_pylist()
    counts = frame.group_by("aggregate_id").len().sort("aggregate_id").rows()
    assert counts == [("web-0", 7), ("web-1", 7), ("web-2", 6)]


def test_without_polars_the_error_gives_the_install_line(r, monkeypatch):
    monkeypatch.setitem(sys.modules, "polars", None)  # import polars now raises ImportError
    with pytest.raises(ak.AuditKitError, match=r"pip install 'auditkit\[polars\]'"):
        ak.read_polars(r, "no-such-stream")  # before any read: no StreamNotFound
