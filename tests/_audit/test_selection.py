"""Choosing and accepting findings: select, ignore, thresholds, and a baseline file."""

import json
import re
import time
from datetime import timedelta
from pathlib import Path

import pytest

import auditkit as ak
from auditkit._audit.selection import CHECKS

BASE_MS = 1_772_323_200_000


def _tasks(r, stream="tasks", n=12):
    """A task broker's layout: the type inside the JSON payload, the id in its own field."""
    for i in range(n):
        r.xadd(
            stream,
            {
                "task_id": f"t-{i % 4}",
                "payload": json.dumps({"task_name": "resize" if i % 2 else "email", "n": i}),
            },
            id=f"{BASE_MS + i * 1000}-0",
        )


TASKS = {"event_type": "payload.task_name", "aggregate_id": "task_id"}


def _poisoned(r, stream="tasks", deliveries=4):
    r.xgroup_create(stream, "workers", id="0")
    r.xreadgroup("workers", "w-1", {stream: ">"}, count=1)
    first = r.xrange(stream, count=1)[0][0]
    for _ in range(deliveries - 1):
        r.xclaim(stream, "workers", "w-2", min_idle_time=0, message_ids=[first])
    return first.decode()


def test_every_check_named_in_the_code_is_in_the_catalogue():
    root = Path(ak.__file__).parent
    named = set()
    for folder in ("_audit", "_archive"):
        for path in (root / folder).glob("*.py"):
            source = path.read_text()
            named |= set(re.findall(r'(?:note|add)\(\s*"([a-z]+(?:-[a-z]+)+)"', source))
            named |= set(re.findall(r'note\(\s*\n\s*"([a-z]+(?:-[a-z]+)+)",', source))
    known = {c for names in CHECKS.values() for c in names}
    assert named - {"baseline-stale"} <= known
    assert len(known) == sum(len(v) for v in CHECKS.values())  # no check in two families


def test_select_and_ignore_take_names_prefixes_and_families(r):
    _tasks(r)
    _poisoned(r, deliveries=7)
    every = ak.audit(r, "tasks", envelope=TASKS)
    assert {"poison-message", "no-persistence"} <= set(every["check"])
    groups = ak.audit(r, "tasks", envelope=TASKS, select="groups")
    assert set(groups["check"]) == set(every["check"]) & set(CHECKS["groups"])
    assert "poison-message" in set(groups["check"])
    no_poison = ak.audit(r, "tasks", envelope=TASKS, ignore=["poison", "durability"])
    assert "poison-message" not in set(no_poison["check"])
    assert not set(no_poison["check"]) & set(CHECKS["durability"])
    assert len(no_poison) < len(every)


def test_an_unknown_check_is_refused_before_any_io(r):
    with pytest.raises(ValueError, match=r"select `poisson` names no check.*groups: group-lag"):
        ak.audit(r, "no-such-stream", select=["poisson"])
    with pytest.raises(ValueError, match="ignore `nope`"):
        ak.audit(r, "no-such-stream", ignore="nope")


def test_thresholds_change_what_is_found(r):
    _tasks(r)
    _poisoned(r, deliveries=4)  # 4 deliveries: not poison by default (more than 5)
    time.sleep(0.05)
    assert "poison-message" not in set(ak.audit(r, "tasks", envelope=TASKS)["check"])
    strict = ak.audit(r, "tasks", envelope=TASKS, thresholds={"poison_after": 3, "lag_warning": 5})
    assert "poison-message" in set(strict["check"])
    lag = strict[strict["check"] == "group-lag"]
    assert list(lag["severity"]) == ["warning"]  # 11 undelivered > 5
    stale = ak.audit(r, "tasks", envelope=TASKS, thresholds={"stale_after": 10}, select="pending")
    assert list(stale["check"]) == ["pending-stale"]
    with pytest.raises(ValueError, match="threshold `poison` is unknown; the thresholds are skew"):
        ak.audit(r, "tasks", thresholds={"poison": 1})
    with pytest.raises(ValueError, match="threshold `poison_after` must be a non-negative"):
        ak.audit(r, "tasks", thresholds={"poison_after": "3"})


def test_the_embedded_servers_no_persistence_is_accepted_by_a_baseline(tmp_path):
    with ak.EmbeddedRedis() as server:
        client = ak.connect(server.url)
        _tasks(client)
        found = ak.audit(client, "tasks", envelope=TASKS)
        assert "no-persistence" in set(found["check"])
        path = tmp_path / "baseline.toml"
        path.write_text(
            '[[accepted]]\ncheck = "no-persistence"\nreason = "throwaway test server"\n'
        )
        marked = ak.audit(client, "tasks", envelope=TASKS, baseline=path)
        row = marked[marked["check"] == "no-persistence"].iloc[0]
        assert bool(row["accepted"]) and row["reason"] == "throwaway test server"
        assert not marked.loc[marked["check"] != "no-persistence", "accepted"].any()
        assert "baseline-stale" not in set(marked["check"])


def test_write_baseline_round_trips_and_stale_entries_are_reported(r, tmp_path):
    _tasks(r)
    first = _poisoned(r, deliveries=7)
    found = ak.audit(r, "tasks", envelope=TASKS)
    for suffix in (".toml", ".json"):
        path = ak.write_baseline(found, tmp_path / f"base{suffix}", reason="known, ticket 12")
        again = ak.audit(r, "tasks", envelope=TASKS, baseline=path)
        assert again["accepted"].all() and len(again) == len(found)
        assert set(again["reason"]) == {"known, ticket 12"}
    # The poison message is acknowledged: its entry now matches nothing.
    r.xack("tasks", "workers", first)
    later = ak.audit(r, "tasks", envelope=TASKS, baseline=tmp_path / "base.toml")
    stale = later[later["check"] == "baseline-stale"]
    assert len(stale) == 1 and f"id `{first}`" in stale["detail"].iloc[0]
    assert "check `poison-message`" in stale["detail"].iloc[0]
    assert list(stale["severity"]) == ["info"]
    # An entry of a check not run is not stale: it could not match.
    ignored = ak.audit(
        r, "tasks", envelope=TASKS, baseline=tmp_path / "base.toml", ignore="poison-message"
    )
    assert "baseline-stale" not in set(ignored["check"])


def test_a_baseline_entry_without_a_reason_is_refused(r, tmp_path):
    path = tmp_path / "baseline.toml"
    path.write_text('[[accepted]]\ncheck = "no-persistence"\nstream = "orders"\n')
    with pytest.raises(ValueError, match=r"entry 1 \(check `no-persistence`\) has no reason"):
        ak.audit(r, "orders", baseline=path)
    with pytest.raises(ValueError, match="has unknown key"):
        ak.audit(r, "orders", baseline=[{"check": "x", "reason": "y", "severity": "error"}])
    with pytest.raises(ValueError, match="a baseline needs a reason"):
        ak.write_baseline(ak.check_durability(r), path, reason=" ")


def test_thresholds_in_milliseconds_equal_timedeltas(r):
    _tasks(r)
    _poisoned(r, deliveries=1)
    time.sleep(0.05)
    by_ms = ak.audit(r, "tasks", envelope=TASKS, select="pending", thresholds={"stale_after": 10})
    by_delta = ak.audit(
        r, "tasks", envelope=TASKS, select="pending", stale_after=timedelta(milliseconds=10)
    )
    assert list(by_ms["check"]) == list(by_delta["check"]) == ["pending-stale"]
