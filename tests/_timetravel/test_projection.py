"""Time travel: Projection.state_at / states_at / history / diff / snapshots."""

import json
import math
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import auditkit as ak

BASE_MS = 1_772_323_200_000  # 2026-03-01T00:00:00Z


def add(state, event):
    return {**state, "total": state["total"] + event["payload"]["n"], "seen": state["seen"] + 1}


def sub(state, event):
    return {**state, "total": state["total"] - event["payload"]["n"], "seen": state["seen"] + 1}


def reset(state, event):
    return {**state, "total": 0, "seen": state["seen"] + 1}


HANDLERS = {"Add": add, "Sub": sub, "Reset": reset}
INITIAL = {"total": 0, "seen": 0}


def plain_fold(history, aggregate, cut_index):
    """What a Projection must agree with: a for loop over the events up to the cut."""
    state = dict(INITIAL)
    for entry in history[: cut_index + 1]:
        if entry["aggregate_id"] == aggregate and entry["type"] in HANDLERS:
            state = HANDLERS[entry["type"]](state, {"payload": entry["payload"]})
    return state


def write(r, history, stream="s"):
    pipe = r.pipeline(transaction=False)
    for entry in history:
        fields = {
            "type": entry["type"],
            "aggregate_id": entry["aggregate_id"],
            "schema_version": str(entry.get("version", 1)),
            "payload": json.dumps(entry["payload"]),
        }
        if "occurred_at" in entry:
            fields["occurred_at"] = entry["occurred_at"]
        pipe.xadd(stream, fields, id=entry["id"])
    pipe.execute()


event_lists = st.lists(
    st.fixed_dictionaries(
        {
            "step": st.integers(0, 2),
            "type": st.sampled_from(["Add", "Sub", "Reset", "Noise"]),
            "aggregate_id": st.sampled_from(["a", "b", "c"]),
            "n": st.integers(-5, 100),
        }
    ),
    min_size=1,
    max_size=40,
)


def build(raw):
    history, ms, seq = [], BASE_MS, 0
    for item in raw:
        ms, seq = (ms + item["step"], 0) if item["step"] else (ms, seq + 1)
        history.append(
            {
                "id": f"{ms}-{seq}",
                "type": item["type"],
                "aggregate_id": item["aggregate_id"],
                "payload": {"n": item["n"]},
            }
        )
    return history


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=event_lists, data=st.data())
def test_replay_equals_a_plain_fold(r, tmp_path_factory, raw, data):
    r.delete("s")
    history = build(raw)
    write(r, history)
    projection = ak.Projection(INITIAL, HANDLERS)
    cut = data.draw(st.integers(0, len(history) - 1))
    at = history[cut]["id"]
    table = ak.read_arrow(r, "s")
    everyone = projection.states_at(table, at=at).set_index("aggregate_id")
    written = {entry["aggregate_id"] for entry in history}
    for aggregate in ("a", "b", "c"):
        expected = plain_fold(history, aggregate, cut)
        if aggregate not in written:
            with pytest.raises(ak.AggregateNotFound):
                projection.state_at((r, "s"), aggregate, at=at)
            assert projection.state_at(table, aggregate, at=at, missing="initial") == INITIAL
            continue
        # Also an aggregate whose first event comes after the cut: its initial state.
        assert projection.state_at(table, aggregate, at=at) == expected
        assert projection.state_at((r, "s"), aggregate, at=at) == expected
        if aggregate in everyone.index:
            row = everyone.loc[aggregate]
            assert {"total": row["total"], "seen": row["seen"]} == expected
        else:
            assert expected == INITIAL
    # From a snapshot at an earlier cut, the answer is the same as from the first event.
    folder = tmp_path_factory.mktemp("snapshots")
    early = data.draw(st.integers(0, cut))
    projection.snapshot(table, at=history[early]["id"], path=folder)
    for aggregate in sorted(written):
        assert projection.state_at(table, aggregate, at=at, snapshots=folder) == plain_fold(
            history, aggregate, cut
        )
    from_snapshot = projection.states_at((r, "s"), at=at, snapshots=folder)
    assert from_snapshot.drop(columns=["last_ts"]).equals(
        projection.states_at((r, "s"), at=at).drop(columns=["last_ts"])
    )


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=event_lists, data=st.data())
def test_declarative_vectorised_equals_its_fold(r, raw, data):
    r.delete("s")
    history = build(raw)
    write(r, history)
    projection = ak.Projection.declarative(
        last={"last_n": "payload.n", "kind": "event_type"},
        count={"adds": "Add", "changes": ["Add", "Sub"], "all": "*"},
        sum={"total": {"Add": "payload.n", "Sub": "-payload.n"}},
    )
    at = history[data.draw(st.integers(0, len(history) - 1))]["id"]
    fast = projection.states_at((r, "s"), at=at)
    assert fast.attrs["engine"] == "duckdb"
    for row in fast.to_dict("records"):
        slow = projection.state_at((r, "s"), row["aggregate_id"], at=at)
        for field, value in slow.items():
            assert row[field] == value or math.isclose(row[field], value), (field, row, slow)


def test_declarative_validates_its_description():
    with pytest.raises(TypeError, match="at least one"):
        ak.Projection.declarative()
    with pytest.raises(ValueError, match="unique"):
        ak.Projection.declarative(last={"x": "payload.x"}, count={"x": "*"})
    with pytest.raises(TypeError, match="maps event types"):
        ak.Projection.declarative(sum={"x": "payload.x"})


@pytest.fixture
def late_events(r):
    """Record order differs from effective order: a deposit recorded late."""
    write(
        r,
        [
            {
                "id": f"{BASE_MS}-0",
                "type": "Add",
                "aggregate_id": "a",
                "payload": {"n": 10},
                "occurred_at": "2026-03-01T00:00:00Z",
            },
            {
                "id": f"{BASE_MS + 7_200_000}-0",
                "type": "Add",
                "aggregate_id": "a",
                "payload": {"n": 5},
                "occurred_at": "2026-03-01T02:00:00Z",
            },
            # recorded at 03:00 but it happened at 00:30
            {
                "id": f"{BASE_MS + 10_800_000}-0",
                "type": "Sub",
                "aggregate_id": "a",
                "payload": {"n": 7},
                "occurred_at": "2026-03-01T00:30:00Z",
            },
        ],
    )
    return r


def test_record_and_effective_clocks(late_events):
    projection = ak.Projection(INITIAL, HANDLERS)
    source = (late_events, "s")
    one_am = datetime(2026, 3, 1, 1, 0, tzinfo=UTC)
    # What the system knew at 01:00: only the first deposit.
    assert projection.state_at(source, "a", at=one_am)["total"] == 10
    # What had happened by 01:00, as we know today: the deposit and the late withdrawal.
    assert projection.state_at(source, "a", at=one_am, clock="effective")["total"] == 3
    history = projection.history(source, "a", clock="effective")
    assert history["total"].tolist() == [10, 3, 8]
    assert history.attrs["clock"] == "effective"
    frame = projection.states_at(source, at="2026-03-01T01:00Z", clock="effective")
    assert frame.attrs["clock"] == "effective" and frame["total"].tolist() == [3]
    with pytest.raises(ak.InvalidStreamID, match="record time"):
        projection.state_at(source, "a", at=f"{BASE_MS}-0", clock="effective")


def test_effective_time_needs_occurred_at(r):
    write(r, [{"id": f"{BASE_MS}-0", "type": "Add", "aggregate_id": "a", "payload": {"n": 1}}])
    with pytest.raises(ak.MissingEffectiveTime, match=f"`{BASE_MS}-0`"):
        ak.Projection(INITIAL, HANDLERS).state_at((r, "s"), "a", clock="effective")


def _versioned(r):
    write(
        r,
        [
            {
                "id": f"{BASE_MS}-0",
                "type": "Add",
                "aggregate_id": "a",
                "version": 1,
                "payload": {"amount": "12"},
            },
            {
                "id": f"{BASE_MS}-1",
                "type": "Add",
                "aggregate_id": "a",
                "version": 2,
                "payload": {"amount": 3},
            },
            {
                "id": f"{BASE_MS}-2",
                "type": "Add",
                "aggregate_id": "a",
                "version": 3,
                "payload": {"n": 4},
            },
        ],
    )


def upcast_add_v1_v2(payload):
    return {"amount": int(payload["amount"])}


def upcast_add_v2_v3(payload):
    return {"n": payload["amount"]}


def test_upcasters_chain_to_the_current_version(r):
    _versioned(r)
    seen = []

    def add_v3(state, event):
        seen.append(event["schema_version"])
        return add(state, event)

    projection = ak.Projection(
        INITIAL,
        {"Add": add_v3},
        upcasters={("Add", 1): upcast_add_v1_v2, ("Add", 2): upcast_add_v2_v3},
    )
    assert projection.state_at((r, "s"), "a") == {"total": 19, "seen": 3}
    assert seen == [3, 3, 3]


def test_a_missing_upcaster_is_named_before_replay(r):
    _versioned(r)
    projection = ak.Projection(INITIAL, HANDLERS, upcasters={("Add", 2): upcast_add_v2_v3})
    with pytest.raises(ak.MissingUpcaster) as info:
        projection.state_at((r, "s"), "a")
    assert "`Add` v1" in str(info.value) and f"`{BASE_MS}-0`" in str(info.value)
    assert info.value.version == 1


def test_unknown_types_ignored_or_refused(r):
    write(r, [{"id": f"{BASE_MS}-0", "type": "Mystery", "aggregate_id": "a", "payload": {}}])
    assert ak.Projection(INITIAL, HANDLERS).state_at((r, "s"), "a") == INITIAL
    with pytest.raises(ak.UnknownEventType, match="`Mystery`") as info:
        ak.Projection(INITIAL, HANDLERS, unknown="raise").state_at((r, "s"), "a")
    assert info.value.event_id == f"{BASE_MS}-0"


def test_a_failing_handler_names_the_event(r):
    write(r, [{"id": f"{BASE_MS}-0", "type": "Add", "aggregate_id": "a", "payload": {"x": 1}}])
    with pytest.raises(ak.HandlerFailed, match=f"`Add` failed on event `{BASE_MS}-0`.*KeyError"):
        ak.Projection(INITIAL, HANDLERS).state_at((r, "s"), "a")


def test_events_are_read_only(r):
    write(r, [{"id": f"{BASE_MS}-0", "type": "Add", "aggregate_id": "a", "payload": {"n": 1}}])

    def meddle(state, event):
        event["payload"]["n"] = 99
        return state

    with pytest.raises(ak.HandlerFailed, match="does not support item assignment"):
        ak.Projection(INITIAL, {"Add": meddle}).state_at((r, "s"), "a")


def test_a_snapshot_from_other_code_is_not_used(r, tmp_path):
    history = build([{"step": 1, "type": "Add", "aggregate_id": "a", "n": 5}] * 4)
    write(r, history)

    def add_wrong(state, event):
        return {**state, "total": state["total"] + 1000, "seen": state["seen"] + 1}

    ak.Projection(INITIAL, {"Add": add_wrong}).snapshot(
        (r, "s"), at=history[1]["id"], path=tmp_path
    )
    right = ak.Projection(INITIAL, HANDLERS)
    assert right.state_at((r, "s"), "a", snapshots=tmp_path) == {"total": 20, "seen": 4}
    # Its own snapshot is used: a later cut than the snapshot's continues from it.
    right.snapshot((r, "s"), at=history[1]["id"], path=tmp_path)
    assert len(list(tmp_path.rglob("*.parquet"))) == 2
    assert right.state_at((r, "s"), "a", snapshots=tmp_path) == {"total": 20, "seen": 4}


def test_a_snapshot_is_refused_for_states_json_cannot_hold(r, tmp_path):
    write(r, [{"id": f"{BASE_MS}-0", "type": "Add", "aggregate_id": "a", "payload": {"n": 1}}])
    projection = ak.Projection(set, {"Add": lambda state, event: state | {event["id"]}})
    with pytest.raises(ak.ProjectionError, match="JSON"):
        projection.snapshot((r, "s"), path=tmp_path)


def test_history_copies_each_state(r):
    write(r, build([{"step": 1, "type": "Add", "aggregate_id": "a", "n": 2}] * 3))

    def add_in_place(state, event):
        state["total"] += event["payload"]["n"]
        return state

    history = ak.Projection({"total": 0}, {"Add": add_in_place}).history((r, "s"), "a")
    assert history["total"].tolist() == [2, 4, 6]
    assert list(history.columns) == ["id", "ts", "occurred_at", "event_type", "total"]


def test_diff_between_two_moments(r):
    write(
        r,
        [
            {"id": f"{BASE_MS}-0", "type": "Add", "aggregate_id": "a", "payload": {"n": 5}},
            {"id": f"{BASE_MS + 10}-0", "type": "Add", "aggregate_id": "b", "payload": {"n": 1}},
            {"id": f"{BASE_MS + 20}-0", "type": "Add", "aggregate_id": "a", "payload": {"n": 1}},
        ],
    )
    diff = ak.Projection(INITIAL, HANDLERS).diff((r, "s"), f"{BASE_MS}-0", f"{BASE_MS + 20}-0")
    assert diff.to_dict("records") == [
        {"aggregate_id": "a", "field": "seen", "before": 1, "after": 2},
        {"aggregate_id": "a", "field": "total", "before": 5, "after": 6},
        {"aggregate_id": "b", "field": "seen", "before": None, "after": 1},
        {"aggregate_id": "b", "field": "total", "before": None, "after": 1},
    ]


def test_a_dataframe_source_answers_like_the_table(r):
    write(
        r,
        build(
            [
                {"step": 1, "type": t, "aggregate_id": a, "n": 3}
                for t, a in [("Add", "a"), ("Sub", "b"), ("Add", "b"), ("Reset", "a")]
            ]
        ),
    )
    projection = ak.Projection(INITIAL, HANDLERS)
    from_table = projection.states_at(ak.read_arrow(r, "s"))
    from_frame = projection.states_at(ak.read_pandas(r, "s"))
    pd.testing.assert_frame_equal(from_table, from_frame)
    with pytest.raises(TypeError, match=r"pyarrow\.Table"):
        projection.states_at([1, 2, 3])


def test_one_stream_per_aggregate_reads_only_that_stream(redis_server, r):
    for account in ("1", "2"):
        write(
            r,
            [
                {
                    "id": f"{BASE_MS}-0",
                    "type": "Add",
                    "aggregate_id": "",
                    "payload": {"n": int(account)},
                }
            ],
            stream=f"account:{account}",
        )
    # This user may read account:1 only: touching account:2 would fail.
    r.acl_setuser(
        "narrow",
        enabled=True,
        passwords=["+pw"],
        keys=["account:1"],
        commands=["+type", "+exists", "+xrange", "+xlen", "+ping", "+hello", "+auth"],
    )
    narrow = ak.connect(f"redis://narrow:pw@127.0.0.1:{redis_server.port}/0")
    envelope = ak.Envelope(aggregate_id=None)
    projection = ak.Projection(INITIAL, HANDLERS, envelope=envelope)
    assert projection.state_at((narrow, "account:{aggregate_id}"), "1") == {"total": 1, "seen": 1}
    with pytest.raises(ak.AggregateNotFound, match=r"closest ids: `1`\. "):
        projection.state_at((r, "account:{aggregate_id}"), "11")  # ids from the keys
    everyone = projection.states_at((r, "account:{aggregate_id}"))
    assert everyone["aggregate_id"].tolist() == ["1", "2"] and everyone["total"].tolist() == [1, 2]
    r.acl_deluser("narrow")


def test_arguments_are_checked():
    with pytest.raises(TypeError, match="non-empty"):
        ak.Projection(INITIAL, {})
    with pytest.raises(TypeError, match="not a function"):
        ak.Projection(INITIAL, {"Add": 3})
    with pytest.raises(ValueError, match="unknown"):
        ak.Projection(INITIAL, HANDLERS, unknown="skip")
    with pytest.raises(TypeError, match="from_version"):
        ak.Projection(INITIAL, HANDLERS, upcasters={"Add": upcast_add_v1_v2})


def test_state_at_before_anything_is_the_initial_state(r):
    write(r, [{"id": f"{BASE_MS}-0", "type": "Add", "aggregate_id": "a", "payload": {"n": 1}}])
    before = datetime(2026, 3, 1) - timedelta(seconds=1)
    assert ak.Projection(INITIAL, HANDLERS).state_at((r, "s"), "a", at=before) == INITIAL
    assert ak.Projection(INITIAL, HANDLERS).states_at((r, "s"), at=before).empty


def test_a_table_with_kept_payloads_replays_exact_types(r):
    _versioned(r)  # `amount` is text in v1, a number in v2: the typed column becomes text
    projection = ak.Projection(
        INITIAL, HANDLERS, upcasters={("Add", 1): upcast_add_v1_v2, ("Add", 2): upcast_add_v2_v3}
    )
    exact = ak.read_arrow(r, "s", keep_payload=True)
    assert exact.column("payload").to_pylist()[1] == '{"amount": 3}'
    assert projection.state_at(exact, "a") == {"total": 19, "seen": 3}
    with pytest.raises(ak.HandlerFailed, match="unsupported operand"):
        projection.state_at(ak.read_arrow(r, "s"), "a")  # "3" + 12: why keep_payload exists


def test_a_malformed_payload_is_named_when_a_handler_reads_it(r):
    # One bad payload among a hundred good ones: within the envelope's allowance, so the
    # replay runs and the handler that reads it is told why it cannot.
    for i in range(100):
        r.xadd(
            "s", {"type": "Add", "aggregate_id": "b", "payload": '{"n": 1}'}, id=f"{BASE_MS}-{i}"
        )
    r.xadd("s", {"type": "Add", "aggregate_id": "a", "payload": "{oops"}, id=f"{BASE_MS}-100")
    with pytest.raises(ak.HandlerFailed, match="payload cannot be used: payload is not valid JSON"):
        ak.Projection(INITIAL, HANDLERS).state_at((r, "s"), "a")


def _handler_in_a_module(helper_body, rate):
    """Build a handler whose module defines a helper and a constant, as user code would."""
    namespace: dict[str, object] = {}
    exec(
        f"RATE = {rate}\n"
        f"def fee(amount):\n    return {helper_body}\n"
        "def add(state, event):\n"
        "    return {**state, 'total': state['total'] + fee(event['payload']['n'])}\n",
        namespace,
    )
    return namespace["add"]


def test_the_fingerprint_follows_helpers_and_constants():
    def print_of(helper_body, rate):
        return ak.Projection(INITIAL, {"Add": _handler_in_a_module(helper_body, rate)}).fingerprint

    base = print_of("amount * RATE", 0.5)
    assert base == print_of("amount * RATE", 0.5)
    assert base != print_of("amount * RATE + 1", 0.5)  # the helper changed
    assert base != print_of("amount * RATE", 0.25)  # a constant it reads changed


def test_states_at_needs_aggregate_ids(r):
    for i in range(3):
        r.xadd("log", {"type": "Ping", "payload": json.dumps({"n": i})})
    with pytest.raises(ValueError, match="None of the 3 events has an aggregate id"):
        ak.Projection.declarative(count={"pings": "Ping"}).states_at((r, "log"))
