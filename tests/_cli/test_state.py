"""`auditkit state` computes a projection's state: a module's, or one described by options."""

from __future__ import annotations

import json
import textwrap

import pytest

import auditkit as ak
from auditkit._cli.main import main

BASE_MS = 1_772_323_200_000
MODULE = textwrap.dedent(
    """
    import auditkit as ak

    def opened(state, event):
        return {**state, "owner": event["payload"]["owner"]}

    def moved(state, event):
        sign = 1 if event["event_type"] == "Deposited" else -1
        return {**state, "balance": state["balance"] + sign * event["payload"]["amount"]}

    accounts = ak.Projection(
        initial=lambda: {"owner": None, "balance": 0},
        handlers={"Opened": opened, "Deposited": moved, "Withdrawn": moved},
    )
    not_a_projection = 42
    """
)


@pytest.fixture
def accounts(r, redis_server, tmp_path, monkeypatch):
    """acct-1: opened, +100, -30 on 1 March; +5 on 2 March. Type inside a `kind` field."""
    day = 86_400_000
    for i, (kind, payload, at) in enumerate(
        [
            ("Opened", {"owner": "ada"}, 0),
            ("Deposited", {"amount": 100}, 1),
            ("Withdrawn", {"amount": 30}, 2),
            ("Deposited", {"amount": 5}, day),
        ]
    ):
        r.xadd(
            "ledger",
            {"kind": kind, "account": "acct-1", "payload": json.dumps(payload)},
            id=f"{BASE_MS + at}-{i}",
        )
    (tmp_path / "bank.py").write_text(MODULE)
    (tmp_path / "envelope.toml").write_text("event_type = 'kind'\naggregate_id = 'account'\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return ["--redis-url", redis_server.url, "--envelope", "envelope.toml"]


def _state(capsys) -> dict:
    return {row["field"]: row["value"] for row in json.loads(capsys.readouterr().out)}


def test_a_projection_from_a_module_as_of_a_time(accounts, capsys):
    argv = ["state", "ledger", "acct-1", "--projection", "bank:accounts", *accounts]
    assert main([*argv, "--format", "json"]) == 0
    assert _state(capsys) == {"owner": "ada", "balance": 75}
    assert main([*argv, "--at", "2026-03-01T12:00Z", "--format", "json"]) == 0
    assert _state(capsys) == {"owner": "ada", "balance": 70}
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert "balance" in table and "75" in table and "field" in table


def test_a_declarative_projection_from_options(accounts, capsys):
    argv = [
        "state", "ledger", "acct-1", *accounts, "--format", "json",
        "--last", "owner=payload.owner",
        "--count", "deposits=Deposited",
        "--count", "moves=Deposited,Withdrawn",
        "--sum", "balance=Deposited:payload.amount",
        "--sum", "balance=Withdrawn:-payload.amount",
    ]  # fmt: skip
    assert main(argv) == 0
    assert _state(capsys) == {"owner": "ada", "deposits": 2, "moves": 3, "balance": 75}
    assert main([*argv, "--at", f"{BASE_MS + 1}-1"]) == 0
    assert _state(capsys) == {"owner": "ada", "deposits": 1, "moves": 1, "balance": 100}


def test_without_a_projection_the_last_values_and_counts(accounts, capsys):
    assert main(["state", "ledger", "acct-1", *accounts, "--format", "json"]) == 0
    state = _state(capsys)
    assert state["amount"] == 5 and state["owner"] == "ada" and state["events.Deposited"] == 2


@pytest.mark.parametrize(
    ("options", "shown"),
    [
        (["--projection", "bank"], "MODULE:OBJECT"),
        (["--projection", "nowhere:accounts"], "no module `nowhere`"),
        (["--projection", "bank:missing"], "`bank` has no `missing`"),
        (["--projection", "bank:not_a_projection"], "not an auditkit Projection"),
        (["--projection", "bank:accounts", "--last", "o=payload.owner"], "one or the other"),
        (["--last", "owner"], "--last `owner` is not FIELD=COLUMN"),
        (["--sum", "balance=payload.amount"], "--sum `balance=payload.amount`"),
        (["--last", "owner=payload.ownr"], "`payload.owner`"),
    ],
)
def test_a_projection_that_cannot_work_is_one_usage_line(accounts, capsys, options, shown):
    assert main(["state", "ledger", "acct-1", *accounts, *options]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("auditkit: error: ") and shown in err, err
    assert "Traceback" not in err


FINES = 'preset = "flat"\nevent_type = "activity"\naggregate_id = "case"\n'
PAID = ["--sum", "paid=Payment:payload.paymentAmount"]


@pytest.fixture
def fines(r, redis_server, tmp_path, capsys):
    """Road-traffic fines as flat fields, one per column, as a CSV export writes them;
    `totalPaymentAmount` is the running sum of `paymentAmount` the source itself kept.
    Returns `run(command, *args)` -> (exit code, stdout, stderr)."""
    day = 86_400_000
    rows = [
        ("N1", "Create Fine", {"amount": "35.0"}),
        ("N1", "Send Fine", {"expense": "11.0"}),
        ("N2", "Create Fine", {"amount": "22.0"}),
        ("N1", "Payment", {"paymentAmount": "10.0", "totalPaymentAmount": "10.0"}),
        ("N1", "Payment", {"paymentAmount": "20.5", "totalPaymentAmount": "30.5"}),
    ]
    for i, (fine, kind, fields) in enumerate(rows):
        r.xadd("fines", {"case": fine, "activity": kind, **fields}, id=f"{BASE_MS + i * day}-0")
    envelope = tmp_path / "fines.toml"
    envelope.write_text(FINES)

    def run(command, *args):
        argv = [command, *args, "--envelope", str(envelope), "--redis-url", redis_server.url]
        code = main(argv)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def _paid(out):
    return float({row["field"]: row["value"] for row in json.loads(out)}["paid"])


def test_a_state_before_the_first_event_of_a_summed_type_is_zero(fines):
    code, out, err = fines("state", "fines", "N1", *PAID, "--at", "2026-03-03", "--format", "json")
    assert code == 0, err  # sent, not yet paid: no payment column yet, and no slip either
    assert _paid(out) == 0
    code, out, _ = fines("state", "fines", "N1", *PAID, "--format", "json")
    assert code == 0 and _paid(out) == 30.5  # the source's own totalPaymentAmount
    code, _, err = fines("state", "fines", "N1", "--sum", "paid=Paymnt:payload.paymentAmount")
    assert code == 2 and "type `Paymnt`" in err and "did you mean `Payment`" in err
    code, _, err = fines("state", "fines", "N1", "--count", "payments=payment")
    assert code == 2 and "did you mean `Payment`" in err


def test_state_and_query_name_a_bad_archive_and_a_trimmed_stream(fines, r, tmp_path):
    code, _, err = fines("state", "fines", "N1", *PAID, "--archive", str(tmp_path / "acr"))
    assert code == 2 and "acr` does not exist" in err
    code, _, err = fines("query", "--archive", str(tmp_path / "acr"), "--live", "select 1")
    assert code == 2 and "acr` does not exist" in err  # not an empty answer
    arc = str(tmp_path / "arc")
    assert fines("export", "fines", "--archive", arc)[0] == 0
    r.xtrim("fines", maxlen=1, approximate=False)
    code, out, err = fines("state", "fines", "N1", *PAID, "--format", "json")
    assert code == 0 and _paid(out) == 20.5  # the live entry alone...
    assert "lost 4 entries to trimming" in err and "--archive" in err  # ...and it says so
    code, out, err = fines("state", "fines", "N1", *PAID, "--archive", arc, "--format", "json")
    assert code == 0 and _paid(out) == 30.5 and "lost" not in err
    r.xadd("other", {"activity": "Create Fine", "case": "N9"})
    assert fines("export", "other", "--archive", str(tmp_path / "arc2"))[0] == 0
    code, _, err = fines("state", "fines", "N1", *PAID, "--archive", str(tmp_path / "arc2"))
    assert code == 2 and "does not hold stream `fines`; it holds `other`" in err


def test_an_unknown_aggregate_names_the_closest_ids(fines):
    code, _, err = fines("state", "fines", "n1")  # the case of a slip
    assert code == 2 and "No event of aggregate `n1`" in err and "The closest ids: `N1`" in err


def test_the_summary_gives_the_time_the_clock_orders_by(r, redis_server, capsys):
    # A backfill: recorded in March 2026, occurred in January 2025.
    for i, kind in enumerate(["Opened", "Deposited"]):
        r.xadd(
            "backfill",
            {"type": kind, "aggregate_id": "acct-1", "occurred_at": f"2025-01-0{i + 1}T00:00:00Z",
             "payload": json.dumps({"amount": 5})},
            id=f"{BASE_MS + i}-0",
        )  # fmt: skip
    argv = ["state", "backfill", "acct-1", "--redis-url", redis_server.url]
    assert main(argv) == 0
    assert "(recorded 2026-03-01" in capsys.readouterr().err
    assert main([*argv, "--effective"]) == 0
    err = capsys.readouterr().err
    assert "(occurred 2025-01-02" in err and "effective time" in err


def test_drift_and_state_read_a_trimmed_streams_history_from_its_archive(
    fines, r, tmp_path, monkeypatch
):
    monkeypatch.setenv("FINES_KEY", "k" * 32)
    arc = str(tmp_path / "arc")
    private = ("--pseudonymize", "case", "--key-env", "FINES_KEY")
    assert fines("export", "fines", "--archive", arc, *private)[0] == 0
    r.xtrim("fines", maxlen=1, approximate=False)
    r.xadd("fines", {"case": "N1", "activity": "Payment", "paymentAmount": "1.5"})
    code, _, err = fines("drift", "fines", "--window", "day")
    assert "lost 4 entries to trimming" in err and "this drift reads its 2 live" in err
    code, _, err = fines(
        "drift", "fines", "--window", "day", "--archive", arc, "--key-env", "FINES_KEY"
    )
    assert "lost" not in err and "over 6 events" in err, err
    # The live tail is pseudonymised as the files are: the aggregate is one, under its
    # pseudonym (the key decides it), with its whole history.
    key = ("--archive", arc, "--key-env", "FINES_KEY")
    code, out, err = fines("state", "fines", "N1", *PAID, *key, "--format", "json")
    assert code == 2 and "No event of aggregate `N1`" in err  # ids are pseudonyms there
    history = ak.Archive(arc, key="k" * 32).events_table(stream="fines", live=r)
    ids = history.column("aggregate_id").to_pylist()
    n1 = max(set(ids), key=ids.count)  # N1: 5 of the 6 events, under one pseudonym
    assert n1.startswith("hmac:") and ids.count(n1) == 5
    code, out, err = fines("state", "fines", n1, *PAID, *key, "--format", "json")
    assert code == 0 and _paid(out) == 32.0, err  # 10 + 20.5 archived, 1.5 live


def test_state_and_drift_name_an_archive_whose_manifest_was_lost(fines, r, tmp_path):
    import shutil

    arc = tmp_path / "arc"
    assert fines("export", "fines", "--archive", str(arc))[0] == 0
    shutil.rmtree(arc / "_manifest")  # a cleanup job took it; the data files stay
    for command in (["state", "fines", "N1"], ["drift", "fines"]):
        code, _, err = fines(*command, "--archive", str(arc))
        assert code == 3 and "no manifest" in err and "auditkit repair fines" in err, err


def test_a_state_before_the_aggregates_first_event_is_its_initial_one(fines):
    # N2 is created on 3 March: on 2 March it did not exist yet, and that is an answer.
    code, out, err = fines("state", "fines", "N2", *PAID, "--at", "2026-03-02", "--format", "json")
    assert code == 0, err
    assert _paid(out) == 0
    assert "N2: no event up to 2026-03-02 (record time), so its state then is the initial" in err
    assert "its first event is 1772496000000-0" in err
    code, _, err = fines("state", "fines", "N3", *PAID, "--at", "2026-03-02")
    assert code == 2 and "No event of aggregate `N3`" in err  # never: still an error
