"""Every command's help: each option explained with an example, and fast to show.

The checks walk the parser, so a command or option added later is covered without a new
test: its failure names the command and the option that lacks help or an example.
"""

from __future__ import annotations

import argparse
import ast
import os
import subprocess
import sys
import time

import pytest

from auditkit._cli.main import _parser, main

HEAVY = ("pandas", "pyarrow", "duckdb", "redis")


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = _parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


COMMANDS = sorted(_commands())


def _options(command: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in command._actions if not isinstance(a, argparse._HelpAction)]


def _name(action: argparse.Action) -> str:
    return "/".join(action.option_strings) or action.dest.upper()


def test_the_parser_has_the_documented_commands():
    assert {"demo", "streams", "export", "verify", "trim", "audit", "query"} <= set(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_a_summary_and_a_description(name):
    parser = _parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    summary = next((c.help for c in sub._choices_actions if c.dest == name), None)
    assert summary, f"`auditkit {name}` has no summary in `auditkit --help`"
    assert _commands()[name].description, f"`auditkit {name}` has no description"


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_has_help_and_an_example(name):
    missing = []
    for action in _options(_commands()[name]):
        text = action.help or ""
        if not text or text == argparse.SUPPRESS:
            missing.append(f"`auditkit {name} {_name(action)}` has no help")
        elif action.nargs != 0 and "e.g." not in text:
            missing.append(
                f"`auditkit {name} {_name(action)}` takes a value; its help has no 'e.g.' example"
            )
    assert not missing, "\n".join(missing)


@pytest.mark.parametrize("name", COMMANDS)
def test_the_redis_url_help_says_what_happens_without_one(name):
    option = next(
        (a for a in _options(_commands()[name]) if "--redis-url" in a.option_strings), None
    )
    if option is None:
        return
    text = option.help or ""
    assert "$REDIS_URL" in text, f"`auditkit {name} --redis-url` does not name $REDIS_URL"
    if name == "demo":
        assert "embedded" in text
    else:
        # Only the demo runs on a throwaway server: for the others it would answer about
        # nothing, so the help must not promise one.
        assert "embedded" not in text, f"`auditkit {name} --redis-url` promises an embedded server"


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_that_prints_rows_offers_the_three_formats(name):
    option = next((a for a in _options(_commands()[name]) if "--format" in a.option_strings), None)
    if option is None:
        return
    assert tuple(option.choices or ()) == ("table", "json", "csv"), name
    assert option.default == "table"


def _help_in_a_process(*argv: str) -> tuple[float, list[str], str]:
    code = (
        "import sys, time\n"
        "start = time.perf_counter()\n"
        "from auditkit._cli import main\n"
        "try:\n"
        f"    main({list(argv)!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(time.perf_counter() - start, file=sys.stderr)\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)\n"
    )
    environment = {**os.environ, "COLUMNS": "100"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=environment
    )
    *_, seconds, loaded = done.stderr.splitlines()
    return float(seconds), ast.literal_eval(loaded), done.stdout


@pytest.mark.parametrize("argv", [["--help"], *[[name, "--help"] for name in COMMANDS]])
def test_help_loads_no_heavy_library(argv):
    # Wall time is reported, not asserted (CI machines vary); what makes help slow is
    # loading pandas, pyarrow, DuckDB or redis-py, and that is asserted.
    seconds, loaded, out = _help_in_a_process(*argv)
    assert "usage: auditkit" in out
    assert loaded == [], f"`auditkit {' '.join(argv)}` loads {loaded}"
    print(f"auditkit {' '.join(argv)}: {seconds * 1000:.0f} ms in-process")


def test_help_wall_time_is_reported(capsys):
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "auditkit", "--help"], capture_output=True, text=True, check=True
    )
    wall = time.perf_counter() - start
    assert "usage: auditkit" in done.stdout
    with capsys.disabled():
        print(f"\n`python -m auditkit --help`: {wall:.2f} s wall")


def _required_redis(name: str) -> bool:
    option = next(
        (a for a in _options(_commands()[name]) if "--redis-url" in a.option_strings), None
    )
    return option is not None and "is required" in (option.help or "")


@pytest.mark.parametrize("name", [n for n in COMMANDS if _required_redis(n)])
def test_a_command_that_needs_redis_without_a_url_is_one_usage_line(
    name, tmp_path, monkeypatch, capsys
):
    # No --redis-url, no $REDIS_URL, no auditkit.toml: the command must not run on a
    # throwaway server (it would answer about nothing), and says what to pass.
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    argv = [name]
    for action in _options(_commands()[name]):
        if not action.option_strings and action.nargs != "?":
            argv.append("1" if action.type is int else "orders")
        if "--archive" in action.option_strings:
            argv += ["--archive", str(tmp_path / "archive")]
        elif action.required and action.option_strings:
            # A required file or folder (report's --output DIR, sample's --output FILE).
            argv += [action.option_strings[0], str(tmp_path / "out.jsonl")]
    assert main(argv) == 2, argv
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("auditkit: error: "), err
    # An archive checked first may be what stops it; else it names the three ways.
    if "archive" not in err:
        assert "--redis-url" in err and "REDIS_URL" in err and "auditkit.toml" in err, err
