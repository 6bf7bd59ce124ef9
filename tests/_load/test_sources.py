"""The event source contract: every kind of source holds the same events and gives the same
answers, to loading, time travel, schema drift and the read model check.

One data set is written as a single stream (then read as a table, a DataFrame, an archive,
`(client, key)` on one server and on a cluster) and as one stream per aggregate (a
`"acct:{aggregate_id}"` template, on one server and on a cluster). Every answer is checked
against what a plain Python loop over the written events says, not against another source.
"""

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import auditkit as ak
from auditkit._load.sources import ORDER_COLUMN, load_events, open_source


def _ms(month, day, hour=0):
    return int(datetime(2026, month, day, hour, tzinfo=UTC).timestamp() * 1000)


def _iso(ms):
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


@dataclass(frozen=True)
class Written:
    """One event as written: what every source must give back."""

    id: str
    type: str
    aggregate: str
    version: int
    payload: dict[str, Any]
    producer: str = "ledger"
    occurred_ms: int | None = None  # None: it happened when it was recorded

    @property
    def ms(self):
        return int(self.id.split("-")[0])

    @property
    def occurred(self):
        return self.occurred_ms if self.occurred_ms is not None else self.ms


def _web(amount, channel="web", **more):
    return {"amount": amount, "meta": {"channel": channel}, **more}


# January to April 2026. `Deposited` gets a v2 (adds `currency`) in March, yet a legacy job
# still writes v1 in April; `Withdrawn` v1 gains `note` in April with no version bump; the
# January v1 amounts are an integer and a float (only the payload's text tells them apart;
# both are numbers, one type, no `mixed-types`);
# the last deposit was recorded four weeks after it happened.
EVENTS = [
    Written(f"{_ms(1, 5)}-0", "Opened", "a-1", 1, {"owner": "ann"}),
    Written(f"{_ms(1, 5)}-1", "Opened", "a-2", 1, {"owner": "bob"}),
    Written(f"{_ms(1, 6)}-0", "Deposited", "a-1", 1, _web(100)),
    Written(f"{_ms(1, 20)}-0", "Deposited", "a-2", 1, _web(40.5, "app")),
    Written(f"{_ms(2, 3)}-0", "Withdrawn", "a-1", 1, {"amount": 30.5}),
    Written(f"{_ms(2, 10)}-0", "Opened", "a-3", 1, {"owner": "cy"}),
    Written(f"{_ms(2, 11)}-0", "Deposited", "a-3", 1, _web(12.25)),
    Written(f"{_ms(3, 2)}-0", "Deposited", "a-1", 2, _web(50.5, "app", currency="EUR")),
    Written(f"{_ms(3, 9)}-0", "Withdrawn", "a-2", 1, {"amount": 0.5}),
    Written(f"{_ms(3, 20)}-0", "Deposited", "a-3", 2, _web(8.5, currency="EUR")),
    Written(f"{_ms(4, 4)}-0", "Withdrawn", "a-1", 1, {"amount": 20.25, "note": "rent"}),
    Written(f"{_ms(4, 4)}-1", "Withdrawn", "a-3", 1, {"amount": 0.25, "note": "fee"}),
    Written(f"{_ms(4, 15)}-0", "Deposited", "a-2", 1, _web(5.5, "branch"), "legacy-batch"),
    Written(
        f"{_ms(4, 28)}-0",
        "Deposited",
        "a-1",
        2,
        _web(1.5, currency="EUR"),
        occurred_ms=_ms(3, 31, 6),
    ),
]
AGGREGATES = ["a-1", "a-2", "a-3"]
IDS = [e.id for e in EVENTS]


def opened(state, event):
    return {**state, "owner": event["payload"]["owner"], "open": True}


def deposited(state, event):
    payload = event["payload"]
    return {**state, "balance": state["balance"] + payload["amount"], **payload["meta"]}


def withdrawn(state, event):
    return {**state, "balance": state["balance"] - event["payload"]["amount"]}


HANDLERS = {"Opened": opened, "Deposited": deposited, "Withdrawn": withdrawn}
INITIAL = {"balance": 0.0, "owner": None, "open": False, "channel": None}
ACCOUNTS = ak.Projection(INITIAL, HANDLERS)


def fold(events):
    """The plain loop every projection must agree with: aggregate -> (state, last event, n)."""
    out = {}
    for event in events:
        state, _, count = out.get(event.aggregate, (dict(INITIAL), None, 0))
        state = HANDLERS[event.type](state, {"payload": event.payload})
        out[event.aggregate] = (state, event, count + 1)
    return out


def record_order(upto=None):
    """The written events in stream ID order, up to an ID (inclusive)."""
    ordered = sorted(EVENTS, key=lambda e: ak.StreamID.parse(e.id))
    return [
        e for e in ordered if upto is None or ak.StreamID.parse(e.id) <= ak.StreamID.parse(upto)
    ]


# ---- the sources --------------------------------------------------------------------------

KINDS = ["table", "frame", "archive", "redis", "cluster", "template", "cluster-template"]
TEMPLATE = "acct:{aggregate_id}"
STREAM = "events"


@dataclass
class Source:
    kind: str
    events: Any
    streams: str  # the stream names a drift report names


def _write(client, *, per_aggregate):
    pipe = client.pipeline(transaction=False)
    for event in EVENTS:
        fields = {
            "type": event.type,
            "schema_version": str(event.version),
            "payload": json.dumps(event.payload),
            "producer": event.producer,
            "occurred_at": _iso(event.occurred),
        }
        if per_aggregate:  # the key names the aggregate: no field carries it
            pipe.xadd(TEMPLATE.replace("{aggregate_id}", event.aggregate), fields, id=event.id)
        else:
            pipe.xadd(STREAM, {**fields, "aggregate_id": event.aggregate}, id=event.id)
    pipe.execute()


@pytest.fixture(params=KINDS)
def source(request, tmp_path):
    """The events, as one kind of source.

    Tables and DataFrames keep the payload's text (`keep_payload=True`): without it they
    hold less than the stream (a field's types unified across events), and drift would
    rightly report less. A cluster client must be taken wherever a single server's is.
    """
    kind = request.param
    client = request.getfixturevalue("rc" if kind.startswith("cluster") else "r")
    if kind.endswith("template"):
        _write(client, per_aggregate=True)
        names = ", ".join(TEMPLATE.replace("{aggregate_id}", a) for a in AGGREGATES)
        return Source(kind, (client, TEMPLATE), names)
    _write(client, per_aggregate=False)
    if kind == "table":
        events = ak.read_arrow(client, STREAM, keep_payload=True)
    elif kind == "frame":
        events = ak.read_pandas(client, STREAM, keep_payload=True)
    elif kind == "archive":
        events = ak.Archive(tmp_path / "archive", rows_per_file=5)  # several files
        events.export(client, STREAM)
    else:
        events = (client, STREAM)
    return Source(kind, events, STREAM)


# ---- loading ------------------------------------------------------------------------------


def _ids(table):
    return table.column("id").to_pylist()


def test_load_events_gives_every_event_in_stream_id_order(source):
    table = load_events(source.events)
    assert _ids(table) == IDS
    assert table.column(ORDER_COLUMN).to_pylist() == list(range(len(IDS)))
    rows = table.to_pandas()
    assert rows["event_type"].tolist() == [e.type for e in EVENTS]
    assert rows["aggregate_id"].tolist() == [e.aggregate for e in EVENTS]
    assert rows["schema_version"].tolist() == [e.version for e in EVENTS]
    assert rows["ts"].tolist() == [pd.Timestamp(e.ms, unit="ms", tz="UTC") for e in EVENTS]
    assert rows["payload.meta.channel"].tolist()[2:4] == ["web", "app"]


def test_load_events_cuts_at_after_and_by_aggregate(source):
    cut = EVENTS[8].id
    assert _ids(load_events(source.events, at=cut)) == IDS[:9]
    assert _ids(load_events(source.events, at="2026-03-31T12:00Z")) == IDS[:10]
    after = ak.StreamID.parse(EVENTS[3].id)
    assert _ids(load_events(source.events, after=after, at=cut)) == IDS[4:9]
    own = [e.id for e in EVENTS if e.aggregate == "a-2"]
    assert _ids(load_events(source.events, aggregate_id="a-2")) == own
    assert load_events(source.events, aggregate_id="nobody").num_rows == 0


def test_load_events_on_the_effective_clock(source):
    # The deposit recorded on 28 April happened on 31 March: effective time places it first.
    late = EVENTS[-1].id
    table = load_events(source.events, clock="effective", at="2026-04-01T00:00Z")
    assert _ids(table) == [*IDS[:10], late]
    assert _ids(load_events(source.events, clock="effective"))[-4:] == [late, *IDS[10:13]]


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch_size=st.integers(1, len(EVENTS) + 2))
def test_batches_hold_every_event_once_with_its_payload_as_written(source, batch_size):
    batches = list(open_source(source.events).batches(batch_size=batch_size))
    assert all(0 < batch.num_rows <= batch_size for batch in batches)
    # A source with several streams gives them one after the other; sorted, they are the events.
    ids = [i for batch in batches for i in _ids(batch)]
    assert sorted(ids, key=ak.StreamID.parse) == IDS
    texts = {}
    for batch in batches:
        for event_id, text in zip(_ids(batch), batch.column("payload").to_pylist(), strict=True):
            texts[event_id] = text.decode() if isinstance(text, bytes) else text
    assert texts == {e.id: json.dumps(e.payload) for e in EVENTS}


# ---- time travel --------------------------------------------------------------------------


@pytest.mark.parametrize("at", [None, EVENTS[8].id, "2026-03-31T12:00Z", EVENTS[0].id])
def test_state_at_equals_a_plain_fold(source, at):
    upto = {None: None, "2026-03-31T12:00Z": EVENTS[9].id}.get(at, at)
    expected = fold(record_order(upto))
    for aggregate in AGGREGATES:
        # An aggregate whose events all come after `at` existed later: its initial state.
        want = expected[aggregate][0] if aggregate in expected else INITIAL
        assert ACCOUNTS.state_at(source.events, aggregate, at=at) == want
    # An id with no event at all is refused, naming the nearest ids, unless asked not to be.
    with pytest.raises(ak.AggregateNotFound, match="`a-1`"):
        ACCOUNTS.state_at(source.events, "a-4", at=at)
    assert ACCOUNTS.state_at(source.events, "a-4", at=at, missing="initial") == INITIAL


def test_states_at_equals_a_plain_fold(source):
    expected = fold(record_order(EVENTS[8].id))
    frame = ACCOUNTS.states_at(source.events, at=EVENTS[8].id)
    assert frame.to_dict("records") == [
        {
            "aggregate_id": aggregate,
            **state,
            "last_id": last.id,
            "last_ts": pd.Timestamp(last.ms, unit="ms", tz="UTC"),
            "events": count,
        }
        for aggregate, (state, last, count) in sorted(expected.items())
    ]


def test_states_at_on_the_effective_clock(source):
    happened = sorted(EVENTS, key=lambda e: (e.occurred, e.id))
    expected = fold([e for e in happened if e.occurred <= _ms(4, 1)])
    frame = ACCOUNTS.states_at(source.events, at="2026-04-01T00:00Z", clock="effective")
    assert frame.set_index("aggregate_id")["balance"].to_dict() == {
        aggregate: state["balance"] for aggregate, (state, _, _) in expected.items()
    }
    assert frame.set_index("aggregate_id").loc["a-1", "last_id"] == EVENTS[-1].id


def test_history_has_the_state_after_each_event(source):
    mine = [e for e in record_order() if e.aggregate == "a-1"]
    history = ACCOUNTS.history(source.events, "a-1")
    assert history["id"].tolist() == [e.id for e in mine]
    assert history["event_type"].tolist() == [e.type for e in mine]
    balances = [fold(mine[: n + 1])["a-1"][0]["balance"] for n in range(len(mine))]
    assert history["balance"].tolist() == balances


# ---- schema drift -------------------------------------------------------------------------

DRIFT = [
    (
        "version-regression",
        "warning",
        "`Deposited` v1 is still emitted after v2 appeared on 2026-03-02: last on 2026-04-15, "
        "by legacy-batch",
    ),
    ("field-added", "info", "`Deposited` v2 adds field `currency`"),
    (
        "type-change",
        "info",
        "`Deposited` v2 changes field `amount` from integer|number to number",
    ),
    (
        "drift-without-version-bump",
        "warning",
        "`Withdrawn` v1: field `note` appears in 2026-04 (in 100% of that window's events) "
        "with no new schema version",
    ),
]
TIMELINE = [
    ("Deposited", 1, "2026-01", 2, "ledger"),
    ("Deposited", 1, "2026-02", 1, "ledger"),
    ("Deposited", 2, "2026-03", 2, "ledger"),
    ("Deposited", 1, "2026-04", 1, "legacy-batch"),
    ("Deposited", 2, "2026-04", 1, "ledger"),
    ("Opened", 1, "2026-01", 2, "ledger"),
    ("Opened", 1, "2026-02", 1, "ledger"),
    ("Withdrawn", 1, "2026-02", 1, "ledger"),
    ("Withdrawn", 1, "2026-03", 1, "ledger"),
    ("Withdrawn", 1, "2026-04", 2, "ledger"),
]


@pytest.mark.parametrize("batch_size", [50_000, 3])
def test_schema_drift_finds_the_same_drift(source, batch_size):
    report = ak.schema_drift(source.events, window="month", batch_size=batch_size)
    findings = report.findings
    rows = zip(findings["check"], findings["severity"], findings["detail"], strict=True)
    assert list(rows) == DRIFT
    assert set(findings["stream"]) == {source.streams}
    timeline = report.timeline
    assert (
        list(
            zip(
                timeline["event_type"],
                timeline["schema_version"],
                timeline["window"],
                timeline["events"],
                timeline["producers"],
                strict=True,
            )
        )
        == TIMELINE
    )
    assert timeline["first_ts"].iloc[0] == pd.Timestamp(_ms(1, 6), unit="ms", tz="UTC")


def test_schema_drift_against_upcasters_and_a_registry(source):
    declared = {
        "Opened": {"1": {"properties": {"owner": {"type": "string"}}, "required": ["owner"]}},
        "Deposited": {"2": {"properties": {"amount": {"type": "number"}}}},
    }
    report = ak.schema_drift(source.events, registry=declared, upcasters={("Withdrawn", 1): str})
    found = report.findings
    found = found[found["check"].isin(["undeclared-type", "undeclared-version", "schema-mismatch"])]
    assert sorted(found["detail"]) == [
        "`Deposited` v1 is not in the registry (declared: 2)",
        "`Deposited` v2: field `currency` is not declared",
        "`Deposited` v2: field `meta.channel` is not declared",
        "event type `Withdrawn` is not in the registry",
    ]
    assert "no-upcaster-path" in set(report.findings["check"])
    assert report.registry()["Withdrawn"]["1"]["required"] == ["amount"]


# ---- the read model -----------------------------------------------------------------------


def test_check_read_model_finds_the_same_differences(source):
    states = {a: state for a, (state, _, _) in fold(record_order()).items()}
    read_model = pd.DataFrame.from_dict(states, orient="index")[["balance", "owner"]]
    assert ak.check_read_model(ACCOUNTS, source.events, read_model).empty
    read_model.loc["a-1", "balance"] += 1
    read_model = read_model.drop(index="a-3")
    read_model.loc["zz"] = [0.0, "nobody"]
    findings = ak.check_read_model(ACCOUNTS, source.events, read_model)
    assert sorted(zip(findings["check"], findings["aggregate_id"], strict=True)) == [
        ("read-model-drift", "a-1"),
        ("read-model-extra", "zz"),
        ("read-model-missing", "a-3"),
    ]
    drift = findings[findings["check"] == "read-model-drift"]["detail"].iloc[0]
    assert f"the events say {states['a-1']['balance']!r}" in drift


# ---- what is not a source -------------------------------------------------------------------


@pytest.mark.parametrize(
    "events",
    [
        pytest.param([1, 2], id="list"),
        pytest.param("events", id="bare-key"),
        pytest.param(("localhost", "events"), id="not-a-client"),
        pytest.param(None, id="none"),
        pytest.param(object(), id="object"),
    ],
)
def test_anything_else_is_refused_naming_every_kind(events):
    calls = [
        lambda: load_events(events),
        lambda: ACCOUNTS.state_at(events, "a-1"),
        lambda: ACCOUNTS.states_at(events),
        lambda: ak.schema_drift(events),
        lambda: ak.check_read_model(ACCOUNTS, events, pd.DataFrame()),
    ]
    for call in calls:
        with pytest.raises(TypeError) as raised:
            call()
        message = str(raised.value)
        for kind in ("pyarrow.Table", "pandas.DataFrame", "Archive", "redis.Redis", "RedisCluster"):
            assert kind in message
        assert "account:{aggregate_id}" in message


def test_a_pair_whose_stream_is_not_text_is_refused(r):
    with pytest.raises(TypeError, match=r"got `\(Redis, int\)`"):
        load_events((r, 42))
