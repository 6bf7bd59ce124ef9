"""The command line on streams that are not the demo's: --envelope, auditkit.toml, inspect."""

from __future__ import annotations

import json

from auditkit._cli import main


def _flat(r, n=40):
    for i in range(n):
        r.xadd(
            "log",
            {
                "case:concept:name": f"case-{i % 4}",
                "concept:name": ["Create", "Pay"][i % 2],
                "amount": str(i),
            },
        )


def test_a_stream_the_default_envelope_cannot_read_is_one_error_exit_3(redis_server, r, capsys):
    _flat(r)
    for command in (["drift", "log"], ["audit", "log"], ["state", "log", "case-1"]):
        assert main([*command, "--redis-url", redis_server.url]) == 3, command
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err  # one line
        assert "`concept:name`" in err and "auditkit inspect log" in err and "--envelope" in err
        assert "ak.inspect" not in err  # CLI words on the CLI


def test_inspect_writes_an_envelope_every_command_takes(redis_server, r, capsys, tmp_path):
    _flat(r)
    toml = tmp_path / "log.toml"
    assert main(["inspect", "log", "--redis-url", redis_server.url, "--output", str(toml)]) == 0
    out = capsys.readouterr().out
    assert "field `concept:name`" in out and "fills 100%" in out
    assert toml.read_text().count("\n") > 3 and "concept:name" in toml.read_text()
    url = ["--redis-url", redis_server.url, "--envelope", str(toml)]
    assert main(["state", "log", "case-1", *url, "--format", "json"]) == 0
    state = {row["field"]: row["value"] for row in json.loads(capsys.readouterr().out)}
    # case-1 holds i = 1, 5, 9, ..., 37 (all "Pay"): 10 events, the last amount 37
    assert state["events.Pay"] == 10 and state["amount"] == 37
    assert main(["drift", "log", *url]) == 0
    capsys.readouterr()
    archive = tmp_path / "arc"
    assert main(["export", "log", "--archive", str(archive), *url]) == 0
    # the archive recorded the envelope: a later export needs no --envelope
    r.xadd("log", {"case:concept:name": "case-9", "concept:name": "Create", "amount": "1"})
    assert main(["export", "log", "--archive", str(archive), "--redis-url", redis_server.url]) == 0
    assert "1 entry in" in capsys.readouterr().out
    sql = 'select sum("payload.amount") as total from events'
    assert main(["query", sql, "--archive", str(archive), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"total": sum(range(40)) + 1}]


def test_a_bad_envelope_option_is_a_usage_error(redis_server, r, capsys):
    _flat(r)
    assert main(["drift", "log", "--redis-url", redis_server.url, "--envelope", "flot"]) == 2
    assert "--envelope: envelope `flot` is neither a preset" in capsys.readouterr().err


def test_a_project_config_names_url_archive_and_envelopes(
    redis_server, r, capsys, tmp_path, monkeypatch
):
    _flat(r)
    for i in range(6):
        r.xadd("bull:q:events", {"event": ["added", "completed"][i % 2], "jobId": str(i // 2)})
    (tmp_path / "envelopes").mkdir()
    (tmp_path / "envelopes" / "log.toml").write_text(
        "preset = 'flat'\nevent_type = 'concept:name'\naggregate_id = 'case:concept:name'\n"
    )
    (tmp_path / "pyproject.toml").write_text(
        "[project]\nname = 'x'\n\n"
        "[tool.auditkit]\n"
        f"redis_url = '{redis_server.url}'\n"
        "archive = 'arc'\n"
        "[tool.auditkit.envelopes]\n"
        "'bull:*:events' = 'bullmq'\n"
        "'log' = 'envelopes/log.toml'\n"
    )
    work = tmp_path / "sub"
    work.mkdir()
    monkeypatch.chdir(work)  # found from a folder below
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert main(["export", "bull:q:events"]) == 0
    assert main(["export", "log"]) == 0
    assert (tmp_path / "arc" / "_manifest").is_dir()
    capsys.readouterr()
    assert main(["verify", "--offline", "--format", "json"]) == 0
    assert main(["drift", "bull:q:events", "--format", "json"]) in (0, 1)
    # auditkit.toml in the same folder wins over pyproject.toml
    (tmp_path / "auditkit.toml").write_text("envelope = 'nonesuch'\n")
    assert main(["drift", "log", "--redis-url", redis_server.url]) == 2
    assert "neither a preset" in capsys.readouterr().err
    (tmp_path / "auditkit.toml").write_text("colour = 'blue'\n")
    assert main(["drift", "log", "--redis-url", redis_server.url]) == 2
    assert "unknown setting `colour`" in capsys.readouterr().err


def test_an_archive_that_is_not_there_is_an_error(tmp_path, capsys):
    missing = str(tmp_path / "nothing")
    # Bad input (exit 2): the folder named is not an archive, nothing failed to run.
    assert main(["verify", "--archive", missing, "--offline"]) == 2
    assert f"`{missing}` does not exist" in capsys.readouterr().err
    assert main(["query", "select 1", "--archive", missing]) == 2
    assert f"`{missing}` does not exist" in capsys.readouterr().err


def test_state_reads_the_archive_of_a_trimmed_stream(redis_server, r, capsys, tmp_path):
    _flat(r)
    envelope = ["--envelope", str(tmp_path / "log.toml")]
    (tmp_path / "log.toml").write_text(
        "preset = 'flat'\nevent_type = 'concept:name'\naggregate_id = 'case:concept:name'\n"
    )
    archive = ["--archive", str(tmp_path / "arc")]
    base = ["--redis-url", redis_server.url]
    assert main(["export", "log", *archive, *base, *envelope]) == 0
    assert main(["verify", "log", *archive, *base]) == 0
    assert main(["trim", "log", *archive, *base]) == 0
    r.xadd("log", {"case:concept:name": "case-1", "concept:name": "Pay", "amount": "100"})
    capsys.readouterr()
    assert main(["state", "log", "case-1", *archive, *base, "--format", "json"]) == 0
    state = {row["field"]: row["value"] for row in json.loads(capsys.readouterr().out)}
    assert state["events.Pay"] == 11 and state["amount"] == 100
    # without the archive, only the live tail is there: one event, and it says so
    assert main(["state", "log", "case-1", *base, *envelope, "--format", "json"]) == 0
    state = {row["field"]: row["value"] for row in json.loads(capsys.readouterr().out)}
    assert state["events.Pay"] == 1


def test_drift_by_effective_time_and_any_window(redis_server, r, capsys, tmp_path):
    # A backfill: every event recorded now, in the order of its occurred_at a year apart.
    for i, (when, kind) in enumerate(
        [("2011-01-05", "A"), ("2011-03-05", "A"), ("2011-03-06", "A"), ("2011-06-01", "A")]
    ):
        payload = {"n": i} if i < 2 else {"n": i, "extra": "x"}
        r.xadd("late", {"type": kind, "occurred_at": when, "payload": json.dumps(payload)})
    url = ["--redis-url", redis_server.url]
    assert main(["drift", "late", "--window", "week", *url]) == 0
    err = capsys.readouterr().err
    assert "over 4 events of 1 type(s) in 1 window(s) by record time" in err
    assert main(["drift", "late", "--window", "week", "--effective", *url, "--format", "json"]) == 1
    out, err = capsys.readouterr()
    assert "in 3 window(s) by effective time" in err  # 5 and 6 March: one week
    assert any("extra" in f["detail"] for f in json.loads(out))
    assert main(["drift", "late", "--window", "fortnightly", *url]) == 2
    assert "fortnightly" in capsys.readouterr().err


def test_the_audit_summary_counts_every_finding(redis_server, r, capsys):
    # 120 events recorded a day after they occurred: 120 clock-skew findings, of which the
    # check lists 50 and sums up the rest in one row
    for i in range(120):
        r.xadd(
            "late",
            {"type": "T", "aggregate_id": f"a{i}", "occurred_at": "2020-01-01", "payload": "{}"},
        )
    assert main(["audit", "late", "--redis-url", redis_server.url]) == 1
    out, err = capsys.readouterr()
    assert "clock-skew" in out and " 120" in out
    assert "audit: 12" in err  # 120 skewed, and whatever else the audit finds
