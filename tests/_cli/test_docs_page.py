"""docs/cli.md is the parser's own text: a command or help changed without it fails here."""

from __future__ import annotations

from pathlib import Path

from test_help import COMMANDS

from auditkit._cli.docs import REGENERATE, main, reference

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "cli.md"


def test_the_committed_page_is_what_the_parser_says():
    assert PAGE.read_text(encoding="utf-8") == reference(), (
        f"docs/cli.md is out of date with the parser: run `{REGENERATE}` from the "
        "repository's root and commit docs/cli.md"
    )


def test_the_page_has_every_command_and_option():
    from test_help import _commands, _options

    text = reference()
    for name in COMMANDS:
        assert f"## auditkit {name}\n" in text, name
        for action in _options(_commands()[name]):
            shown = action.option_strings[-1] if action.option_strings else action.dest
            assert f"`{shown}" in text, f"{name} {shown}"


def test_the_generator_writes_the_page(tmp_path):
    target = tmp_path / "cli.md"
    assert main([str(target)]) == 0
    assert target.read_text(encoding="utf-8") == reference()


def test_the_readme_links_the_page():
    assert "(docs/cli.md)" in (ROOT / "README.md").read_text(encoding="utf-8")
