"""The library's next steps name Python; the command line's name options and commands."""

from __future__ import annotations

import re

import pytest

from auditkit._cli.main import main
from auditkit._cli.words import CLI_WORDS, cli_words

PYTHON = re.compile(
    r"\b[a-z_]+=(\.\.\.|True|'|\"|\s|\(|$)|\bak\.|\(\.\.\., |\(\)|\b[A-Z][a-z]+\.[a-z_]+\b"
)
"""A keyword argument (`before=`, `clock='record'`), `ak.`, a call or a method
(`Archive.losses`): Python words."""


@pytest.mark.parametrize(("library", "cli"), CLI_WORDS)
def test_each_replacement_speaks_cli(library, cli):
    assert PYTHON.search(library), f"{library!r} holds no Python words: drop it"
    assert not PYTHON.search(cli), f"{cli!r} still speaks Python"
    assert cli_words(f"Something failed. {library} Then again.") == (
        f"Something failed. {cli} Then again."
    )


@pytest.mark.parametrize("command", [["state", "plain", "a-1"], ["drift", "plain"]])
def test_effective_time_without_occurred_at_names_the_option(r, redis_server, capsys, command):
    for _ in range(3):
        r.xadd("plain", {"type": "T", "aggregate_id": "a-1", "payload": "{}"})
    assert main([*command, "--effective", "--redis-url", redis_server.url]) == 3
    err = capsys.readouterr().err
    assert "occurred_at" in err and "--effective" in err and err.count("\n") == 1, err
    assert not PYTHON.search(err), err
