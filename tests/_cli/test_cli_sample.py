"""`auditkit sample`: a test fixture cut from a real stream, with the export's privacy rules."""

from __future__ import annotations

import json

import pytest

from auditkit._cli.main import main
from auditkit.testing import read_sample


@pytest.fixture
def tasks(r):
    """A task broker's stream: the task's name and the customer inside a JSON `body`."""
    for n in range(1, 9):
        body = {"task": "refund" if n == 3 else "charge", "customer": {"email": f"c{n}@x.org"}}
        r.xadd("tasks", {"body": json.dumps(body), "ip": f"10.0.0.{n}"}, id=f"{n}-0")
    r.xgroup_create("tasks", "workers", id="0")
    r.xreadgroup("workers", "w1", {"tasks": ">"}, count=4)
    r.xclaim("tasks", "workers", "w2", 0, ["3-0"], retrycount=9)
    return "tasks"


def test_sample_writes_the_entries_and_the_group_state(redis_server, tasks, tmp_path, capsys):
    out = tmp_path / "tasks.jsonl"
    args = ["sample", tasks, "--count", "2", "--output", str(out), "--redis-url", redis_server.url]
    assert main(args) == 0
    assert f"tasks: 6 entries, 1 group(s), 4 pending written to {out}" in capsys.readouterr().out
    sample = read_sample(out)
    # The latest 2 (7-0, 8-0), and the messages of the 4 pending entries (1-0 to 4-0).
    assert [i for i, _ in sample.entries] == ["1-0", "2-0", "3-0", "4-0", "7-0", "8-0"]
    poison = next(p for p in sample.pending if p["id"] == "3-0")
    assert (poison["consumer"], poison["deliveries"]) == ("w2", 9)


def test_sample_drops_and_pseudonymizes(redis_server, tasks, tmp_path, monkeypatch):
    out = tmp_path / "tasks.parquet"
    monkeypatch.setenv("SAMPLE_KEY", "k-not-shown")
    args = [
        *("sample", tasks, "--output", str(out), "--redis-url", redis_server.url),
        *("--envelope", "tests/_cli/no-such.toml"),
    ]
    assert main(args) == 2  # the envelope file is checked first
    envelope = tmp_path / "tasks.toml"
    envelope.write_text('payload = "body"\nevent_type = "payload.task"\naggregate_id = "ip"\n')
    args[-1] = str(envelope)
    args += ["--drop", "ip", "--pseudonymize", "payload.customer.email", "--key-env", "SAMPLE_KEY"]
    assert main(args) == 0
    raw = out.read_bytes()
    assert b"c1@x.org" not in raw and b"10.0.0.1" not in raw and b"k-not-shown" not in raw
    sample = read_sample(out)
    assert all(b"hmac:" in flat[1] for _, flat in sample.entries)
    assert sample.privacy == {
        "drop": ["ip"],
        "pseudonymize": ["payload.customer.email"],
        "key_id": sample.privacy["key_id"],
    }


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--count", "0"], "--count must be at least 1, got `0`."),
        (["--output", "tasks.csv"], "--output `tasks.csv` must end in .jsonl or .parquet."),
        (["--pseudonymize", "ip"], "--pseudonymize needs --key-env"),
        (["--key-env", "AUDITKIT_NO_SUCH_VARIABLE"], "--key-env `AUDITKIT_NO_SUCH_VARIABLE`"),
    ],
)
def test_bad_usage_exits_2(redis_server, tasks, tmp_path, monkeypatch, capsys, extra, message):
    monkeypatch.chdir(tmp_path)
    args = ["sample", tasks, "--output", "tasks.jsonl", "--redis-url", redis_server.url, *extra]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("auditkit: error: ") and message in err
    assert len(err.strip().splitlines()) == 1


def test_a_missing_stream_is_named(redis_server, r, tmp_path, capsys):
    out = tmp_path / "x.jsonl"
    assert main(["sample", "nope", "--output", str(out), "--redis-url", redis_server.url]) == 3
    err = capsys.readouterr().err
    assert "Stream `nope` does not exist on" in err and "auditkit streams" in err
    assert not out.exists()
    r.set("counter", 1)  # a key that is not a stream is named with its type
    assert main(["sample", "counter", "--output", str(out), "--redis-url", redis_server.url]) == 3
    assert "`counter`" in capsys.readouterr().err and not out.exists()


def test_a_lag_longer_than_the_sample_is_said(redis_server, r, tmp_path, capsys):
    for n in range(1, 301):
        r.xadd("jobs", {"body": json.dumps({"task": "charge", "n": n})}, id=f"{n}-0")
    r.xgroup_create("jobs", "workers", id="0")
    r.xreadgroup("workers", "w1", {"jobs": ">"}, count=20)
    r.xack("jobs", "workers", *[f"{n}-0" for n in range(1, 21)])
    envelope = tmp_path / "jobs.toml"
    envelope.write_text('payload = "body"\nevent_type = "payload.task"\naggregate_id = false\n')
    out = tmp_path / "jobs.jsonl"
    base = ["sample", "jobs", "--output", str(out), "--envelope", str(envelope)]
    assert main([*base, "--count", "50", "--redis-url", redis_server.url]) == 0
    err = capsys.readouterr().err
    assert "group `workers` has 280 entries not yet delivered" in err
    assert "A sample of at least 280 entries keeps it" in err
    assert main([*base, "--count", "280", "--redis-url", redis_server.url]) == 0
    assert "not yet delivered" not in capsys.readouterr().err
