"""The library's next steps, which name Python keywords, in the command line's words."""

from __future__ import annotations

__all__ = ["CLI_WORDS", "cli_words"]

# The library names its own keyword arguments as next steps; here they are options.
CLI_WORDS = (
    ("pass allow_pending=True (--allow-pending)", "pass --allow-pending"),
    ("pass allow_undelivered=True (--allow-undelivered)", "pass --allow-undelivered"),
    ("trim with before= below its position", "trim with --before below its position"),
    ("trim only below them with before=", "trim only below them with --before"),
    (" (Archive.acknowledge)", ""),
    ("see Archive.losses (on the command line, `auditkit verify`)", "see `auditkit verify`"),
    (
        "(Archive(..., key=...); on the command line --key-env NAME, the environment "
        "variable holding it)",
        "(--key-env NAME, the environment variable holding it)",
    ),
    ("run verify() for", "run `auditkit verify` for"),
)


def cli_words(message: str) -> str:
    for library, cli in CLI_WORDS:
        message = message.replace(library, cli)
    return message
