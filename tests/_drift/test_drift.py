"""Schema drift: streams built with known drift, and the findings they must produce."""

import json
from datetime import UTC, datetime

import matplotlib
import pytest

import auditkit as ak

matplotlib.use("Agg")


def _ms(year, month, day):
    return int(datetime(year, month, day, tzinfo=UTC).timestamp() * 1000)


def _add(r, stream, when, event_type, version, payload, producer="ledger", seq=0):
    fields = {
        "type": event_type,
        "aggregate_id": "a-1",
        "payload": json.dumps(payload),
        "producer": producer,
    }
    if version is not None:
        fields["schema_version"] = str(version)
    r.xadd(stream, fields, id=f"{when}-{seq}")


@pytest.fixture
def drifting(r):
    """January-February v1; March v2 adds `currency`; in April, v2 `Withdrawn.amount` turns
    to text with no bump, and a legacy job emits `Deposited` v1 again."""
    events = []
    for month in (1, 2):
        for day in range(1, 20, 3):
            events.append((_ms(2026, month, day), "Deposited", 1, {"amount": 10.5}, "ledger"))
            events.append((_ms(2026, month, day) + 1, "Withdrawn", 1, {"amount": 2.5}, "ledger"))
    for day in range(1, 20, 3):
        events.append(
            (_ms(2026, 3, day), "Deposited", 2, {"amount": 10.5, "currency": "EUR"}, "ledger")
        )
        events.append(
            (_ms(2026, 3, day) + 1, "Withdrawn", 2, {"amount": 2.5, "currency": "EUR"}, "ledger")
        )
    for day in range(1, 20, 3):
        events.append(
            (_ms(2026, 4, day), "Deposited", 2, {"amount": 10.5, "currency": "EUR"}, "ledger")
        )
        events.append(
            (_ms(2026, 4, day) + 1, "Withdrawn", 2, {"amount": "2.50", "currency": "EUR"}, "ledger")
        )
    events.append((_ms(2026, 4, 25), "Deposited", 1, {"amount": 99.0}, "legacy-batch"))
    for when, event_type, version, payload, producer in sorted(events, key=lambda e: e[0]):
        _add(r, "bank", when, event_type, version, payload, producer)
    return r


def _checks(report):
    return report.findings.groupby("check")["detail"].apply(list).to_dict()


def test_known_drift_is_found(drifting):
    report = ak.schema_drift((drifting, "bank"), window="month")
    checks = _checks(report)
    assert "`Deposited` v2 adds field `currency`" in checks["field-added"]
    assert "`Withdrawn` v2 adds field `currency`" in checks["field-added"]
    drift = checks["drift-without-version-bump"]
    assert drift == [
        "`Withdrawn` v2: field `amount` changes type from number to string in 2026-04 with no "
        "new schema version"
    ]
    regression = checks["version-regression"]
    assert len(regression) == 1
    assert "`Deposited` v1 is still emitted after v2 appeared on 2026-03-01" in regression[0]
    assert "legacy-batch" in regression[0] and "2026-04-25" in regression[0]
    severities = report.findings.set_index("check")["severity"].to_dict()
    assert (
        severities["field-added"] == "info"
        and severities["drift-without-version-bump"] == "warning"
    )
    assert list(report.findings.columns) == [
        "check",
        "severity",
        "stream",
        "id",
        "aggregate_id",
        "detail",
    ]
    assert set(report.findings["stream"]) == {"bank"}


def test_the_timeline_counts_versions_per_window(drifting):
    report = ak.schema_drift((drifting, "bank"), window="month")
    deposited = report.timeline[report.timeline["event_type"] == "Deposited"]
    rows = {(r["schema_version"], r["window"]): r["events"] for r in deposited.to_dict("records")}
    assert rows == {
        (1, "2026-01"): 7,
        (1, "2026-02"): 7,
        (2, "2026-03"): 7,
        (2, "2026-04"): 7,
        (1, "2026-04"): 1,
    }
    late = deposited[(deposited["schema_version"] == 1) & (deposited["window"] == "2026-04")].iloc[
        0
    ]
    assert late["producers"] == "legacy-batch"
    amount = report.fields[
        (report.fields["event_type"] == "Withdrawn") & (report.fields["field"] == "amount")
    ]
    assert amount.set_index("window")["types"].to_dict() == {
        "2026-01": "number",
        "2026-02": "number",
        "2026-03": "number",
        "2026-04": "string",
    }


def test_a_drift_free_stream_yields_no_finding(r):
    for day in range(1, 28):
        _add(r, "calm", _ms(2026, 1, day), "Deposited", 3, {"amount": 1.5, "meta": {"ch": "card"}})
        _add(r, "calm", _ms(2026, 1, day) + 1, "Withdrawn", 3, {"amount": 1.0})
    report = ak.schema_drift((r, "calm"), window="week")
    assert report.findings.empty, report.findings
    assert set(report.fields["field"]) == {"amount", "meta.ch"}


def test_whole_and_fractional_amounts_are_one_type(r):
    # Flat fields as a CSV export writes them: `35.0` is whole, `33.6` is not; both numbers.
    for day, amount in enumerate(["35.0", "33.6", "12", "7.5"], start=1):
        r.xadd(
            "fines", {"activity": "Payment", "paymentAmount": amount}, id=f"{_ms(2026, 1, day)}-0"
        )
    flat = {"preset": "flat", "event_type": "activity", "aggregate_id": None}
    report = ak.schema_drift((r, "fines"), window="month", envelope=flat)
    assert report.findings.empty, report.findings["detail"].tolist()
    # A text among the amounts: the field is read as text, and its types are still told.
    r.xadd("fines", {"activity": "Payment", "paymentAmount": "unpaid"}, id=f"{_ms(2026, 1, 9)}-0")
    report = ak.schema_drift((r, "fines"), window="month", envelope=flat)
    assert report.findings["detail"].tolist() == [
        "`Payment` (no version): field `paymentAmount` has several types in 2026-01: "
        "2 integer, 2 number, 1 string"
    ]
    # JSON: a whole and a fractional amount beside a text one are two types, not three.
    for day, amount in enumerate([35, 33.6, "unpaid"], start=1):
        _add(r, "s", _ms(2026, 1, day), "Payment", 1, {"amount": amount})
    checks = _checks(ak.schema_drift((r, "s"), window="month"))
    assert checks["mixed-types"] == [
        "`Payment` v1: field `amount` has several types in 2026-01: 1 integer, 1 number, 1 string"
    ]


def test_mixed_types_and_a_disappearing_field(r):
    _add(r, "s", _ms(2026, 1, 1), "Ping", 1, {"n": 1, "tag": "x"})
    _add(r, "s", _ms(2026, 1, 2), "Ping", 1, {"n": "one", "tag": "y"})
    _add(r, "s", _ms(2026, 2, 1), "Ping", 1, {"n": 2})
    checks = _checks(ak.schema_drift((r, "s"), window="month"))
    assert checks["mixed-types"] == [
        "`Ping` v1: field `n` has several types in 2026-01: 1 integer, 1 string"
    ]
    assert checks["drift-without-version-bump"] == [
        "`Ping` v1: field `tag` disappears after 2026-01 with no new schema version"
    ]


def test_registry_round_trip_and_mismatches(drifting, r, tmp_path):
    report = ak.schema_drift((drifting, "bank"))
    folder = report.write_registry(tmp_path / "schemas")
    assert (folder / "Deposited" / "v2.json").exists()
    declared = json.loads((folder / "Deposited" / "v2.json").read_text())
    assert declared["properties"]["currency"] == {"type": "string"}
    assert declared["required"] == ["amount", "currency"]
    against_itself = ak.schema_drift((drifting, "bank"), registry=folder)
    assert not set(against_itself.findings["check"]) & {
        "undeclared-type",
        "undeclared-version",
        "schema-mismatch",
    }

    _add(
        r, "bank", _ms(2026, 5, 1), "Deposited", 2, {"amount": 1.0, "currency": "EUR", "iban": "X"}
    )
    _add(r, "bank", _ms(2026, 5, 2), "Refunded", 1, {"amount": 1.0})
    _add(r, "bank", _ms(2026, 5, 3), "Withdrawn", 3, {"amount": 1.0})
    checks = _checks(ak.schema_drift((r, "bank"), registry=folder))
    assert "`Deposited` v2: field `iban` is not declared" in checks["schema-mismatch"]
    assert checks["undeclared-type"] == ["event type `Refunded` is not in the registry"]
    assert checks["undeclared-version"] == [
        "`Withdrawn` v3 is not in the registry (declared: 1, 2)"
    ]


def test_upcaster_coverage(drifting):
    projection = ak.Projection({}, {"*": lambda s, e: s}, upcasters={("Deposited", 2): lambda p: p})
    checks = _checks(ak.schema_drift((drifting, "bank"), upcasters=projection))
    assert checks["no-upcaster-path"] == [
        "`Deposited` v1 occurs, but no upcaster takes ('Deposited', 1) towards v3",
        # Withdrawn has no upcaster at all, yet v1 and v2 both occur: v1 has no path to v2.
        "`Withdrawn` v1 occurs, but no upcaster takes ('Withdrawn', 1) towards v2",
    ]
    covered = {
        ("Deposited", 1): lambda p: p,
        ("Deposited", 2): lambda p: p,
        ("Withdrawn", 1): lambda p: p,
    }
    assert "no-upcaster-path" not in _checks(ak.schema_drift((drifting, "bank"), upcasters=covered))


def test_every_source_gives_the_same_report(drifting, tmp_path):
    from_redis = ak.schema_drift((drifting, "bank"))
    arc = ak.Archive(tmp_path)
    arc.export(drifting, "bank")
    sources = {
        "table": ak.read_arrow(drifting, "bank"),
        "table with the payload's text": ak.read_arrow(drifting, "bank", keep_payload=True),
        "archive": arc,
    }
    assert "`Withdrawn` v2: field `amount` changes type from number to string in 2026-04" in (
        " ".join(from_redis.findings["detail"])
    )
    for name, source in sources.items():
        report = ak.schema_drift(source)
        assert report.findings.equals(from_redis.findings), name
        assert report.timeline.equals(from_redis.timeline), name
        assert report.fields.equals(from_redis.fields), name


def test_plots_have_titles_and_labels(drifting):
    report = ak.schema_drift((drifting, "bank"), window="month")
    figure = report.plot("Withdrawn")
    top, heat = figure.axes[0], figure.axes[1]
    assert "`Withdrawn`" in top.get_title() and top.get_ylabel() == "events"
    assert "share of events" in heat.get_title()
    assert [t.get_text() for t in heat.get_yticklabels()] == ["amount", "currency"]


def test_plots_keep_the_empty_windows_between_busy_ones(r):
    _add(r, "gap", _ms(2026, 3, 30), "Ping", 1, {"n": 1})
    _add(r, "gap", _ms(2026, 11, 23), "Ping", 2, {"n": 1, "m": 2})
    report = ak.schema_drift((r, "gap"), window="week")
    assert report.timeline["window"].tolist() == ["2026-03-30", "2026-11-23"]
    figure = report.plot("Ping")
    bars, heat = figure.axes[0], figure.axes[1]
    weeks = (datetime(2026, 11, 23) - datetime(2026, 3, 30)).days // 7 + 1
    heights = [patch.get_height() for patch in bars.patches]
    assert len(heights) == 2 * weeks  # one bar per week and version, zero in empty weeks
    assert sum(h > 0 for h in heights) == 2
    assert heat.images[0].get_array().shape == (2, weeks)


def test_unversioned_events_and_bad_arguments(r):
    _add(r, "s", _ms(2026, 1, 1), "Ping", None, {"n": 1})
    _add(r, "s", _ms(2026, 3, 1), "Ping", None, {"n": 1, "extra": True})
    report = ak.schema_drift((r, "s"))
    assert report.timeline["schema_version"].isna().all()
    assert _checks(report)["drift-without-version-bump"] == [
        "`Ping` (no version): field `extra` appears in 2026-03 (in 100% of that window's events) "
        "with no new schema version"
    ]
    with pytest.raises(ValueError, match="window"):
        ak.schema_drift((r, "s"), window="year")
    with pytest.raises(TypeError, match="Archive"):
        ak.schema_drift([1, 2])


def test_nothing_to_check_is_an_error_not_an_empty_report(r, tmp_path):
    r.xgroup_create("empty", "workers", id="0", mkstream=True)  # a stream with no entry
    with pytest.raises(ak.NoEvents, match="No events to check in `empty`") as raised:
        ak.schema_drift((r, "empty"))
    assert raised.value.missing == "events" and isinstance(raised.value, ValueError)
    _add(r, "s", _ms(2026, 1, 1), "Ping", 1, {"n": 1})
    nothing = ak.read_arrow(r, "s", start="2027-01-01")
    with pytest.raises(ak.NoEvents, match="No events to check in the table"):
        ak.schema_drift(nothing)
    with pytest.raises(ak.NoEvents, match="No events to check in the DataFrame"):
        ak.schema_drift(nothing.to_pandas())
    with pytest.raises(ak.NoEvents, match="No events to check in <Archive"):
        ak.schema_drift(ak.Archive(tmp_path))


def test_events_without_an_event_type_are_an_error(r):
    # A producer that names the type `event`: the default envelope looks for `type`.
    for day in (1, 2):
        r.xadd("jobs", {"event": "Started", "payload": "{}"}, id=f"{_ms(2026, 1, day)}-0")
    with pytest.raises(ak.EnvelopeMismatch):  # the read says so first
        ak.schema_drift((r, "jobs"))
    # With the read's check turned off, drift still refuses to report on untyped events.
    lenient = {"min_match": 0}
    with pytest.raises(ak.NoEvents) as raised:
        ak.schema_drift((r, "jobs"), envelope=lenient)
    assert str(raised.value) == (
        "None of the 2 events in `jobs` has an event type: the envelope reads it from field "
        "`type`, which none of its entries has. Name the field that holds it, e.g. "
        'Envelope(event_type="event"), and load again.'
    )
    assert raised.value.missing == "event_type"
    table = ak.read_arrow(r, "jobs", envelope=lenient)
    for source in (table, table.to_pandas()):
        with pytest.raises(ak.NoEvents, match="`event_type` column is null in every row"):
            ak.schema_drift(source)
    report = ak.schema_drift((r, "jobs"), envelope={"event_type": "event"})
    assert list(report.timeline["event_type"]) == ["Started"]
