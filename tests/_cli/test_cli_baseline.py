"""`auditkit audit --select/--ignore/--fail-on/--baseline/--write-baseline`: CI fails only
on findings nobody accepted."""

from auditkit._cli.main import main


def _flat(r, key="jobs"):
    """A job queue's flat fields, no payload: `event` and `jobId` as BullMQ writes them."""
    for i, event in enumerate(["added", "active", "completed", "active"]):
        r.xadd(key, {"event": event, "jobId": "7", "prev": "x"}, id=f"{1772323200000 + i}-0")


def _audit(url, *extra):
    envelope = ["--envelope", "bullmq"]
    return main(["audit", "jobs", *envelope, "--redis-url", url, *extra])


def test_a_baseline_accepts_the_test_servers_findings_and_fails_only_on_new_ones(
    redis_server, r, tmp_path, capsys
):
    _flat(r)
    assert _audit(redis_server.url) == 1  # the test server persists nothing
    assert "no-persistence" in capsys.readouterr().out
    base = tmp_path / "baseline.toml"
    assert _audit(redis_server.url, "--write-baseline", str(base)) == 2
    assert "--write-baseline needs --reason" in capsys.readouterr().err
    assert not base.exists()
    assert _audit(redis_server.url, "--write-baseline", str(base), "--reason", "CI server") == 0
    assert 'check = "no-persistence"' in base.read_text()
    capsys.readouterr()
    assert _audit(redis_server.url, "--baseline", str(base)) == 0
    err = capsys.readouterr().err
    assert "0 warning or worse not accepted" in err and "accepted" in err
    # A new finding fails, the accepted ones still do not.
    assert _audit(redis_server.url, "--baseline", str(base), "--terminal", "completed") == 1
    assert "1 warning or worse not accepted" in capsys.readouterr().err


def test_fail_on_select_and_ignore(redis_server, r, capsys):
    _flat(r)
    assert _audit(redis_server.url, "--fail-on", "critical") == 0
    assert _audit(redis_server.url, "--ignore", "durability") == 0
    assert _audit(redis_server.url, "--select", "no-persistence,group") == 1
    out = capsys.readouterr().out
    assert "no-persistence" in out
    assert _audit(redis_server.url, "--select", "poisson") == 2
    err = capsys.readouterr().err
    assert "--select `poisson` names no check" in err and "durability:" in err


def test_a_baseline_entry_without_reason_is_a_usage_error(redis_server, r, tmp_path, capsys):
    _flat(r)
    base = tmp_path / "baseline.json"
    base.write_text('{"accepted": [{"check": "no-persistence"}]}')
    assert _audit(redis_server.url, "--baseline", str(base)) == 2
    err = capsys.readouterr().err
    assert f"baseline `{base}`: entry 1 (check `no-persistence`) has no reason" in err


def test_verify_fail_on(redis_server, r, tmp_path, capsys):
    _flat(r)
    archive = str(tmp_path / "arc")
    export = ["export", "jobs", "--envelope", "bullmq", "--archive", archive]
    assert main([*export, "--redis-url", redis_server.url]) == 0
    verify = ["verify", "jobs", "--archive", archive, "--redis-url", redis_server.url]
    assert main([*verify, "--fail-on", "info"]) == 0
    r.delete("jobs")  # its history is all in the archive: an `info` finding says so
    capsys.readouterr()
    assert main(verify) == 0
    assert main([*verify, "--fail-on", "warning"]) == 0
    assert main([*verify, "--fail-on", "info"]) == 1
    assert "stream-deleted" in capsys.readouterr().out


def test_thresholds_on_the_command_line(redis_server, r, capsys):
    _flat(r)
    r.xgroup_create("jobs", "workers", id="0")
    r.xreadgroup("workers", "w-1", {"jobs": ">"}, count=1)
    pending = ["--select", "pending", "--fail-on", "warning"]
    assert _audit(redis_server.url, *pending) == 0  # pending for less than 15 minutes
    assert _audit(redis_server.url, *pending, "--threshold", "stale_after=0") == 1
    assert "pending-stale" in capsys.readouterr().out
    assert _audit(redis_server.url, "--threshold", "stale=5") == 2
    assert "--threshold `stale` is unknown" in capsys.readouterr().err
    assert _audit(redis_server.url, "--threshold", "stale_after=soon") == 2
    assert "--threshold `stale_after=soon` must be NAME=VALUE" in capsys.readouterr().err


def test_every_finding_is_listed_and_a_baseline_accepts_only_those_it_names(
    redis_server, r, tmp_path, capsys
):
    import json

    import auditkit as ak

    # A job queue's flat fields: job 7 completes, then 120 more events arrive for it.
    events = ["added", "completed"] + ["active"] * 120
    for i, event in enumerate(events):
        r.xadd("jobs", {"event": event, "jobId": "7"}, id=f"{1772323200000 + i}-0")
    found = ak.audit(r, "jobs", envelope="bullmq", terminal_types=["completed"])
    late = found[found["check"] == "event-after-terminal"]
    assert len(late) == 120 and late["id"].notna().all()  # every one, none summed up
    terminal = ["--terminal", "completed"]
    assert _audit(redis_server.url, *terminal, "--format", "json") == 1
    rows = json.loads(capsys.readouterr().out)
    assert sum(f["check"] == "event-after-terminal" for f in rows) == 120
    assert _audit(redis_server.url, *terminal) == 1
    out, err = capsys.readouterr()
    assert "... and 70 more `event-after-terminal` findings (120 in all)" in out
    assert "audit: 121 finding(s)" in err  # and no-persistence
    base = tmp_path / "baseline.toml"
    args = ("--write-baseline", str(base), "--reason", "known incident")
    assert _audit(redis_server.url, *terminal, *args) == 0
    assert 'id = ""' in base.read_text()  # no-persistence has none: it matches only such
    capsys.readouterr()
    assert _audit(redis_server.url, *terminal, "--baseline", str(base)) == 0
    # A new event after the terminal one is a new finding: not accepted.
    r.xadd("jobs", {"event": "active", "jobId": "7"}, id=f"{1772323200000 + 500}-0")
    assert _audit(redis_server.url, *terminal, "--baseline", str(base)) == 1
    assert "1 warning or worse not accepted, 121 accepted" in capsys.readouterr().err
