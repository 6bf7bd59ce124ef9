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
    ("Run verify() for", "Run `auditkit verify` for"),
    (
        "(Archive.envelope_of gives it; on the command line, leave out --envelope)",
        "(leave out --envelope)",
    ),
    (
        "Name the field that holds it with Envelope(occurred_at=...), or replay with "
        "clock='record'.",
        "Name the field that holds it with occurred_at in the --envelope file, or drop "
        "--effective.",
    ),
    (
        "Name the field that holds it with the envelope's occurred_at, or use clock='record'.",
        "Name the field that holds it with occurred_at in the --envelope file, or drop "
        "--effective.",
    ),
    (
        "the envelope's aggregate_id (ak.inspect proposes one)",
        "aggregate_id in the --envelope file (`auditkit inspect STREAM` proposes one)",
    ),
    (
        "read with keep_payload=True, or from (client, stream), to see each as written.",
        "`auditkit state` reads the stream itself, which keeps each as written.",
    ),
    (
        " (Projection.declarative(..., upcasters=...)), or sum a different field.",
        " in a projection module (--projection MODULE:OBJECT), or sum a different field.",
    ),
    ("witness= takes", "--witness takes"),
)


def cli_words(message: str) -> str:
    """`message` with the library's Python next steps in command-line words."""
    for library, cli in CLI_WORDS:
        message = message.replace(library, cli)
    return message
