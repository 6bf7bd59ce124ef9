"""Every command that prints rows, in each of its formats, on streams that are not the
demo's: JSON is one document, CSV one table, and the table fits 100 columns.

The commands are those of the parser that have --format: one added later without a case
here fails `test_every_command_with_a_format_has_a_case`, naming it.
"""

from __future__ import annotations

import csv
import io
import json

import pytest
from test_help import _commands, _options

from auditkit._cli.main import main

WIDTH = 100
LONG_KEY = "tenant-with-a-rather-long-name:region-eu-west:" * 3 + "orders"
BASE_MS = 1_772_323_200_000

CASES = {
    "streams": lambda arc: ["streams", "tenant*"],
    "audit": lambda arc: ["audit", LONG_KEY, "--terminal", "Closed", "--archive", arc],
    "drift": lambda arc: ["drift", LONG_KEY, "--window", "day"],
    "state": lambda arc: ["state", LONG_KEY, "o-1"],
    "query": lambda arc: [
        "query",
        "select stream, id, event_type, aggregate_id from events order by id",
        "--archive",
        arc,
    ],
    "verify": lambda arc: ["verify", LONG_KEY, "--archive", arc],
    "inspect": lambda arc: ["inspect", LONG_KEY],
}
DOCUMENTS = {"verify": "findings", "inspect": "fields"}
"""The commands whose JSON is one object, and the key holding its rows."""


def test_every_command_with_a_format_has_a_case():
    with_format = {
        name
        for name, command in _commands().items()
        if any("--format" in a.option_strings for a in _options(command))
    }
    missing = sorted(with_format - set(CASES))
    assert not missing, f"add a case to CASES in {__file__} for: {', '.join(missing)}"


@pytest.fixture
def layout(r, redis_server, tmp_path, monkeypatch, capsys):
    """A stream whose key is long, whose type sits in a `kind` field and whose payload
    changes shape over two days, archived; the table width is 100 (not a terminal)."""
    monkeypatch.setenv("COLUMNS", str(WIDTH))
    envelope = tmp_path / "envelope.toml"
    envelope.write_text("event_type = 'kind'\naggregate_id = 'order'\n")
    (tmp_path / "auditkit.toml").write_text(
        f"redis_url = '{redis_server.url}'\n[envelopes]\n'tenant*' = 'envelope.toml'\n"
    )
    monkeypatch.chdir(tmp_path)
    day = 86_400_000
    events = [
        ("Placed", "o-1", {"amount": 10, "note": "first order of a customer " * 6}, 0),
        ("Closed", "o-1", {"amount": 10}, 1),
        ("Placed", "o-1", {"amount": 12, "coupon": "SPRING"}, day),  # after its terminal event
        ("Placed", "o-2", {"amount": "7.50", "coupon": "SPRING"}, day + 1),  # type changed
    ]
    for kind, order, payload, at in events:
        r.xadd(
            LONG_KEY,
            {"kind": kind, "order": order, "payload": json.dumps(payload)},
            id=f"{BASE_MS + at}-0",
        )
    archive = str(tmp_path / "arc")
    assert main(["export", LONG_KEY, "--archive", archive]) == 0
    capsys.readouterr()
    return archive


@pytest.mark.parametrize("name", sorted(CASES))
def test_json_is_one_document_and_nothing_else(layout, capsys, name):
    assert main([*CASES[name](layout), "--format", "json"]) in (0, 1)
    out = capsys.readouterr().out
    document = json.loads(out)  # fails on progress text or a second document
    rows = document[DOCUMENTS[name]] if name in DOCUMENTS else document
    assert isinstance(rows, list)
    if name != "verify":
        assert rows, f"`auditkit {name}` printed no rows"
        assert all(isinstance(row, dict) for row in rows)


@pytest.mark.parametrize("name", sorted(CASES))
def test_csv_is_one_table(layout, capsys, name):
    assert main([*CASES[name](layout), "--format", "csv"]) in (0, 1)
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows and all(len(row) == len(rows[0]) for row in rows), rows
    if name == "verify":  # an archive that verifies: no findings, the header alone
        assert rows[0][:2] == ["check", "severity"]
    else:
        assert len(rows) > 1


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_table_fits_100_columns(layout, capsys, name):
    assert main([*CASES[name](layout), "--format", "table"]) in (0, 1)
    out = capsys.readouterr().out
    # verify prints the checkpoint after its table: a text kept verbatim, never wrapped.
    out = out.split("auditkit-checkpoint/")[0]
    too_wide = [line for line in out.splitlines() if len(line) > WIDTH]
    assert not too_wide, f"`auditkit {name}` prints lines over {WIDTH} columns:\n" + "\n".join(
        too_wide
    )
    assert out.strip()


def test_the_streams_table_shows_the_long_key_whole_and_memory_in_units(layout, capsys):
    assert main(["streams", "tenant*"]) == 0
    out = capsys.readouterr().out
    assert "KiB" in out  # MEMORY USAGE of a stream is a few KiB, shown so
    assert main(["streams", "tenant*", "--format", "json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["key"] == LONG_KEY and isinstance(row["memory_bytes"], int)
    # The key wraps within its column: its pieces, read top to bottom, give it back.
    column = out.splitlines()[0].index("length")
    pieces = [line[:column].strip() for line in out.splitlines()[2:]]
    assert "".join(pieces) == LONG_KEY


def test_audit_lists_every_finding_then_counts_them(layout, capsys):
    assert main(["audit", LONG_KEY, "--terminal", "Closed"]) == 1
    table = capsys.readouterr().out
    assert main(["audit", LONG_KEY, "--terminal", "Closed", "--format", "json"]) == 1
    findings = json.loads(capsys.readouterr().out)
    after = [f for f in findings if f["check"] == "event-after-terminal"]
    assert after and after[0]["aggregate_id"] == "o-1"
    # The table lists findings (their ids), not only counts, and then the count per check.
    assert after[0]["id"] in table
    _, *rest = table.split("\n\n")
    assert rest and "findings" in rest[-1].splitlines()[0]


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".json", ".xlsx"])
def test_audit_output_by_extension(layout, tmp_path, capsys, suffix):
    import importlib.util

    import pandas as pd

    out = tmp_path / f"findings{suffix}"
    code = main(["audit", LONG_KEY, "--terminal", "Closed", "--output", str(out)])
    err = capsys.readouterr().err
    if suffix == ".xlsx" and importlib.util.find_spec("openpyxl") is None:
        assert code == 2 and "pip install openpyxl" in err and err.count("\n") == 1
        assert not out.exists()
        return
    assert code == 1, err
    read = {
        ".parquet": pd.read_parquet,
        ".csv": pd.read_csv,
        ".json": pd.read_json,
        ".xlsx": pd.read_excel,
    }[suffix]
    written = read(out)
    assert "event-after-terminal" in set(written["check"])
    assert list(written.columns)[:2] == ["check", "severity"]


def test_drift_details_are_left_aligned(layout, capsys):
    assert main(["drift", LONG_KEY, "--window", "day"]) in (0, 1)
    lines = capsys.readouterr().out.splitlines()
    at = lines[0].index("detail")
    rows = [line for line in lines[2:] if line[:at].strip()]  # each finding's first line
    assert rows and all(line[at] != " " for line in rows), lines
