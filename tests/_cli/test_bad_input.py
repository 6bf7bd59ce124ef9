"""Bad input on the command line: one line naming the value and the next step, exit 2.

Each case runs `auditkit` as a real process, as a user's shell does: a traceback, or
an exit code other than 2, fails it. Cases given the URL of a port where nothing
listens prove that the value is checked before anything is sent to Redis (reaching
for that server would exit 3).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

DEAD = "redis://127.0.0.1:1/0"


def _auditkit(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    return subprocess.run(
        [sys.executable, "-m", "auditkit", *argv],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,  # no auditkit.toml of the project's around
        env=environment,
        timeout=120,
    )


def _usage_error(done: subprocess.CompletedProcess[str], *shown: str) -> str:
    """The one line a bad input prints, after checking the exit code and the format."""
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("auditkit: error: "), done.stderr
    for text in shown:
        assert text in lines[0]
    return lines[0]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "notes.txt").write_text("not an archive")
    (tmp_path / "empty").mkdir()
    (tmp_path / "findings.parquet").mkdir()
    return tmp_path


@pytest.mark.parametrize("rows", ["0", "-5"])
def test_rows_per_file_below_one(folder, rows):
    done = _auditkit(
        "export", "orders", "--archive", "arc", "--rows-per-file", rows, "--redis-url", DEAD,
        cwd=folder,
    )  # fmt: skip
    line = _usage_error(done, "--rows-per-file", f"`{rows}`", "at least 1")
    assert "rows_per_file" not in line
    assert not (folder / "arc").exists()


ARCHIVE_COMMANDS = {
    "export": ["export", "orders"],
    "verify": ["verify", "orders"],
    "trim": ["trim", "orders"],
    "query": ["query", "select 1"],
    "audit": ["audit", "orders"],
    "state": ["state", "orders", "o-1"],
}


@pytest.mark.parametrize(
    ("command", "archive"),
    [
        *[(command, "notes.txt") for command in sorted(ARCHIVE_COMMANDS)],
        ("export", "/dev/null"),
        ("export", "notes.txt/arc"),
        ("verify", "notes.txt/arc"),
    ],
)
def test_archive_that_is_not_a_folder(folder, command, archive):
    done = _auditkit(
        *ARCHIVE_COMMANDS[command], "--archive", archive, "--redis-url", DEAD, cwd=folder
    )
    _usage_error(done, "--archive", f"`{archive}`", "not a folder", "s3://")


@pytest.mark.parametrize("command", sorted(ARCHIVE_COMMANDS))
def test_empty_archive_option(folder, command):
    done = _auditkit(*ARCHIVE_COMMANDS[command], "--archive", "", "--redis-url", DEAD, cwd=folder)
    _usage_error(done, "--archive", "empty")


def test_empty_archive_option_is_not_the_configured_archive(folder):
    # An empty --archive is a mistake, not "use auditkit.toml's archive".
    (folder / "auditkit.toml").write_text('archive = "configured"\n')
    done = _auditkit("export", "orders", "--archive", "", "--redis-url", DEAD, cwd=folder)
    _usage_error(done, "--archive", "empty")
    assert not (folder / "configured").exists()


def test_configured_archive_that_is_not_a_folder_names_the_setting(folder):
    (folder / "auditkit.toml").write_text('archive = "notes.txt"\n')
    done = _auditkit("verify", "orders", "--redis-url", DEAD, cwd=folder)
    _usage_error(done, "archive in auditkit.toml", "notes.txt", "not a folder")


@pytest.mark.parametrize(
    ("argv", "output"),
    [
        (["audit", "orders"], "missing/findings.csv"),
        (["audit", "orders"], "empty"),
        (["audit", "orders"], "findings.txt"),
        (["audit", "orders"], "findings.parquet"),
        (["inspect", "orders"], "missing/envelope.toml"),
        (["inspect", "orders"], "empty"),
    ],
)
def test_output_that_cannot_be_written(folder, argv, output):
    done = _auditkit(*argv, "--output", output, "--redis-url", DEAD, cwd=folder)
    _usage_error(done, "--output", f"`{output}`")
    assert not (folder / "missing").exists()


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("redis://", "names no host"),
        ("rediss://", "names no host"),
        ("", "schemes"),
        ("http://127.0.0.1:6379", "schemes"),
        ("redis://127.0.0.1:notaport/0", "Port"),
        ("unix://", "names no socket"),
    ],
)
def test_redis_url_that_names_no_server(folder, url, reason):
    done = _auditkit("streams", "--redis-url", url, cwd=folder)
    _usage_error(done, "--redis-url", f"`{url}`", "is not a Redis URL", reason, "redis://host")


def test_redis_url_from_the_environment_is_named_so(folder):
    environment = {**os.environ, "REDIS_URL": "redis://"}
    done = subprocess.run(
        [sys.executable, "-m", "auditkit", "streams"],
        capture_output=True,
        text=True,
        check=False,
        cwd=folder,
        env=environment,
        timeout=120,
    )
    _usage_error(done, "REDIS_URL `redis://` is not a Redis URL")


def test_a_bad_password_is_not_bad_usage(folder, start_redis):
    # The URL is well formed: a server that refuses it is exit 3, as an unreachable one.
    server = start_redis({"requirepass": "right"})
    done = _auditkit(
        "streams", "--redis-url", f"redis://:wr@ng@127.0.0.1:{server.port}/0", cwd=folder
    )
    assert done.returncode == 3 and "Traceback" not in done.stderr
    assert "wr@ng" not in done.stderr and "ng@" not in done.stderr


@pytest.mark.parametrize("command", ["verify", "trim", "query"])
@pytest.mark.parametrize("archive", ["missing", "empty"])
def test_archive_that_holds_nothing(folder, command, archive):
    done = _auditkit(
        *ARCHIVE_COMMANDS[command], "--archive", archive, "--redis-url", DEAD, cwd=folder
    )
    _usage_error(done, f"`{archive}`", "--archive")


@pytest.fixture
def archived(redis_server, r, folder) -> Path:
    """An archive holding `orders` (three entries of aggregate o-1)."""
    for i in range(3):
        r.xadd("orders", {"type": "Placed", "aggregate_id": "o-1"}, id=f"{1772323200000 + i}-0")
    done = _auditkit(
        "export", "orders", "--archive", "arc", "--redis-url", redis_server.url, cwd=folder
    )
    assert done.returncode == 0, done.stderr
    return folder


@pytest.mark.parametrize("command", ["verify", "trim"])
def test_archive_that_does_not_hold_the_stream(redis_server, archived, command):
    done = _auditkit(
        command, "payments", "--archive", "arc", "--redis-url", redis_server.url, cwd=archived
    )
    _usage_error(done, "`payments`", "`orders`", "`arc`")


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("selec nonsense", "syntax error"),
        ("select nope from events", "nope"),
        ("select * from nothere", "nothere"),
        ("select 'a'::int from events", "Conversion"),
        ("select 2147483647::int + 1 from events", "Overflow"),
    ],
)
def test_sql_duckdb_refuses(redis_server, archived, sql, reason):
    done = _auditkit(
        "query", sql, "--archive", "arc", "--redis-url", redis_server.url, cwd=archived
    )
    _usage_error(done, "DuckDB", reason, "`events`")


@pytest.mark.parametrize(
    ("at", "shown"),
    [
        ("-1", ["stream ID", "ISO-8601 time"]),
        ("-1000-01-01", ["stream ID", "ISO-8601 time"]),
        ("garbage", ["stream ID", "ISO-8601 time"]),
        ("2026-13-45", ["month must be in 1..12"]),
    ],
)
@pytest.mark.parametrize("clock", [[], ["--effective"]], ids=["record", "effective"])
def test_state_at_that_is_no_stream_id_or_time(redis_server, r, folder, at, shown, clock):
    r.xadd("orders", {"type": "Placed", "aggregate_id": "o-1"}, id="1772323200000-0")
    done = _auditkit(
        "state", "orders", "o-1", f"--at={at}", *clock, "--redis-url", redis_server.url,
        cwd=folder,
    )  # fmt: skip
    _usage_error(done, "--at", f"`{at}`", *shown)
