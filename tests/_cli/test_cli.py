import json
import subprocess
import sys

import pytest

from auditkit._cli.main import main


def test_demo_seeds_audits_and_reports(redis_server, r, capsys, tmp_path):
    report = tmp_path / "report"
    assert main(["demo", "--redis-url", redis_server.url, "--report", str(report)]) == 0
    out = capsys.readouterr().out
    page = (report / "report.html").read_text()
    for planted in (
        "poison-message",
        "pending-stale",
        "read-model-drift",
        "clock-skew",
        "version-regression",
        "drift-without-version-bump",
    ):
        assert planted in out or planted in page, planted
    assert page.count("<img") >= 3 and "acct-00042" in page
    assert "demo:accounts" in out
    length = r.xlen("demo:accounts")
    assert length > 10_000
    assert f"{length:,} entries" in out
    # Idempotent: a second run writes nothing and leaves the stream as it was.
    assert main(["demo", "--redis-url", redis_server.url, "--report", str(report)]) == 0
    assert "(0 written now)" in capsys.readouterr().out
    assert r.xlen("demo:accounts") == length


def test_demo_resumes_a_partial_seed(redis_server, r, capsys, tmp_path):
    url = ["--redis-url", redis_server.url, "--report", str(tmp_path)]
    assert main(["demo", *url]) == 0
    full = r.xrange("demo:accounts")
    r.delete("demo:accounts")
    for entry_id, fields in full[:1000]:
        r.xadd("demo:accounts", fields, id=entry_id)
    assert main(["demo", *url]) == 0
    assert r.xrange("demo:accounts") == full


def test_unreachable_redis_is_exit_3_and_one_line(capsys):
    code = main(["demo", "--redis-url", "redis://bob:hunter2@127.0.0.1:1/0"])
    err = capsys.readouterr().err
    assert code == 3
    assert err.count("\n") == 1 and err.startswith("auditkit: error: Cannot reach Redis")
    assert "hunter2" not in err


def test_no_command_is_usage():
    assert main([]) == 2


def test_the_console_script_is_installed():
    done = subprocess.run(
        [sys.executable, "-m", "auditkit", "--help"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0
    assert "demo" in done.stdout


def test_streams_command_formats(redis_server, r, capsys):
    r.xadd("orders", {"a": "1"}, id="1772323200000-0")
    r.xadd("payments", {"a": "1"}, id="1772323200001-0")
    assert main(["streams", "--redis-url", redis_server.url]) == 0
    table = capsys.readouterr().out
    assert "orders" in table and "payments" in table and "2026-03-01 00:00:00" in table
    assert main(["streams", "ord*", "--format", "json", "--redis-url", redis_server.url]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [row["key"] for row in records] == ["orders"]
    assert records[0]["length"] == 1 and records[0]["first_ts"].startswith("2026-03-01T00:00:00")
    assert main(["streams", "--format", "csv", "--redis-url", redis_server.url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("key,length,first_id") and len(lines) == 3


def test_bad_format_is_usage(redis_server):
    with pytest.raises(SystemExit) as info:
        main(["streams", "--format", "xml", "--redis-url", redis_server.url])
    assert info.value.code == 2


def test_archive_commands(redis_server, r, tmp_path, capsys):
    for i in range(30):
        r.xadd("orders", {"type": "Placed" if i % 2 else "Paid"}, id=f"{1772323200000 + i}-0")
    url = ["--redis-url", redis_server.url]
    archive = ["--archive", str(tmp_path / "arc")]
    assert main(["export", "orders", *archive, *url]) == 0
    assert "30 entries" in capsys.readouterr().out
    assert main(["trim", "orders", "--dry-run", *archive, *url]) == 0
    assert "30 entries, 1772323200000-0 .. 1772323200029-0, would go" in capsys.readouterr().out
    assert r.xlen("orders") == 30
    assert main(["verify", "orders", *archive, *url]) == 0
    assert main(["trim", "orders", *archive, *url]) == 0  # verified again by trim itself
    assert "trimmed 30" in capsys.readouterr().out
    r.xadd("orders", {"type": "Paid"})
    sql = "select event_type, count(*) as n from events group by 1 order by 1"
    assert main(["query", sql, *archive, "--live", "--format", "json", *url]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"event_type": "Paid", "n": 16},
        {"event_type": "Placed", "n": 15},
    ]
    first = next((tmp_path / "arc").rglob("*.parquet"))
    first.write_bytes(first.read_bytes()[:-10])
    assert main(["verify", *archive, "--offline"]) == 1
    assert "file-changed" in capsys.readouterr().out


def test_commands_that_need_your_redis_say_so(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert main(["export", "orders", "--archive", str(tmp_path)]) == 2
    assert "--redis-url" in capsys.readouterr().err


def test_audit_command_writes_findings(redis_server, r, tmp_path, capsys):
    import pandas as pd

    r.xadd("orders", {"type": "Placed", "aggregate_id": "o-1"}, id="1772323200000-0")
    r.xadd("orders", {"type": "Closed", "aggregate_id": "o-1"}, id="1772323200001-0")
    r.xadd("orders", {"type": "Placed", "aggregate_id": "o-1"}, id="1772323200002-0")
    out = tmp_path / "findings.parquet"
    code = main(
        [
            "audit",
            "orders",
            "--terminal",
            "Closed",
            "--output",
            str(out),
            "--redis-url",
            redis_server.url,
        ]
    )
    assert code == 1
    table = capsys.readouterr().out
    assert "event-after-terminal" in table and "no-persistence" in table
    written = pd.read_parquet(out)
    assert set(written["check"]) == {"event-after-terminal", "no-persistence"}
    assert (
        main(
            [
                "audit",
                "orders",
                "--output",
                str(tmp_path / "x.txt"),
                "--redis-url",
                redis_server.url,
            ]
        )
        == 2
    )


def test_drift_and_state_commands(redis_server, r, capsys, tmp_path):
    import auditkit as ak

    ak.seed_demo(r)
    url = ["--redis-url", redis_server.url]
    assert main(["drift", "demo:accounts", "--write-registry", str(tmp_path), *url]) == 1
    out = capsys.readouterr().out
    assert "version-regression" in out and "legacy-atm" in out
    assert (tmp_path / "Deposited" / "v2.json").exists()
    assert (
        main(
            ["state", "demo:accounts", "acct-00042", "--at", "2026-02-01", "--format", "json", *url]
        )
        == 0
    )
    state = {row["field"]: row["value"] for row in json.loads(capsys.readouterr().out)}
    assert state["owner"].startswith("customer-")
    assert int(state["events.Deposited"]) > 0
    assert main(["state", "demo:accounts", "nobody", *url]) == 2
    assert "No event of aggregate `nobody`" in capsys.readouterr().err


def test_archive_commands_on_object_storage_and_a_cluster(
    redis_cluster, rc, s3_server, bucket, monkeypatch, capsys
):
    from _s3 import ACCESS_KEY, SECRET_KEY

    # Configured as AWS tools are: credentials and endpoint in the environment, not the URL.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint_url)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    for i in range(30):
        rc.xadd(
            "{shop}:orders", {"type": "Placed" if i % 2 else "Paid"}, id=f"{1772323200000 + i}-0"
        )
    url = ["--redis-url", redis_cluster.url]
    archive = ["--archive", f"s3://{bucket}/arc"]
    assert main(["streams", *url]) == 0
    assert "{shop}:orders" in capsys.readouterr().out
    assert main(["export", "{shop}:orders", *archive, *url]) == 0
    assert main(["verify", "{shop}:orders", *archive, *url]) == 0
    assert main(["trim", "{shop}:orders", *archive, *url]) == 0
    out = capsys.readouterr().out
    assert "trimmed 30" in out and SECRET_KEY not in out
    sql = "select count(*) as n from events"
    assert main(["query", sql, *archive, "--live", "--format", "json", *url]) == 0
    assert json.loads(capsys.readouterr().out) == [{"n": 30}]


def test_options_before_the_command_are_read_as_the_commands(redis_server, r, capsys, tmp_path):
    # A flat-field stream; the options come first, as git and docker take them.
    r.xadd("parcels", {"kind": "Shipped", "parcel": "p-1"})
    url = redis_server.url
    assert main(["--redis-url", url, "--format", "json", "streams"]) == 0
    assert [s["key"] for s in json.loads(capsys.readouterr().out)] == ["parcels"]
    envelope = tmp_path / "parcels.toml"
    envelope.write_text('preset = "flat"\nevent_type = "kind"\naggregate_id = "parcel"\n')
    argv = [f"--redis-url={url}", "--envelope", str(envelope), "--format", "json", "audit"]
    main([*argv, "parcels"])
    assert {f["check"] for f in json.loads(capsys.readouterr().out)} <= {"no-persistence"}
    with pytest.raises(SystemExit) as exited:  # an option the command lacks is named
        main(["--effective", "--redis-url", url, "streams"])
    assert exited.value.code == 2 and "--effective" in capsys.readouterr().err


def test_a_reader_that_leaves_early_gets_no_traceback(redis_server, r):
    pipe = r.pipeline(transaction=False)
    for n in range(2000):  # a listing longer than a pipe holds
        pipe.xadd(f"parcels:{n:04d}", {"kind": "Shipped", "parcel": f"p-{n}"})
    pipe.execute()
    auditkit = subprocess.list2cmdline([sys.executable, "-m", "auditkit"])
    shell = f"{auditkit} streams --redis-url {redis_server.url} | head -n 3"
    done = subprocess.run(shell, shell=True, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
    assert "parcels:0000" in done.stdout.splitlines()[-1]
