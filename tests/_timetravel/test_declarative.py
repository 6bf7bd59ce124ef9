"""Declarative sums over fields whose type changed between schema versions, on real streams.

`amount` written as an int in v1 and as text in v2 loads as a text column marked
`auditkit.mixed_types`; a sum must add the numbers it spells, in DuckDB (`states_at`) and
in the Python handler (`state_at`, `history`) alike, or refuse with one FieldTypeMismatch.
"""

import json
import math
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import auditkit as ak

BASE_MS = 1_772_323_200_000  # 2026-03-01T00:00:00Z
BALANCE = {"balance": {"Deposited": "payload.amount", "Withdrawn": "-payload.amount"}}


def write(r, events, stream="s"):
    """Events as (type, aggregate, version, payload), one millisecond apart."""
    pipe = r.pipeline(transaction=False)
    for n, (event_type, aggregate, version, payload) in enumerate(events):
        fields = {
            "type": event_type,
            "aggregate_id": aggregate,
            "schema_version": str(version),
            "payload": json.dumps(payload),
        }
        pipe.xadd(stream, fields, id=f"{BASE_MS + n}-0")
    pipe.execute()


def sources(r, tmp_path, stream="s"):
    """The same events from each kind of source a projection takes."""
    archive = ak.Archive(tmp_path / "archive")
    archive.export(r, stream)
    return {
        "redis": (r, stream),
        "table": ak.read_arrow(r, stream),
        "table-with-payload": ak.read_arrow(r, stream, keep_payload=True),
        "frame": ak.read_pandas(r, stream),
        "archive": archive,
    }


MIXED = [
    ("Deposited", "a", 1, {"amount": 12}),
    ("Deposited", "a", 2, {"amount": "12.50"}),
    ("Withdrawn", "a", 1, {"amount": 2}),
    ("Withdrawn", "a", 2, {"amount": "0.25"}),
    ("Deposited", "b", 2, {"amount": "100"}),
    ("Deposited", "b", 1, {"amount": -7}),
]


def test_text_spelling_a_number_is_summed_as_that_number(r, tmp_path):
    write(r, MIXED)
    assert ak.read_arrow(r, "s").schema.field("payload.amount").metadata == {
        b"auditkit.mixed_types": b"1"
    }
    projection = ak.Projection.declarative(sum=BALANCE, count={"n": "*"})
    for name, source in sources(r, tmp_path).items():
        frame = projection.states_at(source)
        assert frame.attrs["engine"] == "duckdb", name
        # 12 + 12.5 - 2 - 0.25 and 100 - 7: exact in binary, so exact equality.
        assert frame.set_index("aggregate_id")["balance"].to_dict() == {"a": 22.25, "b": 93}, name
        assert projection.state_at(source, "a")["balance"] == 22.25, name
        assert projection.state_at(source, "b")["balance"] == 93, name
        history = projection.history(source, "a")
        assert history["balance"].tolist() == [12, 24.5, 22.5, 22.25], name


def test_a_sum_of_ints_stays_int_on_both_paths(r):
    write(r, [("Deposited", "a", 1, {"amount": 3}), ("Deposited", "a", 2, {"amount": "4"})])
    projection = ak.Projection.declarative(sum=BALANCE)
    frame = projection.states_at((r, "s"))
    assert str(frame["balance"].dtype) == "int64" and frame["balance"].tolist() == [7]
    state = projection.state_at((r, "s"), "a")
    assert state == {"balance": 7} and type(state["balance"]) is int


def test_ints_and_floats_add_as_floats(r):
    write(
        r,
        [
            ("Deposited", "a", 1, {"amount": 1}),
            ("Deposited", "a", 2, {"amount": 0.5}),
            ("Bonus", "a", 1, {"bonus": 0.25}),
        ],
    )
    projection = ak.Projection.declarative(
        sum={"balance": {"Deposited": "payload.amount", "Bonus": "payload.bonus"}}
    )
    assert projection.states_at((r, "s"))["balance"].tolist() == [1.75]
    assert projection.state_at((r, "s"), "a") == {"balance": 1.75}


def test_ints_beyond_2_53_are_not_added_as_floats(r):
    write(
        r,
        [("Deposited", "a", 1, {"amount": 2**53 + 1}), ("Bonus", "a", 1, {"bonus": 0.5})],
    )
    projection = ak.Projection.declarative(
        sum={"balance": {"Deposited": "payload.amount", "Bonus": "payload.bonus"}}
    )
    for call in (
        lambda: projection.states_at((r, "s")),
        lambda: projection.state_at((r, "s"), "a"),
    ):
        with pytest.raises(ak.FieldTypeMismatch, match=r"int beyond 2\*\*53 in Deposited v1") as e:
            call()
        assert e.value.problems == ["int beyond 2**53"]
    # Alone, the ints are summed exactly.
    ints = ak.Projection.declarative(sum={"balance": {"Deposited": "payload.amount"}})
    assert ints.states_at((r, "s"))["balance"].tolist() == [2**53 + 1]
    assert ints.state_at((r, "s"), "a") == {"balance": 2**53 + 1}


def test_text_that_is_no_number_is_one_error_saying_where(r, tmp_path):
    write(r, [*MIXED, ("Deposited", "c", 2, {"amount": "twelve"})])
    projection = ak.Projection.declarative(sum=BALANCE)
    bad_id = f"{BASE_MS + len(MIXED)}-0"
    for name, source in sources(r, tmp_path).items():
        for call, args in ((projection.states_at, (source,)), (projection.state_at, (source, "c"))):
            with pytest.raises(ak.FieldTypeMismatch) as raised:
                call(*args)
            error = raised.value
            assert isinstance(error, TypeError) and isinstance(error, ak.ProjectionError), name
            message = str(error)
            assert message.startswith("Cannot sum `payload.amount` into `balance`: it holds"), name
            assert f"text in Deposited v2 (e.g. `'twelve'` at `{bad_id}`)" in message, name
            assert "upcaster for ('Deposited', 2) that makes `amount` a number" in message, name
            assert error.field == "balance" and error.column == "payload.amount"
            assert error.problems == ["text"]
            assert error.types["text"] == ["Deposited v2"]
        # Where the payload as written is at hand, the message tells ints from number text.
        if name in ("redis", "table-with-payload"):
            assert error.types == {"text": ["Deposited v2"]}  # state_at("c") sees c only
            with pytest.raises(ak.FieldTypeMismatch) as raised:
                projection.states_at(source)
            assert raised.value.types == {
                "int": ["Deposited v1", "Withdrawn v1"],
                "number as text": ["Deposited v2", "Withdrawn v2"],
                "text": ["Deposited v2"],
            }
        # An aggregate whose own values are all numbers still has its answer.
        assert projection.state_at(source, "a") == {"balance": 22.25}, name


def test_last_values_keep_the_type_they_were_written_with(r, tmp_path):
    write(r, MIXED)
    projection = ak.Projection.declarative(last={"amount": "payload.amount"})
    for name, source in sources(r, tmp_path).items():
        fast = projection.states_at(source).set_index("aggregate_id")["amount"].to_dict()
        slow = {a: projection.state_at(source, a)["amount"] for a in ("a", "b")}
        assert fast == slow, name
        if name in ("redis", "table-with-payload"):
            # The payload as written is at hand: -7 was written as an int.
            assert fast == {"a": "0.25", "b": -7} and type(fast["b"]) is int, name
        else:
            assert fast == {"a": "0.25", "b": "-7"}, name  # all the table holds


def test_an_upcaster_repairs_what_the_sum_refused(r):
    write(r, [*MIXED, ("Deposited", "c", 2, {"amount": "twelve"})])

    def words_to_numbers(payload):
        return {**payload, "amount": {"twelve": 12}.get(payload["amount"], payload["amount"])}

    def unchanged(payload):
        return payload

    projection = ak.Projection.declarative(
        sum=BALANCE, upcasters={("Deposited", 1): unchanged, ("Deposited", 2): words_to_numbers}
    )
    frame = projection.states_at((r, "s"))
    assert frame.attrs["engine"] == "python"  # upcasters are Python code
    assert frame.set_index("aggregate_id")["balance"].to_dict() == {"a": 22.25, "b": 93, "c": 12}
    assert projection.state_at((r, "s"), "c") == {"balance": 12}


def test_an_upcaster_that_leaves_text_is_named_too(r):
    write(r, [("Deposited", "a", 1, {"amount": 5}), ("Deposited", "a", 2, {"amount": 1})])
    projection = ak.Projection.declarative(
        sum=BALANCE, upcasters={("Deposited", 1): lambda p: {"amount": "five"}}
    )
    with pytest.raises(ak.FieldTypeMismatch, match="text in Deposited v1") as raised:
        projection.states_at((r, "s"))
    assert raised.value.types == {"text": ["Deposited v1"], "int": ["Deposited v2"]}


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("0.12345678901234567", "number as text beyond int64 or float precision"),
        ("123456789012345.6", "number as text beyond int64 or float precision"),
        ("1e999", "number as text beyond int64 or float precision"),
        (str(2**64), "number as text beyond int64 or float precision"),
        ("12,50", "text"),
        (" 12", "text"),
        ("", "text"),
        (True, "bool"),
        ([1], "list"),
        ({"value": 1}, "object"),
    ],
)
def test_values_a_sum_cannot_add_exactly_are_refused(r, value, kind):
    write(r, [("Deposited", "a", 1, {"amount": 1}), ("Deposited", "a", 2, {"amount": value})])
    projection = ak.Projection.declarative(sum=BALANCE)
    for call in (
        lambda: projection.states_at((r, "s")),
        lambda: projection.state_at((r, "s"), "a"),
    ):
        with pytest.raises(ak.FieldTypeMismatch) as raised:
            call()
        assert raised.value.problems == [kind]
        assert raised.value.types[kind] == ["Deposited v2"]


@pytest.mark.parametrize(
    ("text", "number"),
    [("-3", -3), ("0", 0), ("1e3", 1000.0), ("-0.5", -0.5), ("12345678901234.5", None)],
)
def test_number_literals_read_as_json_would(r, text, number):
    """An integer literal is an int; any other JSON number literal a float, if exact."""
    write(r, [("Deposited", "a", 1, {"amount": 0}), ("Deposited", "a", 2, {"amount": text})])
    projection = ak.Projection.declarative(sum=BALANCE)
    want = json.loads(text) if number is None else number
    assert projection.state_at((r, "s"), "a") == {"balance": want}
    assert projection.states_at((r, "s"))["balance"].tolist() == [want]


amounts = st.one_of(
    st.integers(-(10**9), 10**9),
    st.integers(-(10**9), 10**9).map(str),
    st.decimals(-(10**6), 10**6, places=2, allow_nan=False).map(float),
    st.decimals(-(10**6), 10**6, places=2, allow_nan=False).map(lambda d: f"{d:.2f}"),
)
events = st.lists(
    st.tuples(
        st.sampled_from(["Deposited", "Withdrawn", "Noise"]),
        st.sampled_from(["a", "b", "c"]),
        st.sampled_from([1, 2]),
        amounts,
    ),
    min_size=1,
    max_size=30,
)


def number(value):
    """The reference reading of a value: JSON's, for a number or for the text of one."""
    return json.loads(value) if isinstance(value, str) else value


def coded_handler(sign):
    def apply(state, event):
        return {"balance": state["balance"] + sign * number(event["payload"]["amount"])}

    return apply


CODED = ak.Projection(
    {"balance": 0}, {"Deposited": coded_handler(1), "Withdrawn": coded_handler(-1)}
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(history=events)
def test_declarative_sum_over_mixed_types_equals_the_coded_fold(r, history):
    r.delete("s")
    write(r, [(t, a, v, {"amount": amount}) for t, a, v, amount in history])
    declarative = ak.Projection.declarative(sum=BALANCE, last={"last": "payload.amount"})
    everyone = declarative.states_at((r, "s")).set_index("aggregate_id")
    fast = everyone["balance"].to_dict()
    frame = CODED.states_at((r, "s"))  # no row for an aggregate with Noise only
    coded = dict(zip(frame["aggregate_id"], frame.get("balance", []), strict=True))
    exact: dict[str, Decimal] = {}
    for event_type, aggregate, _, amount in history:
        sign = {"Deposited": 1, "Withdrawn": -1}.get(event_type, 0)
        exact[aggregate] = exact.get(aggregate, Decimal(0)) + sign * Decimal(str(number(amount)))
    assert set(fast) == set(exact)
    for aggregate, total in exact.items():
        state = declarative.state_at((r, "s"), aggregate)
        last = everyone.loc[aggregate, "last"]
        assert state["last"] == last  # as written, on both paths: a number, or text
        assert isinstance(state["last"], str) == isinstance(last, str), (state, last)
        slow = state["balance"]
        ours = (fast[aggregate], slow, coded.get(aggregate, 0))
        for value in ours:
            # Floats are added in a different order by each path: equal up to rounding.
            assert math.isclose(value, float(total), rel_tol=1e-12, abs_tol=1e-6), (ours, total)
        if all(isinstance(number(a), int) for t, g, _, a in history if g == aggregate):
            assert fast[aggregate] == slow == int(total)  # ints only: exact, and ints


def test_a_misspelled_column_is_refused_not_read_as_empty(r):
    write(r, [("Deposited", "a", 1, {"amount": 5}), ("Deposited", "a", 2, {"amount": 7})])
    for spec in (
        {"sum": {"balance": {"Deposited": "payload.amuont"}}},
        {"sum": {"balance": {"Deposited": "amount"}}},  # the payload prefix left out
        {"last": {"latest": "payload.amont"}},
    ):
        projection = ak.Projection.declarative(**spec)
        for call in (
            lambda p=projection: p.states_at((r, "s")),
            lambda p=projection: p.state_at((r, "s"), "a"),
        ):
            with pytest.raises(ak.ProjectionError, match=r"did you mean `payload\.amount`"):
                call()
    # a field no event has carried yet (and no slip for another) is fine: zero
    fresh = ak.Projection.declarative(sum={"refunds": {"Refunded": "payload.refund"}})
    assert fresh.state_at((r, "s"), "a") == {"refunds": 0}
