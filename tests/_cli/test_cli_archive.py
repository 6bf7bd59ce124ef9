"""The archive's cron chain on the command line: export, verify, acknowledge, trim, repair."""

from __future__ import annotations

import json

import pytest

from auditkit._cli import main

BASE_MS = 1_772_323_200_000


def _fill(r, key="orders", n=30, start=0):
    for i in range(start, start + n):
        r.xadd(key, {"type": "Paid", "payload": json.dumps({"n": i})}, id=f"{BASE_MS + i}-0")


@pytest.fixture
def cli(redis_server, tmp_path, capsys):
    def run(*args):
        code = main([*args, "--archive", str(tmp_path / "arc"), "--redis-url", redis_server.url])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


@pytest.mark.redis_min("7.0")
def test_a_loss_fails_the_export_until_it_is_acknowledged(r, cli):
    _fill(r)
    assert cli("export", "orders")[0] == 0
    _fill(r, n=30, start=30)
    r.xdel("orders", f"{BASE_MS + 40}-0")  # lost before the next export could read it
    code, out, err = cli("export", "orders")
    assert code == 1  # the cron job alerts
    assert "29 entries" in out and "1 entry left the stream" in err
    record = err.split("recorded as ledger record ")[1].split(".")[0]
    assert f"`auditkit acknowledge orders {record} --reason TEXT`" in err  # the next step
    code, out, _ = cli("verify", "orders")
    assert code == 1 and "loss-recorded" in out
    code, _, err = cli("trim", "orders")
    assert code == 3 and f"auditkit acknowledge orders {record}" in err
    code, out, _ = cli("acknowledge", "orders", record, "--reason", "deleted by an operator")
    assert code == 0 and "acknowledged" in out
    assert cli("export", "orders")[0] == 0  # recorded once: later runs are clean
    code, out, _ = cli("verify", "orders", "--format", "json")
    assert code == 0
    assert "deleted by an operator" in out
    assert cli("trim", "orders")[0] == 0
    assert r.xlen("orders") == 0
    code, _, err = cli("acknowledge", "orders", "99", "--reason", "x")
    assert code == 3 and "not a recorded loss" in err


def test_an_empty_stream_keeps_the_cron_chain_green(r, cli):
    r.xgroup_create("jobs", "workers", id="$", mkstream=True)  # exists, holds nothing
    assert cli("export", "jobs")[0] == 0
    code, out, _ = cli("verify", "jobs")
    assert code == 0, out
    code, out, _ = cli("trim", "jobs", "--dry-run")
    assert code == 3 or "nothing to trim" in out


def test_privacy_rules_from_the_command_line_are_kept_for_every_later_export(
    r, cli, monkeypatch, tmp_path
):
    def register(email, name):
        r.xadd(
            "customers",
            {"type": "Registered", "email": email, "payload": json.dumps({"name": name})},
        )

    for i in range(4):
        register(f"u{i}@example.com", "Ann")
    monkeypatch.setenv("AUDITKIT_KEY", "s3cret-key")
    args = ["--drop", "payload.name", "--pseudonymize", "email", "--key-env", "AUDITKIT_KEY"]
    assert cli("export", "customers", *args)[0] == 0
    register("late@example.com", "Bob")
    code, _, err = cli("export", "customers")  # the documented cron line, without the key
    assert code == 3 and "--key-env" in err and "s3cret" not in err
    code, out, _ = cli("export", "customers", "--key-env", "AUDITKIT_KEY")
    assert code == 0 and "1 entry in" in out
    code, out, err = cli("query", "select * from events", "--format", "json")
    assert code == 0, err
    rows = json.loads(out)
    assert len(rows) == 5 and all(row["email"].startswith("hmac:") for row in rows)
    assert not any("payload.name" in row for row in rows) and "Ann" not in out
    code, _, err = cli("export", "customers", "--pseudonymize", "email")
    assert code == 2 and "--pseudonymize needs --key-env" in err
    monkeypatch.delenv("AUDITKIT_KEY")
    code, _, err = cli("export", "customers", "--key-env", "AUDITKIT_KEY")
    assert code == 2 and "AUDITKIT_KEY" in err


def test_repair_rebuilds_a_lost_manifest(r, cli, tmp_path):
    _fill(r, n=30)
    assert cli("export", "orders", "--rows-per-file", "10")[0] == 0
    for version in (tmp_path / "arc" / "_manifest").rglob("*.jsonl"):
        version.unlink()
    code, _, err = cli("export", "orders")
    assert code == 3 and "auditkit repair" in err
    code, out, _ = cli("repair", "orders", "--reason", "manifest deleted by a cleanup job")
    assert code == 0 and "3 file(s), 30 entries" in out
    code, out, _ = cli("verify", "orders")
    assert code == 0 and "manifest-rebuilt" in out


def test_audit_names_an_archive_that_cannot_join_it(r, redis_server, tmp_path, capsys, monkeypatch):
    # A task broker's layout: the task's name inside a JSON `data` field, no `type` field.
    for n in range(4):
        r.xadd("jobs", {"data": json.dumps({"task": "resize", "job": f"j-{n}"})})
    r.xadd("mail", {"data": json.dumps({"task": "send", "job": "m-1"})})
    envelope = tmp_path / "jobs.toml"
    envelope.write_text('payload = "data"\nevent_type = "payload.task"\naggregate_id = false\n')
    arc = tmp_path / "arc"

    def audit(*args):
        argv = ["audit", *args, "--envelope", str(envelope), "--redis-url", redis_server.url]
        code = main([*argv, "--format", "json"])
        out = capsys.readouterr()
        return code, out.out, out.err

    code, _, err = audit("jobs", "--archive", str(arc))
    assert code == 2 and f"The archive `{arc}` does not exist" in err
    assert len(err.strip().splitlines()) == 1 and not arc.exists()
    main(["export", "mail", "--archive", str(arc), "--envelope", str(envelope),
          "--redis-url", redis_server.url])  # fmt: skip
    capsys.readouterr()
    code, _, err = audit("jobs", "--archive", str(arc))
    assert code == 2 and "does not hold stream `jobs`; it holds `mail`" in err
    code, _, err = audit("job*", "--archive", str(arc))  # a pattern: the library says so
    assert code == 3 and "none of the streams audited (`jobs`)" in err
    code, out, err = audit("*", "--archive", str(arc))  # `mail` is verified, `jobs` live
    assert {f["check"] for f in json.loads(out)} <= {"no-persistence"}, out
    # auditkit.toml's archive, before any export made it: said, and audited without it.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "auditkit.toml").write_text('archive = "later"\n')
    code, out, err = audit("jobs")
    assert code in (0, 1) and "later` in auditkit.toml does not exist; auditing without" in err
    assert {f["check"] for f in json.loads(out)} <= {"no-persistence"}, out
    # ... and one that holds other streams: said too, for auditkit.toml names one archive.
    (tmp_path / "auditkit.toml").write_text(f'archive = "{arc}"\n')
    code, out, err = audit("jobs")
    assert code in (0, 1) and "does not hold `jobs` (no export of it yet)" in err


def test_a_dry_run_names_every_reason_a_trim_is_refused(r, cli, tmp_path):
    # A flat-field stream, read by two groups: one left entries pending, one is behind.
    for n in range(10):
        r.xadd("parcels", {"kind": "Shipped", "parcel": f"p-{n}"}, id=f"{BASE_MS + n}-0")
    r.xgroup_create("parcels", "billing", id="0")
    r.xreadgroup("billing", "b-1", {"parcels": ">"}, count=3)  # delivered, not acknowledged
    r.xgroup_create("parcels", "mailer", id=f"{BASE_MS + 5}-0")  # 4 entries never delivered
    r.xack("parcels", "billing", f"{BASE_MS}-0")
    envelope = tmp_path / "flat.toml"
    envelope.write_text('preset = "flat"\nevent_type = "kind"\naggregate_id = "parcel"\n')
    assert cli("export", "parcels", "--envelope", str(envelope))[0] == 0
    code, _, err = cli("trim", "parcels", "--dry-run")
    assert code == 3 and len(err.strip().splitlines()) == 1, err
    assert "for 3 reasons" in err
    assert "`billing` of `parcels` has 2 pending entries" in err  # pending: 2 left
    assert "`billing` of `parcels` has not been delivered 7 entries" in err
    assert "`mailer` of `parcels` has not been delivered 4 entries" in err
    code, _, err = cli("trim", "parcels", "--dry-run", "--allow-undelivered")
    assert code == 3 and "reasons" not in err and "2 pending entries" in err
    code, out, _ = cli("trim", "parcels", "--dry-run", "--allow-undelivered", "--allow-pending")
    assert code == 0 and "10 entries" in out and r.xlen("parcels") == 10
