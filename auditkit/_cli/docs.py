"""The command line's reference page, written from the parser itself.

`python -m auditkit._cli.docs` writes docs/cli.md (or the path given); a test checks
that the committed page is what the parser says, so it cannot fall behind the commands.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from auditkit._cli.main import _parser

__all__ = ["PAGE", "main", "reference"]

PAGE = Path("docs") / "cli.md"
REGENERATE = "python -m auditkit._cli.docs"


def reference() -> str:
    """docs/cli.md's text: every command, its usage, and each argument's help."""
    parser = _parser()
    commands = _subcommands(parser)
    lines = [
        "# Command line reference",
        "",
        f"<!-- Written by `{REGENERATE}` from the parser; edit the help there, not here. -->",
        "",
        f"{parser.description} {parser.epilog}",
        "",
        "```text",
        "auditkit [--version] [--help] COMMAND [options]",
        "```",
        "",
        "Every command takes `--help`. An option can also be written `--option=value`.",
        "",
        "| command | what it does |",
        "| --- | --- |",
        *(f"| [`{name}`](#auditkit-{name}) | {_cell(summary)} |" for name, summary, _ in commands),
    ]
    for name, _, command in commands:
        lines += ["", f"## auditkit {name}", "", command.description or "", ""]
        lines += ["```text", _usage(name, command), "```", ""]
        for action in _arguments(command):
            lines.append(f"- `{_form(action)}`: {_help(action)}")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Write the reference to the path given (default docs/cli.md); returns 0."""
    args = argparse.ArgumentParser(
        prog=REGENERATE, description="Write the command line reference page."
    )
    args.add_argument(
        "path", nargs="?", default=str(PAGE), help=f"where to write it, e.g. {PAGE} (default)"
    )
    path = Path(args.parse_args(argv).path)
    path.write_text(reference(), encoding="utf-8")
    print(f"wrote {path}", file=sys.stderr)
    return 0


def _subcommands(
    parser: argparse.ArgumentParser,
) -> list[tuple[str, str, argparse.ArgumentParser]]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    summaries = {choice.dest: choice.help or "" for choice in sub._choices_actions}
    return [(name, summaries.get(name, ""), command) for name, command in sub.choices.items()]


def _arguments(command: argparse.ArgumentParser) -> list[argparse.Action]:
    """Positionals first, then options, as `--help` lists them; not --help itself."""
    actions = [a for a in command._actions if not isinstance(a, argparse._HelpAction)]
    return [a for a in actions if not a.option_strings] + [a for a in actions if a.option_strings]


def _metavar(action: argparse.Action) -> str:
    if action.choices is not None:
        return "{" + ",".join(map(str, action.choices)) + "}"
    if isinstance(action.metavar, str):
        return action.metavar
    return action.dest.upper() if action.option_strings else action.dest


def _form(action: argparse.Action) -> str:
    if not action.option_strings:
        return _metavar(action)
    names = ", ".join(action.option_strings)
    return names if action.nargs == 0 else f"{names} {_metavar(action)}"


def _usage(name: str, command: argparse.ArgumentParser) -> str:
    """A usage line written here, not by argparse: its wrapping differs between versions."""
    parts = [f"auditkit {name}"]
    for action in _arguments(command):
        form = _metavar(action)
        if action.option_strings:  # the long name, and the value it takes
            form = action.option_strings[-1] + ("" if action.nargs == 0 else f" {form}")
        required = action.required if action.option_strings else action.nargs not in ("?", "*")
        repeat = " ..." if isinstance(action, argparse._AppendAction) else ""
        parts.append(form + repeat if required else f"[{form}]{repeat}")
    return _wrapped(parts, 100)


def _wrapped(parts: list[str], width: int) -> str:
    lines = [parts[0]]
    for part in parts[1:]:
        if len(lines[-1]) + 1 + len(part) > width:
            lines.append("    " + part)
        else:
            lines[-1] += " " + part
    return "\n".join(lines)


def _help(action: argparse.Action) -> str:
    text = (action.help or "").replace("%(default)s", str(action.default))
    return text.replace("%%", "%")


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


if __name__ == "__main__":
    sys.exit(main())
